"""Error-budget burn-rate guard: challenger's errors against the availability SLO."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, param
from guards.context import JudgeContext, ResourceReadings
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.stats import log_e_bernoulli, log_e_to_threshold
from guards.window import ArmWindow


class ErrorBudgetBurnGuard:
    """Burn rate = challenger error rate / (1 - SLO target) (Google SRE workbook, ch. 5).

    Threshold = the burn multiple that pages (default 10). FAIL when the one-sample
    anytime-valid test rejects H0: error rate <= threshold * (1 - target). The target comes
    from params.slo_target or context.error_slo_target; with neither, no signal.
    """

    name = "error_budget_burn"
    PARAMS: ClassVar[Mapping[str, Any]] = {**COMMON_PARAMS, "slo_target": 0.0,
                                           "min_requests": 100}

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        self._t = trigger
        self._log_thr = log_e_to_threshold(alpha)
        self._target = self.target(trigger, context)
        self._min = int(param(trigger, self.PARAMS, "min_requests"))
        self._rejected = False

    @staticmethod
    def target(trigger: TriggerSpec, context: JudgeContext) -> float | None:
        t = float(trigger.params.get("slo_target", 0.0))
        return t if t > 0.0 else context.error_slo_target

    @classmethod
    def n_tests(cls, trigger: TriggerSpec, context: JudgeContext) -> int:
        return 1 if cls.target(trigger, context) is not None else 0

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if threshold > 0.0 else "must be a burn-rate multiple > 0"

    def evaluate(
        self, champion: ArmWindow, challenger: ArmWindow, resources: ResourceReadings | None
    ) -> GuardResult:
        n_a, n_b = champion.n_judged, challenger.n_judged
        if self._target is None:
            return no_signal(self.name, self._t.threshold, "no error SLO configured", n_a, n_b)
        budget = 1.0 - self._target
        p0 = min(self._t.threshold * budget, 0.999999)
        k_b = challenger.n_errors
        burn = (k_b / n_b) / budget if n_b else 0.0
        log_e = log_e_bernoulli(k_b, n_b, p0)
        self._rejected = self._rejected or log_e >= self._log_thr
        why = f"challenger burns the {budget:.3%} error budget at {burn:.1f}x"
        if self._rejected:
            state = GuardState.FAIL
            why += f", significantly above {self._t.threshold:g}x"
        elif n_b >= self._min:
            state = GuardState.PASS
        else:
            state = GuardState.INCONCLUSIVE
            why += f"; waiting for {self._min} requests"
        return GuardResult(self.name, state, burn, self._t.threshold, log_e, n_a, n_b, why)
