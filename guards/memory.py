"""Memory guard: saturation beyond what the engine preallocates, and growth per request,
both relative to the champion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from guards.base import COMMON_PARAMS, SequentialGuard
from guards.context import ArmResources, JudgeContext
from guards.look import Look
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal

MiB = 2**20


def creep_slope(history: Sequence[int], min_rising: float, min_step: float = 0.0,
                x: Sequence[float] | None = None) -> float:
    """Least-squares slope of memory over `x` (sample index if None) if the series rises
    steadily, else 0.

    "Steadily": at least `min_rising` of the steps (those where x moved) go up by more than
    `min_step` bytes (a leak creeps; a cache that fills once and plateaus, a sawtooth of
    allocations, or the allocator's few-kilobyte jitter does not).
    """
    y = np.asarray(history, dtype=np.float64)
    xs = np.arange(y.size, dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    moved = np.diff(xs) > 0
    steps = np.diff(y)[moved]
    if steps.size == 0 or float(np.mean(steps > min_step)) < min_rising:
        return 0.0
    if float(np.ptp(xs)) <= 0.0:
        return 0.0
    slope = float(np.polyfit(xs, y, 1)[0])
    return max(slope, 0.0)


class MemoryGuard(SequentialGuard):
    """FAIL on either of two rules, each relative to the champion:

    - saturation: the engine's own signal where it has one (vLLM's KV-cache usage,
      `ArmResources.engine_usage`) above the threshold (default 0.9), else the share of the
      memory *outside the engine's preallocation* that is in use (`beyond_reservation`:
      vLLM reserves `gpu_memory_utilization` of the device at start, which is by design)
      above the threshold; in both cases only while the champion's is not (a full device
      shared by both arms is not the challenger's doing);
    - growth per request served: memory regressed on the arm's cumulative request count
      over the whole rollout (across steps), rising steadily, at least `min_bytes_per_request`
      per request and `champion_factor` times the champion's own bytes per request, with
      at least `min_growth_bytes` grown. Per request, so a champion whose traffic falls as
      the ramp moves it away is compared fairly, and a leak is caught within its first
      minutes whatever the device size.
    Readings are deterministic, so no alpha is spent. No readings -> no signal.
    """

    name = "memory"
    PARAMS: ClassVar[Mapping[str, Any]] = {
        **COMMON_PARAMS, "min_history": 10, "min_rising": 0.7, "champion_factor": 2.0,
        "min_step_bytes": 2**16, "min_bytes_per_request": 2**16, "min_growth_bytes": 2**27,
    }

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        super().__init__(trigger, context, alpha)
        self._min_history = int(self.p("min_history"))
        self._min_rising = float(self.p("min_rising"))
        self._factor = float(self.p("champion_factor"))
        self._min_step = float(self.p("min_step_bytes"))
        self._min_per_req = float(self.p("min_bytes_per_request"))
        self._min_growth = float(self.p("min_growth_bytes"))

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 0

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if 0.0 < threshold <= 1.0 else "must be a fraction of memory in (0, 1]"

    def per_request(self, arm: ArmResources | None) -> float:
        """Bytes per request served over the arm's history (0 if not rising steadily)."""
        if arm is None or len(arm.history) < self._min_history or \
                len(arm.requests) != len(arm.history):
            return 0.0
        return creep_slope(arm.history, self._min_rising, self._min_step, arm.requests)

    def evaluate(self, look: Look) -> GuardResult:
        res = look.resources
        b = res.challenger if res else None
        if b is None or b.total_bytes <= 0:
            return no_signal(self.name, self._t.threshold, "no memory readings")
        a = res.champion if res else None
        thr = self._t.threshold
        sat_b, sat_a, what = _saturation(b), _saturation(a), _signal_name(b)
        why = f"challenger {what} {sat_b:.1%}"
        if a is not None:
            why += f" vs champion {sat_a:.1%}"
        slope_b, slope_a = self.per_request(b), self.per_request(a)
        growth = _growth(b)
        state = GuardState.PASS
        if sat_b > thr and (a is None or sat_a <= thr):
            state = GuardState.FAIL
            why += f"; challenger above {thr:.0%}, the champion is not"
        elif (slope_b >= self._min_per_req and slope_b > self._factor * slope_a
              and growth >= self._min_growth):
            state = GuardState.FAIL
            why += (f"; grows {slope_b / 1024:.0f} KiB per request served vs the champion's "
                    f"{slope_a / 1024:.0f} KiB ({growth / MiB:.0f} MiB so far)")
        elif slope_b > 0:
            why += f"; grows {slope_b / 1024:.0f} KiB per request ({growth / MiB:.0f} MiB)"
        return self.result(state, sat_b, slope_b, len(a.history) if a else 0, len(b.history),
                           why)


def _saturation(arm: ArmResources | None) -> float:
    if arm is None:
        return 0.0
    if arm.engine_usage is not None:
        return arm.engine_usage
    return arm.beyond_reservation


def _signal_name(arm: ArmResources) -> str:
    if arm.engine_usage is not None:
        return "engine KV-cache usage"
    if arm.reserved_bytes:
        return "memory beyond the engine's preallocation"
    return f"memory use of {arm.total_bytes / 2**30:.1f} GiB"


def _growth(arm: ArmResources) -> float:
    return float(max(arm.history) - arm.history[0]) if arm.history else 0.0
