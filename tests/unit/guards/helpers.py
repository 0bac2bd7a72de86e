"""Synthetic traffic for guard tests (real ArmWindows, no mocks)."""

from __future__ import annotations

import numpy as np

from guards.window import ArmWindow, Outcome


def fill(
    w: ArmWindow,
    n: int,
    rng: np.random.Generator,
    *,
    err: float = 0.005,
    lat_scale: float = 1.0,
    out_shift: float = 0.0,
    busy_scale: float = 1.0,
    tokens: int = 0,
) -> ArmWindow:
    lat = rng.lognormal(np.log(0.08), 0.8, n) * lat_scale
    outcome = np.where(rng.random(n) < err, Outcome.SERVER_ERROR, Outcome.OK)
    w.record_batch(
        lat,
        outcome,
        output_value=rng.normal(out_shift, 1.0, n),
        input_value=rng.normal(0.0, 1.0, n),
        busy_s=0.8 * lat * busy_scale,
        tokens_in=np.full(n, tokens),
        tokens_out=np.full(n, 2 * tokens),
    )
    return w

