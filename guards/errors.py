"""Error-rate guard: significant increase over the champion, or above an absolute ceiling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, param
from guards.context import JudgeContext, ResourceReadings
from guards.results import GuardResult, GuardState, TriggerSpec
from guards.stats import ConditionalRateTest, log_e_bernoulli, log_e_to_threshold
from guards.window import ArmWindow


class CumulativeDeltas:
    """Turns cumulative counters into per-look increments (for stateful sequential tests)."""

    __slots__ = ("_prev",)

    def __init__(self, size: int) -> None:
        self._prev = (0,) * size

    def step(self, *now: int) -> tuple[int, ...]:
        delta = tuple(a - b for a, b in zip(now, self._prev, strict=True))
        if any(d < 0 for d in delta):
            raise ValueError("Judge.evaluate needs cumulative windows (a count went down)")
        self._prev = now
        return delta


class ErrorRateGuard:
    """Server errors + timeouts per judged request (client errors excluded).

    FAIL when either anytime-valid test rejects at its share of alpha:
    - relative: `ConditionalRateTest` of H0 rate_B <= margin * rate_A (params.relative);
    - absolute: `log_e_bernoulli` of H0 rate_B <= threshold (the "> 1% absolute" rule).
    PASS once both arms have `min_requests` judged requests and neither test rejected.
    """

    name = "error_rate"
    PARAMS: ClassVar[Mapping[str, Any]] = {
        **COMMON_PARAMS, "required": True, "relative": True, "margin": 1.0, "min_requests": 100,
    }

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        self._t = trigger
        self._log_thr = log_e_to_threshold(alpha)
        rel = param(trigger, self.PARAMS, "relative")
        margin = float(param(trigger, self.PARAMS, "margin"))
        self._rel = ConditionalRateTest(alpha, margin) if rel else None
        self._min = int(param(trigger, self.PARAMS, "min_requests"))
        self._abs_rejected = False
        self._deltas = CumulativeDeltas(4)

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 2 if trigger.params.get("relative", True) else 1

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if 0.0 < threshold < 1.0 else "must be an error rate in (0, 1)"

    def evaluate(
        self, champion: ArmWindow, challenger: ArmWindow, resources: ResourceReadings | None
    ) -> GuardResult:
        k_a, n_a = champion.n_errors, champion.n_judged
        k_b, n_b = challenger.n_errors, challenger.n_judged
        dk_a, dn_a, dk_b, dn_b = self._deltas.step(k_a, n_a, k_b, n_b)
        log_rel = self._rel.update(dk_a, dn_a, dk_b, dn_b) if self._rel else None
        log_abs = log_e_bernoulli(k_b, n_b, self._t.threshold)
        self._abs_rejected = self._abs_rejected or log_abs >= self._log_thr
        rate_a = k_a / n_a if n_a else 0.0
        rate_b = k_b / n_b if n_b else 0.0
        stat = max(log_abs, log_rel if log_rel is not None else -1e300)
        why = f"challenger {k_b}/{n_b} = {rate_b:.4%} vs champion {k_a}/{n_a} = {rate_a:.4%}"
        if self._rel is not None and self._rel.rejected:
            state, why = GuardState.FAIL, why + (
                f"; significant increase (log e {log_rel:.2f} >= {self._log_thr:.2f})")
        elif self._abs_rejected:
            state, why = GuardState.FAIL, why + (
                f"; significantly above {self._t.threshold:.2%} "
                f"(log e {log_abs:.2f} >= {self._log_thr:.2f})")
        elif min(n_a, n_b) >= self._min:
            state = GuardState.PASS
        else:
            state, why = GuardState.INCONCLUSIVE, why + f"; waiting for {self._min} per arm"
        return GuardResult(self.name, state, rate_b, self._t.threshold, stat, n_a, n_b, why)
