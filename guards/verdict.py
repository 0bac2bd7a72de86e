"""Triggers from config, the Judge that runs every guard, and the combined Verdict.

Combination rule (documented contract):
- FAIL if the catastrophic fast path fired (the challenger's run of consecutive server
  errors/timeouts reached `JudgeContext.catastrophic_run`; `catastrophic=True`) or any
  trigger's guard FAILed. `severity` is the highest among the breaches; `action` is that
  of the breach with the strongest action class (any rollback > pause > alert_only),
  ties broken by severity, so e.g. a critical `rollback` plus a high `rollback_and_scale`
  gives `rollback_and_scale`'s scaling only if it is the most severe rollback.
- PASS only if every guard that has a signal PASSes (each guard PASSes only once its own
  minimum evidence is reached) and every `required` trigger has a signal.
- INCONCLUSIVE otherwise. Guards with no signal at all (no KPI feedback, no hallucination
  scores, no memory readings, no prices or SLO configured) are ignored for promotion
  unless their trigger sets `params.required: true`; error_rate and latency guards are
  required by default. So a plain regression model (no KPI, no scores, CPU only) can be
  promoted on error rate, latency, drift and throughput alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gateway.errors import ConfigError
from guards.base import Guard
from guards.context import ArmResources, JudgeContext, ResourceReadings
from guards.registry import GUARDS, guard_factory, make_guard
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "action": self.action.value if self.action else None,
            "severity": self.severity.value if self.severity else None,
            "reasons": list(self.reasons),
            "results": [r.to_dict() for r in self.results],
            "catastrophic": self.catastrophic,
        }


class Judge:
    """Runs every trigger's guard on cumulative windows and combines the results.

    One instance per rollout (or per canary step): guards keep sequential-test state
    between looks, and `evaluate` must be fed cumulative windows. The judge's false-
    rollback budget `context.alpha` is split equally over all sequential tests.
    """

    def __init__(self, triggers: Sequence[TriggerSpec], context: JudgeContext | None = None):
        self.context = context or JudgeContext()
        self.triggers = tuple(triggers)
        n_tests = sum(guard_factory(t.guard).n_tests(t, self.context) for t in self.triggers)
        self.alpha_per_test = self.context.alpha / max(n_tests, 1)
        self._guards: list[tuple[TriggerSpec, Guard]] = [
            (t, make_guard(t, self.context, self.alpha_per_test)) for t in self.triggers
        ]

    def evaluate(
        self,
        champion: ArmWindow,
        challenger: ArmWindow,
        resources: ResourceReadings | None = None,
    ) -> Verdict:
        results = [self._catastrophic(challenger)]
        fails: list[tuple[TriggerSpec | None, GuardResult]] = []
        if results[0].state is GuardState.FAIL:
            fails.append((None, results[0]))
        pending: list[GuardResult] = []
        for trigger, guard in self._guards:
            r = guard.evaluate(champion, challenger, resources)
            results.append(r)
            if r.state is GuardState.FAIL:
                fails.append((trigger, r))
            elif r.state is GuardState.INCONCLUSIVE and (
                r.signal or trigger.params.get("required", _required(trigger))
            ):
                pending.append(r)
        if fails:
            return self._fail(fails, tuple(results))
        if pending:
            reasons = tuple(f"{r.guard}: {r.detail}" for r in pending)
            return Verdict(GuardState.INCONCLUSIVE, None, None, reasons, tuple(results), False)
        return Verdict(GuardState.PASS, None, None, ("every guard passes",), tuple(results),
                       False)

    def _catastrophic(self, challenger: ArmWindow) -> GuardResult:
        n = self.context.catastrophic_run
        run = challenger.max_failure_run
        state = GuardState.FAIL if run >= n else GuardState.PASS
        why = f"longest run of consecutive server errors/timeouts: {run} (limit {n})"
        return GuardResult("catastrophic", state, float(run), float(n), None, 0,
                           challenger.n_judged, why)

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
