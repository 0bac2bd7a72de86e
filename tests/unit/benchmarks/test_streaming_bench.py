"""The streaming benchmark's pure parts: the fixed-rate generator, the direct baseline's
chunks (the gateway's shape), the client's SSE counting, and the run summaries. No Ray."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from benchmarks.streaming import (
    FixedRateTokens,
    SseEvents,
    StreamSample,
    compare,
    direct_chunk,
    goals,
    markdown,
    parse_args,
    rotated,
    sse_event,
    summarize,
    window_stats,
)
from gateway.serving.llm.generation import GenerationChunk
from gateway.serving.llm.openai_format import chat_chunk, sse


def test_generator_streams_the_tokens_at_its_rate() -> None:
    model = FixedRateTokens(rate=500.0, default_tokens=8)
    start = time.perf_counter()
    chunks = list(model.predict_stream(None, {"prompt": "x", "max_tokens": 5}))
    elapsed = time.perf_counter() - start
    assert [c["finish_reason"] for c in chunks] == [None] * 4 + ["length"]
    assert sum(c["tokens"] for c in chunks) == 5 and chunks[-1]["prompt_tokens"] == 1
    assert elapsed >= 5 / 500.0 - 1e-3


def test_generator_keeps_its_schedule_for_a_slow_reader() -> None:
    # Tokens fall due on the clock: a reader that lags finds them waiting, no extra wait.
    model = FixedRateTokens(rate=100.0)
    stream = model.predict_stream(None, {"max_tokens": 6})
    next(stream)
    time.sleep(0.08)  # 8 tokens' time: the other 5 are due by now
    start = time.perf_counter()
    rest = list(stream)
    # Paced token by token instead, they would take 50 ms more.
    assert len(rest) == 5 and time.perf_counter() - start < 0.03


def test_generator_predict_answers_at_once_and_zero_tokens_ends_the_stream() -> None:
    model = FixedRateTokens(rate=1.0, default_tokens=3)
    [row] = model.predict(None, [{"prompt": "Hello"}])
    assert row["completion_tokens"] == 3 and row["finish_reason"] == "length"
    assert [c["tokens"] for c in model.predict_stream(None, {"max_tokens": 0})] == [0]
    with pytest.raises(ValueError, match="rate"):
        FixedRateTokens(rate=0.0)


@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("finish", [None, "length"])
def test_direct_chunks_are_the_gateways_bytes(first: bool, finish: str | None) -> None:
    raw = {"text": " tok", "finish_reason": finish, "tokens": 1}
    ours = direct_chunk(raw, "bench", "rid", 123, first)
    theirs = chat_chunk(GenerationChunk(" tok", finish, 1), "bench", "rid", 123, first=first)
    assert ours == theirs
    assert sse_event(ours) == sse(theirs)


def test_sse_events_count_content_across_split_reads() -> None:
    events = SseEvents()
    stream = b"".join([b"data: {\"a\":1}\n\n", b": keep-alive\n\n", b"data: {\"a\":2}\n\n",
                       b"data: [DONE]\n\n"])
    counts = [events.feed(stream[i:i + 7]) for i in range(0, len(stream), 7)]
    assert sum(counts) == 2 and events.data == 2 and events.done


def test_window_stats_count_only_the_window_and_whole_streams() -> None:
    ok = StreamSample(0.0, [0.010, 0.015, 0.020, 1.5], ok=True)  # last event after the window
    broken = StreamSample(0.1, [0.2], ok=False)
    s = window_stats([ok, broken], start=0.0, deadline=1.0)
    assert s["streams"] == 2 and s["errors"] == 1
    assert s["chunks_in_window"] == 4 and s["chunks_per_s"] == pytest.approx(4.0)
    assert s["chunks_total"] == 5
    assert s["ttft_p50_ms"] == pytest.approx(10.0)  # the broken stream is no TTFT sample
    assert s["gap_p50_ms"] == pytest.approx(5.0)
    assert math.isnan(window_stats([], 0.0, 1.0)["ttft_p50_ms"])


def test_rotation_alternates_the_order() -> None:
    assert rotated(("direct", "gateway"), 0) == ["direct", "gateway"]
    assert rotated(("direct", "gateway"), 1) == ["gateway", "direct"]


def _run(cps: float, ttft: float, cpu: float) -> dict[str, Any]:
    return {"streams": 10.0, "errors": 0.0, "chunks_per_s": cps, "ttft_p50_ms": ttft,
            "ttft_p99_ms": 2 * ttft, "gap_p50_ms": 5.0, "gap_p99_ms": 6.0,
            "ttft_ms": [ttft] * 3, "loadavg_1m": 1.0,
            "cpu_ms_per_1k_chunks": {"proxy": cpu / 2, "client": 9.0, "server_total": cpu}}


def _report() -> dict[str, Any]:
    runs = {"direct": {"1": [_run(200, 6.0, 100), _run(200, 6.2, 100)],
                       "64": [_run(1000, 50.0, 400), _run(1100, 55.0, 400)]},
            "gateway": {"1": [_run(200, 6.5, 150), _run(199, 6.9, 150)],
                        "64": [_run(800, 70.0, 500), _run(880, 80.0, 500)]}}
    results = {m: {c: summarize(rs) for c, rs in by_c.items()} for m, by_c in runs.items()}
    return {"runs": runs, "results": results}


def test_compare_and_goals() -> None:
    r = _report()
    c = compare(r["results"], r["runs"])
    assert c["1"]["ttft_added_p50_ms"] == pytest.approx(0.6)
    assert c["64"]["throughput_ratio"] == pytest.approx(840 / 1050)
    assert c["64"]["throughput_ratio_paired"] == pytest.approx(0.8)
    assert c["64"]["cpu_per_chunk_direct_over_gateway"] == pytest.approx(0.8)
    g = goals(c)
    assert g == {"ttft_added_p50<=1ms@1": True, "throughput_ratio>=0.9@64": False}


def test_markdown_renders_a_report() -> None:
    r = _report()
    c = compare(r["results"], r["runs"])
    report = {"command": "python -m benchmarks.streaming --quick", "results": r["results"],
              "comparison": c, "goals": goals(c),
              "settings": {"tokens": 64, "rate": 200.0, "concurrency": [1, 64], "rounds": 2,
                           "duration_s": 3.0, "challenger_weight": 10.0, "quick": True},
              "machine": {"cpu": "x", "cores": 2, "ram_gib": 1.0, "python": "3.11",
                          "ray": "2", "date": "d", "loadavg_1m_at_start": 0.5,
                          "loadavg_1m_at_end": 1.5}}
    text = markdown(report)
    assert "| 64 | gateway |" in text and "throughput_ratio>=0.9@64: MISSED" in text
    assert "challenger held at 10%" in text


def test_quick_settings() -> None:
    s = parse_args(["--quick", "--concurrency", "1,4"])
    assert s.quick and s.concurrency == (1, 4) and s.rounds == 2 and s.duration_s == 3.0
    with pytest.raises(SystemExit):
        parse_args(["--concurrency", "0"])
