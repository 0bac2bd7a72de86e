"""Latency quantile guards (p95, p99): end to end and the model's own service time,
relative to the champion, and against an SLO."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, SequentialGuard
from guards.context import JudgeContext
from guards.look import Look
from guards.results import GuardResult, GuardState, TriggerSpec
from guards.stats import ConditionalRateTest, log_e_bernoulli
from guards.window import sketch_quantile_index


def _above(sketch: Mapping[int, int], cut: int) -> int:
    return sum(c for i, c in sketch.items() if i > cut)


class _Exceedance:
    """One relative test: the challenger's share of responses above the champion's
    q-quantile, look by look.

    At each look the cut c (the champion's q-quantile bucket) is fixed from data seen
    *before* the look, so it is predictable and the test stays exact. Each new OK response
    above c is an "event"; under H0 (challenger no slower in the tail) events fall on the
    challenger at most in proportion to its share of the look's responses, which
    `ConditionalRateTest` tests with both arms' noise. A shared slowdown moves both arms'
    events together and cancels within the look.
    """

    def __init__(self, kind: str, q: float, alpha: float, min_reference: int) -> None:
        self.kind, self.q = kind, q
        self.test = ConditionalRateTest(alpha)
        self.cut: int | None = None
        self._min_ref = min_reference

    def update(self, look: Look) -> float:
        da, db = look.d_champion.sketch(self.kind), look.d_challenger.sketch(self.kind)
        if self.cut is not None and (da or db):
            self.test.update(_above(da, self.cut), sum(da.values()),
                             _above(db, self.cut), sum(db.values()), look.deff.latency)
        ref = look.champion.sketch(self.kind)
        if sum(ref.values()) >= self._min_ref:
            self.cut = sketch_quantile_index(ref, self.q)
        return self.test.log_e

    def effect(self, look: Look) -> float | None:
        """q_B / q_A - 1 over the same looks (challenger vs the time-matched champion)."""
        q_b = sketch_quantile_index(look.matched.challenger.sketch(self.kind), self.q)
        q_a = look.matched.quantile_index(self.q, self.kind)
        if q_a is None or q_b is None:
            return None
        spec = look.matched.spec
        return spec.latency_value(q_b) / spec.latency_value(q_a) - 1.0

    def label(self) -> str:
        what = {"latency": "", "ttft": "TTFT ", "service": "service time "}[self.kind]
        return f"{what}p{round(self.q * 100)}"

    def state(self) -> dict[str, Any]:
        return {"t": self.test.state(), "cut": self.cut}

    def load(self, d: Mapping[str, Any]) -> None:
        self.test.load(d["t"])
        self.cut = d["cut"]


class LatencyGuard(SequentialGuard):
    """Challenger's latency quantile vs the champion's (relative) and vs an SLO (absolute).

    Relative tests (`_Exceedance`): end-to-end latency (or TTFT with `ttft: true`) at the
    guard's quantile, and the model's own service time (reported by the slot, so a slower
    model is seen even when a busy host dominates end-to-end latency) at the same quantile
    and at p99 (a slow tail of a few percent of calls). A test FAILs the guard when it
    rejects AND the estimated increase of its quantile over the time-matched champion
    (q_B / q_A - 1) is at least `min_effect` (default: half the threshold, so a tiny but
    significant slowdown does not roll back). The SLO test rejects H0: P(latency > slo)
    <= 1 - q on the looks where the champion was healthy (a shared slowdown over the SLO
    is not the challenger's fault). Threshold = relative increase (0.5 = +50%).
    """

    PARAMS: ClassVar[Mapping[str, Any]] = {
        **COMMON_PARAMS, "required": True, "min_effect": -1.0, "min_samples": 100,
        "slo_s": 0.0, "ttft": False, "min_reference": 50, "service_time": True,
    }
    QUANTILE: ClassVar[float] = 0.95
    name = "latency_p95"
    STATE = ("_rejected", "_slo_k", "_slo_n", "_slo_rejected", "_fired", "_fired_effect")

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        super().__init__(trigger, context, alpha)
        eff = float(self.p("min_effect"))
        self._min_effect = trigger.threshold / 2 if eff < 0 else eff
        self._min = int(self.p("min_samples"))
        min_ref = int(self.p("min_reference"))
        self._kind = "ttft" if self.p("ttft") else "latency"
        self._slo = self.slo(trigger, context)
        self._tests = [_Exceedance(k, q, alpha, min_ref)
                       for k, q in self.relative_tests(trigger)]
        self._slo_k = self._slo_n = 0
        self._slo_rejected = False
        self._fired: str | None = None
        # The effect of the test that failed the guard, as of the look it fired: the
        # reported value then says why (an e2e ratio can be ~0 when a busy host dominates
        # both arms while the model's own service time doubled).
        self._fired_effect: float | None = None

    @classmethod
    def relative_tests(cls, trigger: TriggerSpec) -> list[tuple[str, float]]:
        kind = "ttft" if trigger.params.get("ttft", False) else "latency"
        tests = [(kind, cls.QUANTILE)]
        if trigger.params.get("service_time", True):
            tests += [("service", q) for q in sorted({cls.QUANTILE, 0.99})]
        return tests

    @classmethod
    def slo(cls, trigger: TriggerSpec, context: JudgeContext) -> float | None:
        s = float(trigger.params.get("slo_s", 0.0))
        if s > 0:
            return s
        return context.latency_slo_s if cls.QUANTILE == 0.95 else None

    @classmethod
    def n_tests(cls, trigger: TriggerSpec, context: JudgeContext) -> int:
        return len(cls.relative_tests(trigger)) + (cls.slo(trigger, context) is not None)

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if threshold > 0.0 else "must be a relative increase > 0 (0.5 = +50%)"

    def state(self) -> dict[str, Any]:
        return super().state() | {"tests": [t.state() for t in self._tests]}

    def load(self, state: Mapping[str, Any]) -> None:
        super().load(state)
        for t, s in zip(self._tests, state.get("tests", ()), strict=False):
            t.load(s)

    def evaluate(self, look: Look) -> GuardResult:
        for t in self._tests:
            t.update(look)
            if self._fired is None and t.test.rejected:
                effect = t.effect(look)
                if effect is not None and effect >= self._min_effect:
                    self._fired_effect = effect
                    self._fired = (f"{t.label()} significantly slower (log e "
                                   f"{t.test.log_e:.2f} >= {self._log_thr:.2f}), "
                                   f"+{effect:.0%} >= +{self._min_effect:.0%}")
        main = self._tests[0]
        n_a, n_b = look.champion.n_latency(), look.challenger.n_latency()
        if main.kind == "ttft":
            n_a, n_b = look.champion.n_latency(True), look.challenger.n_latency(True)
        value = main.effect(look)
        stat = max(t.test.log_e for t in self._tests)
        q_b = look.matched.challenger.quantile(self.QUANTILE, ttft=main.kind == "ttft")
        q_a = look.matched.quantile(self.QUANTILE, main.kind)
        why = f"{main.label()} challenger {_ms(q_b)} vs champion {_ms(q_a)} over the same looks"
        if self._slo is not None:
            stat = max(stat, self._slo_step(look))
        if self._fired is not None:
            state, why = GuardState.FAIL, why + "; " + self._fired
            value = self._fired_effect
        elif self._slo_rejected:
            state = GuardState.FAIL
            why += (f"; {main.label()} significantly over the SLO {_ms(self._slo)} while the "
                    "champion met it")
        elif min(n_a, n_b) >= self._min:
            state = GuardState.PASS
            if any(t.test.rejected for t in self._tests):
                why += f"; significant but below +{self._min_effect:.0%}"
        else:
            state = GuardState.INCONCLUSIVE
            why += f"; waiting for {self._min} OK responses per arm"
        return self.result(state, value, stat, n_a, n_b, why)

    def _slo_step(self, look: Look) -> float:
        assert self._slo is not None
        ttft = self._kind == "ttft"
        if look.health.champion_healthy:
            d = look.d_challenger
            self._slo_k += d.count_above(self._slo, ttft)
            self._slo_n += d.n_latency(ttft)
        log_slo = log_e_bernoulli(self._slo_k, self._slo_n, 1.0 - self.QUANTILE)
        log_slo /= look.deff.latency
        self._slo_rejected = self._slo_rejected or log_slo >= self._log_thr
        return log_slo


class LatencyP99Guard(LatencyGuard):
    PARAMS: ClassVar[Mapping[str, Any]] = {**LatencyGuard.PARAMS, "min_samples": 300,
                                           "min_reference": 200}
    QUANTILE: ClassVar[float] = 0.99
    name = "latency_p99"


def _ms(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x * 1000:.1f} ms"
