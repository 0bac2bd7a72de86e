"""The streaming benchmark's pure parts: the fixed-rate generator, the baselines' chunks
(the gateway's shape) and streams, the client's SSE counting, and the run summaries. No
Ray."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from benchmarks.streaming import (
    MODES,
    SSE_DONE,
    BareStreamIngress,
    BareStreamModel,
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


class _Loaded:
    """What `mlflow.pyfunc.load_model` answers: `predict_stream(data)`, no context."""

    def __init__(self, model: FixedRateTokens) -> None:
        self._model = model

    def predict_stream(self, data: Any) -> Any:
        return self._model.predict_stream(None, data)


def _bare_model(rate: float) -> BareStreamModel:
    model = BareStreamModel.__new__(BareStreamModel)  # no MLflow load
    model._model = _Loaded(FixedRateTokens(rate=rate))
    return model


async def _collect(chunks: AsyncIterator[Any]) -> list[Any]:
    return [c async for c in chunks]


def test_bare_model_streams_the_raw_chunks_one_item_each() -> None:
    chunks = asyncio.run(_collect(_bare_model(1000.0).stream(3)))
    assert [c["finish_reason"] for c in chunks] == [None, None, "length"]
    assert all(c["text"] == " tok" for c in chunks)


class _FakeStream:
    """A streaming DeploymentHandle's response: async-iterable, cancellable."""

    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self._chunks = iter(chunks)
        self.cancelled = False

    def __aiter__(self) -> _FakeStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        with contextlib.suppress(StopIteration):
            return next(self._chunks)
        raise StopAsyncIteration

    def cancel(self) -> None:
        self.cancelled = True


def test_bare_ingress_sends_one_event_per_chunk_as_the_gateway_does() -> None:
    raws = [{"text": " tok", "finish_reason": None, "tokens": 1},
            {"text": " tok", "finish_reason": "length", "tokens": 1}]
    stream = _FakeStream(raws)
    events = asyncio.run(_collect(BareStreamIngress._events(stream, "bench", "rid")))
    assert events[-1] == SSE_DONE and len(events) == 3 and not stream.cancelled
    created = int(time.time())
    expected = [sse(chat_chunk(GenerationChunk(r["text"], r["finish_reason"], 1), "bench",
                               "rid", created, first=i == 0)) for i, r in enumerate(raws)]
    assert events[:2] == expected  # (a second boundary between the two would fail: rare)


def test_bare_ingress_cancels_the_model_stream_when_the_client_leaves() -> None:
    stream = _FakeStream([{"text": " tok", "finish_reason": None}] * 5)

    async def first_then_leave() -> None:
        events = BareStreamIngress._events(stream, "bench", "rid")
        await events.__anext__()
        await events.aclose()

    asyncio.run(first_then_leave())
    assert stream.cancelled


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
    assert [rotated(MODES, i)[0] for i in range(4)] == ["direct", "bare", "gateway", "direct"]


def _run(cps: float, ttft: float, cpu: float) -> dict[str, Any]:
    return {"streams": 10.0, "errors": 0.0, "chunks_per_s": cps, "ttft_p50_ms": ttft,
            "ttft_p99_ms": 2 * ttft, "gap_p50_ms": 5.0, "gap_p99_ms": 6.0,
            "ttft_ms": [ttft] * 3, "loadavg_1m": 1.0,
            "cpu_ms_per_1k_chunks": {"proxy": cpu / 2, "client": 9.0, "server_total": cpu}}


def _report(modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    runs = {"direct": {"1": [_run(200, 6.0, 100), _run(200, 6.2, 100)],
                       "64": [_run(1000, 50.0, 400), _run(1100, 55.0, 400)]},
            "bare": {"1": [_run(200, 6.3, 120), _run(200, 6.5, 120)],
                     "64": [_run(900, 60.0, 450), _run(1000, 62.0, 450)]},
            "gateway": {"1": [_run(200, 6.5, 150), _run(199, 6.9, 150)],
                        "64": [_run(800, 70.0, 500), _run(880, 80.0, 500)]}}
    runs = {m: runs[m] for m in modes}
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


def test_compare_separates_the_hop_from_the_gateways_code() -> None:
    c = compare(*(lambda r: (r["results"], r["runs"]))(_report()))
    assert c["1"]["ttft_hop_p50_ms"] == pytest.approx(0.3)  # bare - direct
    assert c["1"]["ttft_added_over_bare_p50_ms"] == pytest.approx(0.3)  # gateway - bare
    assert c["1"]["ttft_added_over_bare_p99_ms"] == pytest.approx(0.6)
    assert c["64"]["throughput_ratio_gateway_over_bare"] == pytest.approx(840 / 950)
    assert c["64"]["throughput_ratio_bare_over_direct"] == pytest.approx(950 / 1050)
    assert c["64"]["throughput_ratio_gateway_over_bare_paired_min"] == pytest.approx(0.88)
    assert c["64"]["throughput_ratio_gateway_over_bare_paired_max"] == pytest.approx(0.889,
                                                                                  abs=1e-3)
    assert c["64"]["cpu_per_chunk_bare_over_gateway"] == pytest.approx(0.9)
    assert c["64"]["cpu_per_chunk_direct_over_bare"] == pytest.approx(400 / 450)


def test_compare_leaves_out_the_pairs_of_a_mode_not_measured() -> None:
    r = _report(("direct", "gateway"))  # a two-mode report, as before bare
    c = compare(r["results"], r["runs"])
    assert "throughput_ratio" in c["64"] and "ttft_hop_p50_ms" not in c["64"]
    r = _report(("direct", "bare"))
    c = compare(r["results"], r["runs"])
    assert set(c["1"]) and "throughput_ratio" not in c["1"]
    assert goals(c) == {"ttft_added_p50<=1ms@1": None, "throughput_ratio>=0.9@64": None}


def _md(modes: tuple[str, ...] = MODES) -> str:
    r = _report(modes)
    c = compare(r["results"], r["runs"])
    report = {"command": "python -m benchmarks.streaming --quick", "results": r["results"],
              "comparison": c, "goals": goals(c),
              "settings": {"tokens": 64, "rate": 200.0, "concurrency": [1, 64], "rounds": 2,
                           "duration_s": 3.0, "challenger_weight": 10.0, "quick": True},
              "machine": {"cpu": "x", "cores": 2, "ram_gib": 1.0, "python": "3.11",
                          "ray": "2", "date": "d", "loadavg_1m_at_start": 0.5,
                          "loadavg_1m_at_end": 1.5}}
    return markdown(report)


def test_markdown_renders_a_report() -> None:
    text = _md()
    assert "| 64 | gateway |" in text and "throughput_ratio>=0.9@64: MISSED" in text
    assert "| 64 | bare |" in text and "challenger held at 10%" in text
    # TTFT added over direct p50/p99, over bare p50/p99, the hop p50/p99
    assert "| 1 | 0.60 | 1.20 | 0.30 | 0.60 | 0.30 | 0.60 |" in text
    assert "| 64 | 0.800 | 0.800 (0.80-0.80) | 0.884 | 0.884 (0.88-0.89) | 0.905 |" in text
    assert "The extra Serve hop alone (bare - direct) adds 0.30 ms TTFT p50" in text


def test_markdown_renders_a_two_mode_report() -> None:
    text = _md(("direct", "gateway"))
    assert "| 64 | bare |" not in text and "Serve hop alone" not in text
    assert "| 1 | 0.60 | 1.20 | n/a | n/a | n/a | n/a |" in text


def test_quick_settings() -> None:
    s = parse_args(["--quick", "--concurrency", "1,4"])
    assert s.quick and s.concurrency == (1, 4) and s.rounds == 2 and s.duration_s == 3.0
    assert s.modes == ("direct", "bare", "gateway")
    assert parse_args(["--modes", "gateway,direct"]).modes == ("direct", "gateway")
    with pytest.raises(SystemExit):
        parse_args(["--concurrency", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--modes", "direct,proxy"])
