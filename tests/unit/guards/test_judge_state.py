"""A restarted supervisor resumes the judge's evidence: no reset, no second alpha."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guards.verdict import JudgeContext, make_judge
from guards.window import ArmWindow
from tests.unit.guards.helpers import fill

CTX = JudgeContext(latency_slo_s=0.6, error_slo_target=0.99, price_per_replica_second=0.001)


def _looks(seed: int, n: int, lat_scale: float = 1.0) -> list[tuple[ArmWindow, ArmWindow]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = fill(ArmWindow(), 190, rng), fill(ArmWindow(), 10, rng, lat_scale=lat_scale)
        a.record_kpi_batch(rng.random(20) < 0.1)
        b.record_kpi_batch(rng.random(2) < 0.1)
        out.append((a, b))
    return out


def test_resumed_judge_continues_exactly_where_it_stopped() -> None:
    looks = _looks(1, 80, lat_scale=1.3)
    straight = make_judge(None, CTX)
    expected = [straight.observe(a.copy(), b.copy()).to_dict() for a, b in looks]
    first = make_judge(None, CTX)
    for a, b in looks[:40]:
        first.observe(a.copy(), b.copy())
    saved = json.loads(json.dumps(first.state(), allow_nan=False))
    resumed = make_judge(None, CTX)
    resumed.load(saved)
    got = [resumed.observe(a.copy(), b.copy()).to_dict() for a, b in looks[40:]]
    assert got == expected[40:]
    assert resumed.challenger == straight.challenger and resumed.looks == 80


def test_state_for_another_config_is_refused() -> None:
    judge = make_judge(None, CTX)
    judge.observe(*_looks(2, 1)[0])
    other = make_judge(None, JudgeContext())
    with pytest.raises(ValueError, match="other triggers or another alpha"):
        other.load(judge.state())
    with pytest.raises(ValueError, match="version"):
        other.load({"v": 99})
