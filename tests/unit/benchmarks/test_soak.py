"""The soak benchmark's pure summaries: latency buckets, memory growth, process names."""

from __future__ import annotations

import math

import pytest

from benchmarks.soak import Sample, buckets, growth, label_of, slope_per_min, window_summary


def test_buckets_split_by_send_time_and_count_errors() -> None:
    samples = [Sample(100.0 + i, 0.010, ok=i != 3) for i in range(25)]
    out = buckets(samples, start=100.0, width_s=10.0)
    assert [b["t_s"] for b in out] == [0.0, 10.0, 20.0]
    assert [b["n"] for b in out] == [10.0, 10.0, 5.0]
    assert out[0]["errors"] == 1.0 and out[1]["errors"] == 0.0
    assert out[0]["p50_ms"] == pytest.approx(10.0)


def test_window_summary_of_nothing_is_nan() -> None:
    w = window_summary([])
    assert w["n"] == 0.0 and math.isnan(w["p99_ms"])


def test_growth_compares_first_and_last_minute_and_fits_a_slope() -> None:
    series = [(float(t), 100.0 + t / 60.0) for t in range(0, 300, 5)]  # +1 MiB per minute
    g = growth(series)
    assert g["slope_mib_per_min"] == pytest.approx(1.0)
    assert g["growth_mib"] == pytest.approx(g["last_min_mib"] - g["first_min_mib"])
    assert 3.5 < g["growth_mib"] < 4.5
    assert math.isnan(slope_per_min([(0.0, 1.0)]))


@pytest.mark.parametrize(("cmd", "label"), [
    ("ray::Supervisor.ingest()", "Supervisor"),
    ("ray::Supervisor", "Supervisor"),
    ("ray::ServeReplica:soak:ingress", "ServeReplica:soak:ingress"),
    ("ray::ServeReplica:soak:ingress.handle_request_with_rejection", "ServeReplica:soak:ingress"),
    ("ray::ProxyActor", "ProxyActor"),
    ("/x/site-packages/ray/core/src/ray/raylet/raylet --raylet_socket_name=/tmp/r", "raylet"),
    ("/x/ray/core/src/ray/gcs/gcs_server --log_dir=/tmp", "gcs_server"),
    ("/usr/bin/python3 -m pytest", None),
])
def test_ray_processes_are_named_from_their_command_line(cmd: str, label: str | None) -> None:
    assert label_of(cmd) == label
