"""Cost-per-inference guard: replica-seconds and tokens per request times prices."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, SequentialGuard
from guards.context import JudgeContext
from guards.look import Look
from guards.matched import ratio_evidence
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal


def _prices(context: JudgeContext) -> tuple[float, float, float]:
    return (context.price_per_replica_second or 0.0,
            context.price_per_1k_input_tokens / 1000.0,
            context.price_per_1k_output_tokens / 1000.0)


class CostGuard(SequentialGuard):
    """Cost per request = busy_s * price/replica-s + tokens/1000 * price/1k (in and out).

    Threshold t (default 0.5): FAIL when the mSPRT rejects H0: cost_B / cost_A* <= 1 + t,
    A* the time-matched champion. Prices come from the JudgeContext; with none configured
    the guard has no signal and takes no share of alpha.
    """

    name = "cost"
    PARAMS: ClassVar[Mapping[str, Any]] = {**COMMON_PARAMS, "min_samples": 30, "tau": 0.5}

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        super().__init__(trigger, context, alpha)
        self._min = int(self.p("min_samples"))
        self._tau = float(self.p("tau"))
        self._prices = _prices(context)

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 1 if any(_prices(context)) else 0

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if threshold > 0.0 else "must be a relative increase > 0 (0.5 = +50%)"

    def evaluate(self, look: Look) -> GuardResult:
        if not any(self._prices):
            return no_signal(self.name, self._t.threshold, "no prices configured",
                             look.champion.n_judged, look.challenger.n_judged)
        ev = ratio_evidence(look.matched, self._prices, math.log1p(self._t.threshold),
                            self._tau, look.deff.latency)
        n_a, n_b = round(ev.n_a), round(ev.n_b)
        if ev.mean_a <= 0.0 or ev.mean_b <= 0.0:
            return no_signal(self.name, self._t.threshold, "no busy time or tokens recorded",
                             n_a, n_b)
        value = ev.mean_b / ev.mean_a - 1.0
        why = (f"challenger {ev.mean_b:.3g} vs champion {ev.mean_a:.3g} per request over the "
               f"same looks ({value:+.0%})")
        if min(n_a, n_b) < self._min:
            return self.result(GuardState.INCONCLUSIVE, value, None, n_a, n_b,
                               why + f"; waiting for {self._min} per arm")
        state = GuardState.FAIL if self.latch(ev.log_e) else GuardState.PASS
        if state is GuardState.FAIL:
            why += f"; significantly above +{self._t.threshold:.0%}"
        return self.result(state, value, ev.log_e, n_a, n_b, why)
