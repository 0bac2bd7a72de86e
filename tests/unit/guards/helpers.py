"""Synthetic traffic for guard tests (real ArmWindows, no mocks)."""

from __future__ import annotations

import numpy as np

from guards.base import Guard
from guards.context import JudgeContext, ResourceReadings
from guards.look import Looks
from guards.results import GuardResult
from guards.window import ArmWindow, Outcome


def fill(
    w: ArmWindow,
    n: int,
    rng: np.random.Generator,
    *,
    err: float = 0.005,
    lat_scale: float = 1.0,
    out_shift: float = 0.0,
    in_shift: float = 0.0,
    busy_scale: float = 1.0,
    tokens: int = 0,
) -> ArmWindow:
    lat = rng.lognormal(np.log(0.08), 0.8, n) * lat_scale
    outcome = np.where(rng.random(n) < err, Outcome.SERVER_ERROR, Outcome.OK)
    w.record_batch(
        lat,
        outcome,
        output_value=rng.normal(out_shift, 1.0, n),
        input_value=rng.normal(in_shift, 1.0, n),
        busy_s=0.8 * lat * busy_scale,
        tokens_in=np.full(n, tokens),
        tokens_out=np.full(n, 2 * tokens),
    )
    return w



class Driven:
    """Drives one guard the way the judge does, from cumulative windows: each call is one
    look (the deltas since the previous call), with the judge's derived state."""

    def __init__(self, guard: Guard, context: JudgeContext | None = None,
                 error_ceiling: float = 0.01) -> None:
        ctx = context or getattr(guard, "_ctx", None) or JudgeContext()
        self.guard = guard
        self.looks = Looks(ctx, error_ceiling, ctx.latency_slo_s)

    @property
    def name(self) -> str:
        return self.guard.name

    def evaluate(self, champion: ArmWindow, challenger: ArmWindow,
                 resources: ResourceReadings | None = None) -> GuardResult:
        return self.guard.evaluate(self.looks.from_cumulative(champion, challenger, resources))
