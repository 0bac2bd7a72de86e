"""The pure parts of the batching and scaling benchmarks: settings, ratios against the
goals, the RESULTS.md sections, the GPU stand-in. No Ray."""

from __future__ import annotations

import time
from typing import Any

import pytest

from benchmarks.batching import compare, goals, markdown, parse_args, section_of
from benchmarks.scaling import markdown as scaling_markdown
from benchmarks.scaling import parse_layout


def _mode(rps: float, p50: float, cpu: float) -> dict[str, Any]:
    return {"rps": rps, "p50_ms": p50, "p99_ms": 2 * p50, "errors": 0,
            "cpu_s_per_1k": {"total": cpu}}


RESULTS = {"unbatched": {"1": _mode(50, 20, 20), "64": _mode(40, 1600, 25)},
           "batched": {"1": _mode(48, 21, 20), "64": _mode(130, 490, 12)}}


def test_ratios_and_goals_at_the_largest_concurrency() -> None:
    c = compare(RESULTS, [1, 64])
    assert c["64"]["throughput_ratio"] == pytest.approx(130 / 40)
    assert c["64"]["p50_ratio"] == pytest.approx(490 / 1600)
    assert c["1"]["cpu_ratio"] == pytest.approx(1.0)
    assert goals(c, [1, 64]) == {"throughput_batched_over_unbatched>=3_at_64": True,
                                 "p50_no_worse_at_64": True}
    slower = {**RESULTS, "batched": {**RESULTS["batched"], "64": _mode(100, 1700, 12)}}
    assert not any(goals(compare(slower, [1, 64]), [1, 64]).values())


def test_section_and_markdown_say_which_regime() -> None:
    s = parse_args(["--quick", "--device-ms", "20", "--concurrency", "1", "64"])
    assert s.section == "batching_device" and s.concurrency == (1, 64)
    report = {"settings": {**s.__dict__, "concurrency": [1, 64]},
              "machine": {"cpu": "x", "cores": 2, "ram_gib": 1, "python": "3", "ray": "2",
                          "date": "d", "loadavg_1m_at_start": 0.5, "loadavg_1m_at_end": 0.7},
              "command": "cmd", "client": "wrk",
              "model": {"parameters": 4_755_472, "dims": [256, 2048, 2048, 16],
                        "alone": {"rows_per_s_at_1": 1000.0, "ms_per_call_at_1": 1.0,
                                  "rows_per_s_at_64": 10000.0, "ms_per_call_at_64": 6.4}},
              "results": RESULTS, "comparison": compare(RESULTS, [1, 64]),
              "batch_sizes": {"1": 3, "12": 24}, "goals": goals(compare(RESULTS, [1, 64]),
                                                                 [1, 64])}
    assert section_of(report) == "batching_device"
    text = markdown(report)
    assert "simulated device (20 ms a call)" in text
    assert "| 64 | batched | 130 |" in text and "| 64 | 3.25 |" in text
    assert "1: 3, 12: 24" in text and "10.0x faster per row" in text
    assert section_of({"settings": {"device_ms": 0}}) == "batching"


def test_the_gpu_stand_in_runs_the_model_and_holds_the_device() -> None:
    torch = pytest.importorskip("torch")
    from benchmarks.device_bound import DeviceBound

    net = DeviceBound(torch.nn.Linear(4, 2), device_ms=30)
    x = torch.ones(3, 4)
    start = time.perf_counter()
    out = net(x)
    assert time.perf_counter() - start >= 0.03
    assert torch.equal(out, net.inner(x))


def test_layouts() -> None:
    assert parse_layout("2x1") == (2, 1)
    for bad in ("2", "0x1", "axb"):
        with pytest.raises(SystemExit, match="--layouts"):
            parse_layout(bad)


def test_scaling_markdown_lists_every_layout_and_baseline() -> None:
    row = {"rps": 150.0, "p50_ms": 100.0, "p99_ms": 200.0, "cpu_s_per_1k": 9.5, "errors": 0}
    text = scaling_markdown({
        "settings": {"connections": 32, "rounds": 4, "duration_s": 6.0}, "client": "wrk",
        "command": "cmd", "machine": {"cpu": "x", "cores": 2, "ram_gib": 1, "python": "3",
                                      "ray": "2", "date": "d", "loadavg_1m_at_start": 0.5},
        "baselines": {"plain": row, "bare": row},
        "layouts": {"1x1": row, "2x2": {**row, "rps": 120.0}}})
    assert "| gateway | 2 | 2 | 120 |" in text and "| plain | - | 1 | 150 |" in text
    assert "| bare | 1 | 1 |" in text
