"""Hallucination-rate guard: sampled scorer outputs, challenger vs champion.

Scores come from a pluggable `guards.hallucination.Scorer` (higher = more likely
hallucinated) and are recorded into the windows with `record_hallucination`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, param
from guards.context import JudgeContext, ResourceReadings
from guards.errors import CumulativeDeltas
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.stats import ConditionalRateTest
from guards.window import ArmWindow


class HallucinationRateGuard:
    """Share of scored responses with score >= `cutoff` (default 0.5).

    FAIL when `ConditionalRateTest` rejects H0: rate_B <= (1 + threshold) * rate_A, the
    exposures being each arm's number of scored responses. Threshold 0 = any significant
    increase over the champion. No scores -> no signal.
    """

    name = "hallucination_rate"
    PARAMS: ClassVar[Mapping[str, Any]] = {**COMMON_PARAMS, "cutoff": 0.5, "min_samples": 50}

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        self._t = trigger
        self._cutoff = float(param(trigger, self.PARAMS, "cutoff"))
        self._min = int(param(trigger, self.PARAMS, "min_samples"))
        self._test = ConditionalRateTest(alpha, 1.0 + trigger.threshold)
        self._deltas = CumulativeDeltas(4)

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 1

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if threshold >= 0.0 else "must be a relative increase >= 0"

    def evaluate(
        self, champion: ArmWindow, challenger: ArmWindow, resources: ResourceReadings | None
    ) -> GuardResult:
        n_a, n_b = champion.hallucination_n, challenger.hallucination_n
        k_a = champion.hallucination_at_least(self._cutoff)
        k_b = challenger.hallucination_at_least(self._cutoff)
        log_e = self._test.update(*self._deltas.step(k_a, n_a, k_b, n_b))
        if n_a == 0 or n_b == 0:
            return no_signal(self.name, self._t.threshold, "no hallucination scores", n_a, n_b)
        rate_a, rate_b = k_a / n_a, k_b / n_b
        why = f"challenger {k_b}/{n_b} = {rate_b:.2%} vs champion {k_a}/{n_a} = {rate_a:.2%}"
        if self._test.rejected:
            state = GuardState.FAIL
            why += "; significant increase over the champion"
        elif min(n_a, n_b) >= self._min:
            state = GuardState.PASS
        else:
            state = GuardState.INCONCLUSIVE
            why += f"; waiting for {self._min} scored responses per arm"
        return GuardResult(self.name, state, rate_b, self._t.threshold, log_e, n_a, n_b, why)
