"""Triggers from config, the Judge that runs every guard, and the combined Verdict.

Combination rule (documented contract):
- FAIL if the catastrophic fast path fired (the challenger's run of consecutive server
  errors/timeouts reached `JudgeContext.catastrophic_run` while the champion was healthy
  over the same interval; `catastrophic=True`) or any
  trigger's guard FAILed. `severity` is the highest among the breaches; `action` is that
  of the breach with the strongest action class (any rollback > pause > alert_only),
  ties broken by severity, so e.g. a critical `rollback` plus a high `rollback_and_scale`
  gives `rollback_and_scale`'s scaling only if it is the most severe rollback.
- PASS only if every guard that has a signal PASSes (each guard PASSes only once its own
  minimum evidence is reached) and every `required` trigger has a signal.
- INCONCLUSIVE with `hold=True` when both arms degrade together (a shared incident).
- INCONCLUSIVE otherwise. Guards with no signal at all (no KPI feedback, no hallucination
  scores, no memory readings, no prices or SLO configured) are ignored for promotion
  unless their trigger sets `params.required: true`; error_rate and latency guards are
  required by default. So a plain regression model (no KPI, no scores, CPU only) can be
  promoted on error rate, latency, drift and throughput alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from core.errors import ConfigError
from guards.base import Guard
from guards.context import ArmResources, JudgeContext, ResourceReadings
from guards.factory import GUARDS, guard_factory, make_guard
from guards.incident import RUN_SHARE
from guards.look import Look, Looks
from guards.results import Action, GuardResult, GuardState, Severity, TriggerSpec
from guards.window import ArmWindow

__all__ = [
    "Action",
    "ArmResources",
    "GuardResult",
    "GuardState",
    "Judge",
    "JudgeContext",
    "ResourceReadings",
    "Severity",
    "TriggerSpec",
    "Verdict",
    "default_triggers",
    "make_judge",
    "parse_triggers",
]

_C, _H, _M = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM
# guard -> (threshold, severity, action); DESIGN.md's table, plus latency_p99 (opt-in).
_DEFAULTS: dict[str, tuple[float, Severity, Action]] = {
    "error_rate": (0.01, _C, Action.ROLLBACK),
    "latency_p95": (0.5, _C, Action.ROLLBACK),
    "kpi": (0.05, _C, Action.ROLLBACK),
    "hallucination_rate": (0.0, _H, Action.ROLLBACK_AND_ALERT),
    "output_drift": (0.25, _M, Action.ROLLBACK_AND_ALERT),
    "input_drift": (0.25, _M, Action.ROLLBACK_AND_ALERT),
    "throughput": (0.7, _H, Action.ROLLBACK),
    "memory": (0.9, _H, Action.ROLLBACK_AND_SCALE),
    "cost": (0.5, _M, Action.ROLLBACK_AND_ALERT),
    "error_budget_burn": (10.0, _C, Action.ROLLBACK),
    "latency_p99": (0.5, _H, Action.ROLLBACK),
}
_OPT_IN = frozenset({"latency_p99"})
_ACTION_CLASS = {Action.ALERT_ONLY: 0, Action.PAUSE: 1}  # any rollback variant: 2


def default_triggers() -> tuple[TriggerSpec, ...]:
    """The DESIGN.md default trigger table."""
    return tuple(
        TriggerSpec(name, thr, sev, act)
        for name, (thr, sev, act) in _DEFAULTS.items()
        if name not in _OPT_IN
    )


def parse_triggers(raw: Any, where: str = "triggers") -> tuple[TriggerSpec, ...]:
    """Validate triggers from config. Omitted threshold/severity/action take the guard's
    default. Every error is a ConfigError naming the field, e.g. `triggers[2].threshold`."""
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{where}: must be a list of triggers")
    return tuple(_parse_trigger(item, f"{where}[{i}]") for i, item in enumerate(raw))


def _parse_trigger(item: Any, where: str) -> TriggerSpec:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a mapping with guard, threshold, severity, action")
    for key in item:
        if key not in ("guard", "threshold", "severity", "action", "params"):
            raise ConfigError(f"{where}.{key}: unknown key")
    name = item.get("guard")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.guard: required, the name of a guard")
    factory = guard_factory(name, f"{where}.guard")
    d_thr, d_sev, d_act = _DEFAULTS[name]
    threshold = item.get("threshold", d_thr)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigError(f"{where}.threshold: must be a number, got {threshold!r}")
    problem = factory.check_threshold(float(threshold)) if math.isfinite(threshold) else "finite"
    if problem:
        raise ConfigError(f"{where}.threshold: {problem}, got {threshold!r}")
    severity = _enum(Severity, item.get("severity", d_sev), f"{where}.severity")
    action = _enum(Action, item.get("action", d_act), f"{where}.action")
    params = _parse_params(item.get("params", {}), factory.PARAMS, f"{where}.params")
    return TriggerSpec(name, float(threshold), severity, action, params)


def _enum(kind: type[Severity] | type[Action], value: Any, where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise ConfigError(f"{where}: must be one of {allowed}, got {value!r}") from None


def _parse_params(raw: Any, known: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown parameter (known: {', '.join(known)})")
        default = known[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:
            ok = (isinstance(value, int | float) and not isinstance(value, bool)
                  and math.isfinite(value))
        if not ok:
            raise ConfigError(f"{where}.{key}: must be a {type(default).__name__}, got {value!r}")
        out[key] = value
    return MappingProxyType(out)


@dataclass(frozen=True)
class Verdict:
    state: GuardState
    action: Action | None
    severity: Severity | None
    reasons: tuple[str, ...]
    results: tuple[GuardResult, ...]
    catastrophic: bool
    # Both arms degraded together (a shared incident): the rollout holds, it does not act.
    hold: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "action": self.action.value if self.action else None,
            "severity": self.severity.value if self.severity else None,
            "reasons": list(self.reasons),
            "results": [r.to_dict() for r in self.results],
            "catastrophic": self.catastrophic,
            "hold": self.hold,
        }


STATE_VERSION = 1


class Judge:
    """Runs every trigger's guard at each look and combines the results.

    One instance per rollout: guards keep sequential-test state between looks. Feed it
    per-look deltas with `observe` (what the supervisor merges from ingress flushes), or
    cumulative windows with `evaluate`. The false-rollback budget `context.alpha` is split
    equally over the sequential tests that can have a signal under the configuration;
    `state`/`load` persist every test's evidence, so a restarted supervisor resumes the
    same e-processes (no reset, no second spending of alpha).

    Shared incidents: the catastrophic fast path and every absolute ceiling act only while
    the champion is healthy over the recent interval (`guards.incident`); when both arms
    degrade together the verdict is INCONCLUSIVE with `hold=True` (relative tests, which
    compare the arms look by look, still act).
    """

    def __init__(self, triggers: Sequence[TriggerSpec], context: JudgeContext | None = None):
        self.context = context or JudgeContext()
        self.triggers = tuple(triggers)
        self.n_tests = sum(guard_factory(t.guard).n_tests(t, self.context)
                           for t in self.triggers)
        self.alpha_per_test = self.context.alpha / max(self.n_tests, 1)
        self._guards: list[tuple[TriggerSpec, Guard]] = [
            (t, make_guard(t, self.context, self.alpha_per_test)) for t in self.triggers
        ]
        self._looks = Looks(self.context, _error_ceiling(self.triggers),
                            _latency_slo(self.triggers, self.context))
        self._catastrophic_fired = False

    @property
    def looks(self) -> int:
        return self._looks.number

    @property
    def champion(self) -> ArmWindow:
        """The champion's cumulative window over the looks judged so far."""
        return self._looks.champion

    @property
    def challenger(self) -> ArmWindow:
        return self._looks.challenger

    def observe(self, champion: ArmWindow, challenger: ArmWindow,
                resources: ResourceReadings | None = None) -> Verdict:
        """One look: what arrived for each arm since the previous look."""
        return self._judge(self._looks.observe(champion, challenger, resources))

    def evaluate(self, champion: ArmWindow, challenger: ArmWindow,
                 resources: ResourceReadings | None = None) -> Verdict:
        """One look from cumulative windows (counts must never decrease between calls)."""
        return self._judge(self._looks.from_cumulative(champion, challenger, resources))

    def _judge(self, look: Look) -> Verdict:
        results = [self._catastrophic(look)]
        fails: list[tuple[TriggerSpec | None, GuardResult]] = []
        if results[0].state is GuardState.FAIL:
            fails.append((None, results[0]))
        pending: list[GuardResult] = []
        for trigger, guard in self._guards:
            r = guard.evaluate(look)
            results.append(r)
            if r.state is GuardState.FAIL:
                fails.append((trigger, r))
            elif r.state is GuardState.INCONCLUSIVE and (
                r.signal or trigger.params.get("required", _required(trigger))
            ):
                pending.append(r)
        hold = look.health.both_degraded
        if fails:
            return replace(self._fail(fails, tuple(results)), hold=hold)
        if hold:
            reason = f"both arms degraded: {look.health.describe()}; holding"
            return Verdict(GuardState.INCONCLUSIVE, None, None, (reason,), tuple(results),
                           False, hold=True)
        if pending:
            reasons = tuple(f"{r.guard}: {r.detail}" for r in pending)
            return Verdict(GuardState.INCONCLUSIVE, None, None, reasons, tuple(results), False)
        return Verdict(GuardState.PASS, None, None, ("every guard passes",), tuple(results),
                       False)

    def _catastrophic(self, look: Look) -> GuardResult:
        n = self.context.catastrophic_run
        run = look.d_challenger.max_failure_run
        health = look.health
        n_b = look.challenger.n_judged
        why = f"run of consecutive server errors/timeouts: {run} (limit {n})"
        fine = health.champion_fine_during_run(n)
        if run >= n and fine:
            self._catastrophic_fired = True
        e_a, n_a = health.champion_during_run
        if self._catastrophic_fired:
            return GuardResult("catastrophic", GuardState.FAIL, float(run), float(n), None, n_a,
                               n_b, why + f"; the champion answered meanwhile ({e_a}/{n_a} "
                               "failed)")
        if run >= n:
            why += (f"; not acted on: the champion failed too meanwhile ({e_a}/{n_a})"
                    if e_a > RUN_SHARE * n_a or health.champion_incident else
                    "; waiting for the champion's requests over the same interval")
        return GuardResult("catastrophic", GuardState.PASS, float(run), float(n), None, 0,
                           n_b, why)

    def _fail(
        self, fails: list[tuple[TriggerSpec | None, GuardResult]], results: tuple[GuardResult, ...]
    ) -> Verdict:
        catastrophic = any(t is None for t, _ in fails)

        def key(f: tuple[TriggerSpec | None, GuardResult]) -> tuple[int, int]:
            sev, act = _sev_act(f[0], self.context)
            return (2 if act.rolls_back else _ACTION_CLASS[act], sev.rank)

        severity = max((_sev_act(t, self.context)[0] for t, _ in fails), key=lambda s: s.rank)
        action = _sev_act(max(fails, key=key)[0], self.context)[1]
        reasons = tuple(f"{r.guard}: {r.detail}" for _, r in fails)
        return Verdict(GuardState.FAIL, action, severity, reasons, results, catastrophic)

    # ---- persistence -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything the judge learned (windows, matched strata, every e-process), as
        JSON-able data for `load`."""
        return {"v": STATE_VERSION, "triggers": [t.to_dict() for t in self.triggers],
                "alpha": self.alpha_per_test, "looks": self._looks.state(),
                "guards": [g.state() for _, g in self._guards],
                "catastrophic": self._catastrophic_fired}

    def load(self, state: Mapping[str, Any]) -> None:
        """Resume from `state`; ValueError if it was made for other triggers or alpha."""
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"judge state version {state.get('v')!r} is not {STATE_VERSION}")
        if state.get("triggers") != [t.to_dict() for t in self.triggers] or \
                not math.isclose(float(state.get("alpha", -1)), self.alpha_per_test):
            raise ValueError("judge state was made for other triggers or another alpha")
        self._looks.load(state["looks"])
        for (_, guard), gs in zip(self._guards, state["guards"], strict=True):
            guard.load(gs)
        self._catastrophic_fired = bool(state.get("catastrophic"))


def _error_ceiling(triggers: Sequence[TriggerSpec]) -> float:
    return next((t.threshold for t in triggers if t.guard == "error_rate"), 0.01)


def _latency_slo(triggers: Sequence[TriggerSpec], context: JudgeContext) -> float | None:
    for t in triggers:
        if t.guard == "latency_p95":
            s = float(t.params.get("slo_s", 0.0))
            return s if s > 0 else context.latency_slo_s
    return context.latency_slo_s


def _sev_act(trigger: TriggerSpec | None, context: JudgeContext) -> tuple[Severity, Action]:
    if trigger is None:  # the catastrophic fast path
        return Severity.CRITICAL, context.catastrophic_action
    return trigger.severity, trigger.action


def _required(trigger: TriggerSpec) -> bool:
    return bool(GUARDS[trigger.guard].PARAMS.get("required", False))


def make_judge(
    triggers: Sequence[TriggerSpec] | Sequence[Mapping[str, Any]] | None = None,
    context: JudgeContext | None = None,
) -> Judge:
    """Explicit factory: None -> default triggers; raw dicts are parsed (ConfigError names
    the bad field or unknown guard)."""
    if triggers is None:
        specs: tuple[TriggerSpec, ...] = default_triggers()
    elif all(isinstance(t, TriggerSpec) for t in triggers):
        specs = tuple(t for t in triggers if isinstance(t, TriggerSpec))
        for i, t in enumerate(specs):
            guard_factory(t.guard, f"triggers[{i}].guard")
    else:
        specs = parse_triggers(list(triggers))
    return Judge(specs, context)
