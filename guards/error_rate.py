"""Error-rate guard: significant increase over the champion, or above an absolute ceiling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, SequentialGuard
from guards.context import JudgeContext
from guards.look import Look
from guards.results import GuardResult, GuardState, TriggerSpec
from guards.stats import ConditionalRateTest, log_e_bernoulli


class ErrorRateGuard(SequentialGuard):
    """Server errors + timeouts per judged request (client errors excluded).

    FAIL when either anytime-valid test rejects at its share of alpha:
    - relative: `ConditionalRateTest` of H0 rate_B <= margin * rate_A, look by look, so a
      shared incident (both arms failing) adds no evidence against the challenger;
    - absolute: `log_e_bernoulli` of H0 rate_B <= threshold (the "> 1% absolute" rule), on
      the challenger's requests of the looks where the champion was healthy only.
    Keyed traffic tempers both by the design effect. PASS once both arms have
    `min_requests` judged requests and neither test rejected.
    """

    name = "error_rate"
    PARAMS: ClassVar[Mapping[str, Any]] = {
        **COMMON_PARAMS, "required": True, "relative": True, "margin": 1.0, "min_requests": 100,
    }
    STATE = ("_rejected", "_rel", "_abs_k", "_abs_n", "_abs_rejected")

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        super().__init__(trigger, context, alpha)
        margin = float(self.p("margin"))
        self._rel = ConditionalRateTest(alpha, margin) if self.p("relative") else None
        self._min = int(self.p("min_requests"))
        self._abs_k = self._abs_n = 0
        self._abs_rejected = False

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 2 if trigger.params.get("relative", True) else 1

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if 0.0 < threshold < 1.0 else "must be an error rate in (0, 1)"

    def evaluate(self, look: Look) -> GuardResult:
        a, b, da, db = look.champion, look.challenger, look.d_champion, look.d_challenger
        deff = look.deff.rate
        log_rel = None
        if self._rel is not None:
            log_rel = self._rel.update(da.n_errors, da.n_judged, db.n_errors, db.n_judged,
                                       deff)
        if look.health.champion_healthy:
            self._abs_k += db.n_errors
            self._abs_n += db.n_judged
        log_abs = log_e_bernoulli(self._abs_k, self._abs_n, self._t.threshold) / deff
        self._abs_rejected = self._abs_rejected or log_abs >= self._log_thr
        k_a, n_a, k_b, n_b = a.n_errors, a.n_judged, b.n_errors, b.n_judged
        rate_a = k_a / n_a if n_a else 0.0
        rate_b = k_b / n_b if n_b else 0.0
        stat = max(log_abs, log_rel if log_rel is not None else -1e300)
        why = f"challenger {k_b}/{n_b} = {rate_b:.4%} vs champion {k_a}/{n_a} = {rate_a:.4%}"
        if self._rel is not None and self._rel.rejected:
            state, why = GuardState.FAIL, why + (
                f"; significant increase (log e {log_rel:.2f} >= {self._log_thr:.2f})")
        elif self._abs_rejected:
            state, why = GuardState.FAIL, why + (
                f"; significantly above {self._t.threshold:.2%} while the champion was "
                f"healthy (log e {log_abs:.2f} >= {self._log_thr:.2f})")
        elif min(n_a, n_b) >= self._min:
            state = GuardState.PASS
        else:
            state, why = GuardState.INCONCLUSIVE, why + f"; waiting for {self._min} per arm"
        return self.result(state, rate_b, stat, n_a, n_b, why)
