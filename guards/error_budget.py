"""Error-budget burn-rate guard: challenger's errors against the availability SLO."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, SequentialGuard
from guards.context import JudgeContext
from guards.look import Look
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.stats import log_e_bernoulli


class ErrorBudgetBurnGuard(SequentialGuard):
    """Burn rate = challenger error rate / (1 - SLO target) (Google SRE workbook, ch. 5).

    Threshold = the burn multiple that pages (default 10). FAIL when the one-sample
    anytime-valid test rejects H0: error rate <= threshold * (1 - target), counting only
    the looks where the champion was healthy (an incident that burns both arms' budget is
    not the challenger's). The target comes from params.slo_target or
    context.error_slo_target; with neither, no signal and no share of alpha.
    """

    name = "error_budget_burn"
    PARAMS: ClassVar[Mapping[str, Any]] = {**COMMON_PARAMS, "slo_target": 0.0,
                                           "min_requests": 100}
    STATE = ("_rejected", "_k", "_n")

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        super().__init__(trigger, context, alpha)
        self._target = self.target(trigger, context)
        self._min = int(self.p("min_requests"))
        self._k = self._n = 0

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

    def evaluate(self, look: Look) -> GuardResult:
        n_a, n_b = look.champion.n_judged, look.challenger.n_judged
        if self._target is None:
            return no_signal(self.name, self._t.threshold, "no error SLO configured", n_a, n_b)
        if look.health.champion_healthy:
            self._k += look.d_challenger.n_errors
            self._n += look.d_challenger.n_judged
        budget = 1.0 - self._target
        p0 = min(self._t.threshold * budget, 0.999999)
        burn = (self._k / self._n) / budget if self._n else 0.0
        log_e = log_e_bernoulli(self._k, self._n, p0) / look.deff.rate
        why = f"challenger burns the {budget:.3%} error budget at {burn:.1f}x"
        if self.latch(log_e):
            state = GuardState.FAIL
            why += f", significantly above {self._t.threshold:g}x while the champion was healthy"
        elif n_b >= self._min:
            state = GuardState.PASS
        else:
            state = GuardState.INCONCLUSIVE
            why += f"; waiting for {self._min} requests"
        return self.result(state, burn, log_e, n_a, n_b, why)
