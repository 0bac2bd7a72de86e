"""Throughput guard: requests per busy replica-second, challenger vs champion."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, SequentialGuard
from guards.context import JudgeContext
from guards.look import Look
from guards.matched import ratio_evidence
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal


class ThroughputGuard(SequentialGuard):
    """Throughput per busy replica-second = requests / busy seconds = 1 / mean busy time.

    Threshold t (default 0.7): FAIL when the challenger's throughput is significantly below
    t times the champion's over the same looks, i.e. the mSPRT (`log_e_log_ratio`) rejects
    H0: mean_busy_B / mean_busy_A* <= 1 / t, A* the time-matched champion. No busy time
    recorded -> no signal.
    """

    name = "throughput"
    PARAMS: ClassVar[Mapping[str, Any]] = {**COMMON_PARAMS, "min_samples": 30, "tau": 0.5}

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        super().__init__(trigger, context, alpha)
        self._min = int(self.p("min_samples"))
        self._tau = float(self.p("tau"))

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 1

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if 0.0 < threshold < 1.0 else "must be a ratio in (0, 1) (0.7 = 70%)"

    def evaluate(self, look: Look) -> GuardResult:
        ev = ratio_evidence(look.matched, (1.0, 0.0, 0.0), -math.log(self._t.threshold),
                            self._tau, look.deff.latency)
        n_a, n_b = round(ev.n_a), round(ev.n_b)
        if ev.mean_a <= 0.0 or ev.mean_b <= 0.0:
            return no_signal(self.name, self._t.threshold, "no busy time recorded", n_a, n_b)
        ratio = ev.mean_a / ev.mean_b  # throughput_B / throughput_A
        why = (f"challenger {1 / ev.mean_b:.2f} vs champion {1 / ev.mean_a:.2f} req per busy "
               f"replica-second over the same looks ({ratio:.0%})")
        if min(n_a, n_b) < self._min:
            return self.result(GuardState.INCONCLUSIVE, ratio, None, n_a, n_b,
                               why + f"; waiting for {self._min} per arm")
        if self.latch(ev.log_e):
            state = GuardState.FAIL
            why += f"; significantly below {self._t.threshold:.0%} of the champion"
        else:
            state = GuardState.PASS
        return self.result(state, ratio, ev.log_e, n_a, n_b, why)
