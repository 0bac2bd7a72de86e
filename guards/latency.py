"""Latency quantile guards (p95, p99): relative to the champion, and against an SLO."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, param
from guards.context import JudgeContext, ResourceReadings
from guards.results import GuardResult, GuardState, TriggerSpec
from guards.stats import ConditionalRateTest, log_e_bernoulli, log_e_to_threshold
from guards.window import ArmWindow


class LatencyGuard:
    """Challenger's latency q-quantile vs the champion's (relative) and vs an SLO (absolute).

    Relative test (exceedance): at each look the champion's current q-quantile bucket c is
    fixed from data seen *before* the batch that is then tested, so it is predictable and
    the test stays exact. Each new OK response above c is an "event"; under H0 (challenger
    no slower in the tail) events fall on the challenger at most in proportion to its
    traffic, and `ConditionalRateTest` tests exactly that, with both arms' noise. If the
    challenger's q-quantile is higher, its share above c rises well above 1 - q (e.g. p95
    +50% on lognormal(sigma=0.8) latencies moves it from 5% to ~13%).
    FAIL when that test rejects AND the estimated increase (q_B / q_A - 1) is at least
    `min_effect` (default: half the threshold, so a tiny-but-significant slowdown does not
    roll back while one at the threshold is caught), or when the SLO test rejects
    H0: P(latency > slo) <= 1 - q. Threshold = relative increase (0.5 = +50%).
    """

    PARAMS: ClassVar[Mapping[str, Any]] = {
        **COMMON_PARAMS, "required": True, "min_effect": -1.0, "min_samples": 100,
        "slo_s": 0.0, "ttft": False, "min_reference": 50,
    }
    QUANTILE: ClassVar[float] = 0.95
    name = "latency_p95"

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        self._t = trigger
        self._q = self.QUANTILE
        self._log_thr = log_e_to_threshold(alpha)
        eff = float(param(trigger, self.PARAMS, "min_effect"))
        self._min_effect = trigger.threshold / 2 if eff < 0 else eff
        self._min = int(param(trigger, self.PARAMS, "min_samples"))
        self._min_ref = int(param(trigger, self.PARAMS, "min_reference"))
        self._ttft = bool(param(trigger, self.PARAMS, "ttft"))
        self._slo = self.slo(trigger, context)
        self._rel = ConditionalRateTest(alpha)
        self._cut: int | None = None
        self._prev = (0, 0, 0, 0)  # above-cut A, n A, above-cut B, n B (w.r.t. self._cut)
        self._slo_rejected = False

    @classmethod
    def slo(cls, trigger: TriggerSpec, context: JudgeContext) -> float | None:
        s = float(trigger.params.get("slo_s", 0.0))
        if s > 0:
            return s
        return context.latency_slo_s if cls.QUANTILE == 0.95 else None

    @classmethod
    def n_tests(cls, trigger: TriggerSpec, context: JudgeContext) -> int:
        return 2 if cls.slo(trigger, context) is not None else 1

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if threshold > 0.0 else "must be a relative increase > 0 (0.5 = +50%)"

    def _step_relative(self, a: ArmWindow, b: ArmWindow, n_a: int, n_b: int) -> float:
        if self._cut is not None:
            up_a = a.count_above_index(self._cut, self._ttft)
            up_b = b.count_above_index(self._cut, self._ttft)
            pa, pna, pb, pnb = self._prev
            if n_a < pna or n_b < pnb:
                raise ValueError("Judge.evaluate needs cumulative windows (a count went down)")
            self._rel.update(up_a - pa, n_a - pna, up_b - pb, n_b - pnb)
        if n_a >= self._min_ref:
            self._cut = a.quantile_index(self._q, self._ttft)
            assert self._cut is not None
            self._prev = (a.count_above_index(self._cut, self._ttft), n_a,
                          b.count_above_index(self._cut, self._ttft), n_b)
        return self._rel.log_e

    def evaluate(
        self, champion: ArmWindow, challenger: ArmWindow, resources: ResourceReadings | None
    ) -> GuardResult:
        n_a, n_b = champion.n_latency(self._ttft), challenger.n_latency(self._ttft)
        log_rel = self._step_relative(champion, challenger, n_a, n_b)
        q_a = champion.quantile(self._q, self._ttft)
        q_b = challenger.quantile(self._q, self._ttft)
        value = q_b / q_a - 1.0 if q_a and q_b else None
        stat = log_rel
        label = f"p{round(self._q * 100)}"
        why = f"{label} challenger {_ms(q_b)} vs champion {_ms(q_a)}"
        if self._slo is not None and n_b:
            log_slo = log_e_bernoulli(challenger.count_above(self._slo, self._ttft), n_b,
                                      1.0 - self._q)
            self._slo_rejected = self._slo_rejected or log_slo >= self._log_thr
            stat = max(stat, log_slo)
        if self._rel.rejected and value is not None and value >= self._min_effect:
            state = GuardState.FAIL
            why += (f"; significantly slower (log e {log_rel:.2f} >= {self._log_thr:.2f}), "
                    f"+{value:.0%} >= +{self._min_effect:.0%}")
        elif self._slo_rejected:
            state = GuardState.FAIL
            why += f"; {label} significantly over the SLO {_ms(self._slo)}"
        elif min(n_a, n_b) >= self._min:
            state = GuardState.PASS
            if self._rel.rejected:
                why += f"; significant but below +{self._min_effect:.0%}"
        else:
            state = GuardState.INCONCLUSIVE
            why += f"; waiting for {self._min} OK responses per arm"
        return GuardResult(self.name, state, value, self._t.threshold, stat, n_a, n_b, why)


class LatencyP99Guard(LatencyGuard):
    PARAMS: ClassVar[Mapping[str, Any]] = {**LatencyGuard.PARAMS, "min_samples": 300,
                                           "min_reference": 200}
    QUANTILE: ClassVar[float] = 0.99
    name = "latency_p99"


def _ms(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x * 1000:.1f} ms"
