"""Memory guard: device memory saturation or creep, from gpu_monitor readings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from guards.base import COMMON_PARAMS, param
from guards.context import ArmResources, JudgeContext, ResourceReadings
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.window import ArmWindow


def creep_slope(history: Sequence[int], min_rising: float, min_step: float = 0.0) -> float:
    """Least-squares slope (bytes per sample) if the series rises steadily, else 0.

    "Steadily": at least `min_rising` of the steps go up by more than `min_step` bytes (a
    leak creeps; a cache that fills once and plateaus, a sawtooth of allocations, or the
    allocator's few-kilobyte jitter does not).
    """
    y = np.asarray(history, dtype=np.float64)
    steps = np.diff(y)
    if steps.size == 0 or float(np.mean(steps > min_step)) < min_rising:
        return 0.0
    x = np.arange(y.size, dtype=np.float64)
    slope = float(np.polyfit(x, y, 1)[0])
    return max(slope, 0.0)


class MemoryGuard:
    """FAIL when the challenger uses > threshold of its device memory (default 0.9), or
    when its memory creeps: steadily rising over >= `min_history` samples, projected to
    cross threshold * total within `horizon` more samples, and rising faster than the
    champion's (`champion_factor` times its slope) so shared-device growth is not blamed
    on the challenger. Readings are deterministic, so no alpha is spent. No readings ->
    no signal.
    """

    name = "memory"
    PARAMS: ClassVar[Mapping[str, Any]] = {
        **COMMON_PARAMS, "min_history": 30, "horizon": 600, "min_rising": 0.8,
        "champion_factor": 2.0, "min_step_bytes": 2**20,
    }

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        self._t = trigger
        self._min_history = int(param(trigger, self.PARAMS, "min_history"))
        self._horizon = float(param(trigger, self.PARAMS, "horizon"))
        self._min_rising = float(param(trigger, self.PARAMS, "min_rising"))
        self._factor = float(param(trigger, self.PARAMS, "champion_factor"))
        self._min_step = float(param(trigger, self.PARAMS, "min_step_bytes"))

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 0

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if 0.0 < threshold <= 1.0 else "must be a fraction of memory in (0, 1]"

    def _slope(self, arm: ArmResources | None) -> float:
        if arm is None or len(arm.history) < self._min_history:
            return 0.0
        return creep_slope(arm.history, self._min_rising, self._min_step)

    def evaluate(
        self, champion: ArmWindow, challenger: ArmWindow, resources: ResourceReadings | None
    ) -> GuardResult:
        b = resources.challenger if resources else None
        if b is None or b.total_bytes <= 0:
            return no_signal(self.name, self._t.threshold, "no memory readings")
        a = resources.champion if resources else None
        frac = b.fraction
        why = f"challenger uses {frac:.1%} of {b.total_bytes / 2**30:.1f} GiB"
        slope_b, slope_a = self._slope(b), self._slope(a)
        limit = self._t.threshold * b.total_bytes
        creeping = (
            slope_b > 0.0
            and b.used_bytes + slope_b * self._horizon >= limit
            and slope_b > self._factor * slope_a
        )
        if frac > self._t.threshold:
            state = GuardState.FAIL
            why += f" > {self._t.threshold:.0%}"
        elif creeping:
            state = GuardState.FAIL
            why += (f"; creeping {slope_b / 2**20:.1f} MiB/sample, reaches "
                    f"{self._t.threshold:.0%} within {self._horizon:.0f} samples")
        else:
            state = GuardState.PASS
        n_hist = len(b.history)
        return GuardResult(self.name, state, frac, self._t.threshold, slope_b,
                           len(a.history) if a else 0, n_hist, why)
