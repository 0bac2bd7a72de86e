"""The control-plane benchmark's pure parts: the flushes it sends, fan-out summaries, and
what counts as served and as capacity. No Ray."""

from __future__ import annotations

import math
from typing import Any

import pytest

from benchmarks.control_plane import capacity, fanout_summary, flushes, parse_args, served
from guards.window import ArmWindow


def test_flushes_are_real_deltas_split_over_the_versions() -> None:
    pool = flushes(["1", "2"], per_flush=200, count=3, error_rate=0.0)
    assert len(pool) == 3
    for deltas, served_by in pool:
        assert sorted(deltas) == ["1", "2"] and len(served_by) == 200
        windows = {v: ArmWindow.from_bytes(b) for v, b in deltas.items()}
        assert windows["1"].n_requests == windows["2"].n_requests == 100
        assert windows["1"].n_server_errors == 0
    # each flush is a delta, not the window so far
    assert ArmWindow.from_bytes(pool[2][0]["1"]).n_requests == 100


def test_fanout_summary_counts_missing_replicas() -> None:
    full = fanout_summary(10.0, [10.01, 10.02, 10.05], replicas=3)
    assert full["max_s"] == pytest.approx(0.05) and full["p50_s"] == pytest.approx(0.02)
    assert full["missing"] == 0
    partial = fanout_summary(10.0, [10.01], replicas=3)
    assert partial["missing"] == 2 and math.isnan(partial["max_s"])


def point(n: int, achieved: float, sup: float, p99_ms: float = 20.0,
          skipped: int = 0) -> dict[str, Any]:
    return {"replicas": n, "offered_per_s": 4.0 * n, "achieved_per_s": achieved,
            "skipped": skipped, "ingest_ms": {"p99_ms": p99_ms},
            "cpu_cores": {"supervisor": sup}}


def test_served_needs_the_rate_no_skips_low_latency_and_under_a_core() -> None:
    assert served(point(100, 400.0, 0.5))
    assert not served(point(100, 380.0, 0.5))  # < 97% of 400
    assert not served(point(100, 400.0, 0.5, skipped=1))
    assert not served(point(100, 400.0, 0.5, p99_ms=300.0))
    assert not served(point(100, 400.0, 1.2))


def test_capacity_takes_the_cost_at_the_busiest_point_above_idle() -> None:
    points = [point(10, 40.0, 0.09), point(100, 400.0, 0.45), point(400, 800.0, 0.90,
                                                                        skipped=5)]
    cap = capacity(points, idle_cores=0.05)
    assert cap["max_replicas_served"] == 100
    assert cap["at_replicas"] == 400
    assert cap["supervisor_cpu_ms_per_flush"] == pytest.approx(0.85 / 800 * 1000)
    # (1 - idle) of a core at 4 flushes a second per replica
    assert cap["replicas_per_core_estimate"] == pytest.approx(0.95 / (0.85 / 800) / 4)
    assert capacity([], 0.0)["max_replicas_served"] == 0


def test_arguments() -> None:
    quick = parse_args(["--quick"])
    assert quick.replicas == (10, 100, 400) and quick.seconds == 6.0 and quick.quick
    assert quick.modes == ("null", "per-ingest", "coalesced", "aggregated")
    full = parse_args(["--modes", "coalesced,aggregated", "--no-ids"])
    assert full.replicas == (10, 100, 400, 1000) and not full.ids
    assert full.out.name == "control_plane.json"
    with pytest.raises(SystemExit):
        parse_args(["--modes", "fast"])
