"""Memory guard: saturation beyond what the engine preallocates, and growth per request,
both relative to the champion."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from guards.base import COMMON_PARAMS, SequentialGuard
from guards.context import ArmResources, JudgeContext
from guards.look import Look
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal

MiB = 2**20


@dataclass(frozen=True, slots=True)
class Growth:
    """Memory growth of one arm against the requests it served."""

    per_request: float  # bytes per request: the median over sample intervals
    sign_z: float  # how consistently memory rose when requests were served (sign test)
    total: float  # per_request times the requests served over the history
    intervals: int


NO_GROWTH = Growth(0.0, 0.0, 0.0, 0)


def growth_per_request(history: Sequence[int], requests: Sequence[int]) -> Growth:
    """Bytes per request served, robust to the allocator's jitter and one-off steps.

    Over each sample interval in which the arm served requests, the growth per request is
    dy / dx; their median is the arm's bytes per request (a caching allocator's occasional
    step up, or a cache filling once, moves a few intervals, not the median). The sign test
    says how consistently memory rose: z = (rises - n/2) / sqrt(n/4).
    """
    y = np.asarray(history, dtype=np.float64)
    x = np.asarray(requests, dtype=np.float64)
    if y.size < 2 or x.size != y.size:
        return NO_GROWTH
    dx, dy = np.diff(x), np.diff(y)
    served = dx > 0
    n = int(served.sum())
    if n == 0:
        return NO_GROWTH
    per_request = float(np.median(dy[served] / dx[served]))
    z = (float(np.sum(dy[served] > 0)) - n / 2) / math.sqrt(n / 4)
    return Growth(per_request, z, per_request * float(x[-1] - x[0]), n)


class MemoryGuard(SequentialGuard):
    """FAIL on either of two rules, each relative to the champion:

    - saturation: the engine's own signal where it has one (vLLM's KV-cache usage,
      `ArmResources.engine_usage`) above the threshold (default 0.9), else the share of the
      memory *outside the engine's preallocation* that is in use (`beyond_reservation`:
      vLLM reserves `gpu_memory_utilization` of the device at start, which is by design)
      above the threshold; in both cases only while the champion's is not (a full device
      shared by both arms is not the challenger's doing);
    - growth per request served (`growth_per_request`): over the whole rollout (across
      steps), at least `min_bytes_per_request` per request and `champion_factor` times the
      champion's own bytes per request, rising consistently (sign test z >=
      `min_sign_z`), with at least `min_growth_bytes` grown. Per request, so a champion
      whose traffic falls as the ramp moves it away is compared fairly, and a leak is caught
      within its first minutes whatever the device size.
    Readings are deterministic, so no alpha is spent. No readings -> no signal.
    """

    name = "memory"
    PARAMS: ClassVar[Mapping[str, Any]] = {
        **COMMON_PARAMS, "min_history": 10, "min_sign_z": 3.0, "champion_factor": 2.0,
        "min_bytes_per_request": 2**16, "min_growth_bytes": 2**27,
    }

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        super().__init__(trigger, context, alpha)
        self._min_history = int(self.p("min_history"))
        self._min_z = float(self.p("min_sign_z"))
        self._factor = float(self.p("champion_factor"))
        self._min_per_req = float(self.p("min_bytes_per_request"))
        self._min_growth = float(self.p("min_growth_bytes"))

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 0

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if 0.0 < threshold <= 1.0 else "must be a fraction of memory in (0, 1]"

    def growth(self, arm: ArmResources | None) -> Growth:
        if arm is None or len(arm.history) < self._min_history:
            return NO_GROWTH
        return growth_per_request(arm.history, arm.requests)

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
        gb, ga = self.growth(b), self.growth(a)
        slope_b, slope_a = gb.per_request, max(ga.per_request, 0.0)
        state = GuardState.PASS
        if sat_b > thr and (a is None or sat_a <= thr):
            state = GuardState.FAIL
            why += f"; challenger above {thr:.0%}, the champion is not"
        elif (slope_b >= self._min_per_req and slope_b > self._factor * slope_a
              and gb.sign_z >= self._min_z and gb.total >= self._min_growth):
            state = GuardState.FAIL
            why += (f"; grows {slope_b / 1024:.0f} KiB per request served vs the champion's "
                    f"{slope_a / 1024:.0f} KiB ({gb.total / MiB:.0f} MiB over "
                    f"{gb.intervals} samples)")
        elif slope_b > 0:
            why += f"; grows {slope_b / 1024:.0f} KiB per request ({gb.total / MiB:.0f} MiB)"
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
