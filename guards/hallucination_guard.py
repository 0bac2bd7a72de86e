"""Hallucination-rate guard: sampled scorer outputs, challenger vs champion.

Scores come from a pluggable `guards.hallucination.Scorer` (higher = more likely
hallucinated) and are recorded into the windows with `record_hallucination`. The ingress
samples the challenger at a higher rate than the champion (equal evidence per arm within
one scoring budget); the test compares rates per scored answer, so unequal sampling rates
need no reweighting as long as sampling does not depend on the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, SequentialGuard
from guards.context import JudgeContext
from guards.look import Look
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.stats import ConditionalRateTest


class HallucinationRateGuard(SequentialGuard):
    """Share of scored responses with score >= `cutoff` (default 0.5).

    FAIL when `ConditionalRateTest` rejects H0: rate_B <= (1 + threshold) * rate_A, look by
    look, the exposures being each arm's number of scored responses. Threshold 0 = any
    significant increase over the champion. No scores -> no signal.
    """

    name = "hallucination_rate"
    PARAMS: ClassVar[Mapping[str, Any]] = {**COMMON_PARAMS, "cutoff": 0.5, "min_samples": 50}
    STATE = ("_rejected", "_test")

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        super().__init__(trigger, context, alpha)
        self._cutoff = float(self.p("cutoff"))
        self._min = int(self.p("min_samples"))
        self._test = ConditionalRateTest(alpha, 1.0 + trigger.threshold)

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 1 if context.hallucination_scoring else 0

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if threshold >= 0.0 else "must be a relative increase >= 0"

    def evaluate(self, look: Look) -> GuardResult:
        da, db = look.d_champion, look.d_challenger
        log_e = self._test.update(da.hallucination_at_least(self._cutoff), da.hallucination_n,
                                  db.hallucination_at_least(self._cutoff), db.hallucination_n,
                                  look.deff.latency)
        a, b = look.champion, look.challenger
        n_a, n_b = a.hallucination_n, b.hallucination_n
        if n_a == 0 or n_b == 0:
            return no_signal(self.name, self._t.threshold, "no hallucination scores", n_a, n_b)
        k_a, k_b = a.hallucination_at_least(self._cutoff), b.hallucination_at_least(self._cutoff)
        why = (f"challenger {k_b}/{n_b} = {k_b / n_b:.2%} vs champion {k_a}/{n_a} = "
               f"{k_a / n_a:.2%}")
        if self._test.rejected:
            state = GuardState.FAIL
            why += "; significant increase over the champion"
        elif min(n_a, n_b) >= self._min:
            state = GuardState.PASS
        else:
            state = GuardState.INCONCLUSIVE
            why += f"; waiting for {self._min} scored responses per arm"
        return self.result(state, k_b / n_b, log_e, n_a, n_b, why)
