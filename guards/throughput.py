"""Throughput guard: requests per busy replica-second, challenger vs champion."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, param
from guards.context import JudgeContext, ResourceReadings
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.stats import log_e_log_ratio, log_e_to_threshold
from guards.window import ArmWindow


class ThroughputGuard:
    """Throughput per busy replica-second = requests / busy seconds = 1 / mean busy time.

    Threshold t (default 0.7): FAIL when the challenger's throughput is significantly below
    t times the champion's, i.e. the mSPRT (`log_e_log_ratio`) rejects
    H0: mean_busy_B / mean_busy_A <= 1 / t. No busy time recorded -> no signal.
    """

    name = "throughput"
    PARAMS: ClassVar[Mapping[str, Any]] = {**COMMON_PARAMS, "min_samples": 30, "tau": 0.5}

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        self._t = trigger
        self._log_thr = log_e_to_threshold(alpha)
        self._min = int(param(trigger, self.PARAMS, "min_samples"))
        self._tau = float(param(trigger, self.PARAMS, "tau"))
        self._rejected = False

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 1

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if 0.0 < threshold < 1.0 else "must be a ratio in (0, 1) (0.7 = 70%)"

    def evaluate(
        self, champion: ArmWindow, challenger: ArmWindow, resources: ResourceReadings | None
    ) -> GuardResult:
        a, b = champion.moments(1.0), challenger.moments(1.0)
        if a.mean <= 0.0 or b.mean <= 0.0:
            return no_signal(self.name, self._t.threshold, "no busy time recorded", a.n, b.n)
        ratio = a.mean / b.mean  # throughput_B / throughput_A
        why = (f"challenger {1 / b.mean:.2f} vs champion {1 / a.mean:.2f} req per busy "
               f"replica-second ({ratio:.0%})")
        if min(a.n, b.n) < self._min:
            return GuardResult(self.name, GuardState.INCONCLUSIVE, ratio, self._t.threshold,
                               None, a.n, b.n, why + f"; waiting for {self._min} per arm")
        log_e, _ = log_e_log_ratio(a.mean, a.var, a.n, b.mean, b.var, b.n,
                                   -math.log(self._t.threshold), self._tau)
        self._rejected = self._rejected or log_e >= self._log_thr
        if self._rejected:
            state = GuardState.FAIL
            why += f"; significantly below {self._t.threshold:.0%} of the champion"
        else:
            state = GuardState.PASS
        return GuardResult(self.name, state, ratio, self._t.threshold, log_e, a.n, b.n, why)
