"""Cost-per-inference guard: replica-seconds and tokens per request times prices."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, param
from guards.context import JudgeContext, ResourceReadings
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.stats import log_e_log_ratio, log_e_to_threshold
from guards.window import ArmWindow


class CostGuard:
    """Cost per request = busy_s * price/replica-s + tokens/1000 * price/1k (in and out).

    Threshold t (default 0.5): FAIL when the mSPRT rejects H0: cost_B / cost_A <= 1 + t.
    Prices come from the JudgeContext; with none configured the guard has no signal.
    """

    name = "cost"
    PARAMS: ClassVar[Mapping[str, Any]] = {**COMMON_PARAMS, "min_samples": 30, "tau": 0.5}

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        self._t = trigger
        self._log_thr = log_e_to_threshold(alpha)
        self._min = int(param(trigger, self.PARAMS, "min_samples"))
        self._tau = float(param(trigger, self.PARAMS, "tau"))
        self._prices = (
            context.price_per_replica_second or 0.0,
            context.price_per_1k_input_tokens / 1000.0,
            context.price_per_1k_output_tokens / 1000.0,
        )
        self._rejected = False

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 1

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if threshold > 0.0 else "must be a relative increase > 0 (0.5 = +50%)"

    def evaluate(
        self, champion: ArmWindow, challenger: ArmWindow, resources: ResourceReadings | None
    ) -> GuardResult:
        if not any(self._prices):
            return no_signal(self.name, self._t.threshold, "no prices configured",
                             champion.n_judged, challenger.n_judged)
        a, b = champion.moments(*self._prices), challenger.moments(*self._prices)
        if a.mean <= 0.0 or b.mean <= 0.0:
            return no_signal(self.name, self._t.threshold, "no busy time or tokens recorded",
                             a.n, b.n)
        value = b.mean / a.mean - 1.0
        why = f"challenger {b.mean:.3g} vs champion {a.mean:.3g} per request ({value:+.0%})"
        if min(a.n, b.n) < self._min:
            return GuardResult(self.name, GuardState.INCONCLUSIVE, value, self._t.threshold,
                               None, a.n, b.n, why + f"; waiting for {self._min} per arm")
        log_e, _ = log_e_log_ratio(a.mean, a.var, a.n, b.mean, b.var, b.n,
                                   math.log1p(self._t.threshold), self._tau)
        self._rejected = self._rejected or log_e >= self._log_thr
        state = GuardState.FAIL if self._rejected else GuardState.PASS
        if self._rejected:
            why += f"; significantly above +{self._t.threshold:.0%}"
        return GuardResult(self.name, state, value, self._t.threshold, log_e, a.n, b.n, why)
