"""What the gateway costs a streamed LLM answer: one token generator served three ways.

    python -m benchmarks.streaming [--quick] [--rounds K] [--duration S] [--tokens N]
                                   [--rate TOKENS_PER_S] [--concurrency 1,16,64]
                                   [--modes direct,bare,gateway]
                                   [--challenger-weight W] [--verbose]
    python -m benchmarks.streaming --render [benchmarks/results/streaming.json]

The generator, `FixedRateTokens`, is an MLflow text-generation pyfunc (MLmodel metadata
`gateway_task: text-generation`) whose `predict_stream` yields `--tokens` tokens at `--rate`
tokens a second. It is paced by the clock (token k is due at start + k / rate; it sleeps),
so it costs next to no CPU and what is measured is the serving path. On one private local
Ray instance (RAY_SERVE_THROUGHPUT_OPTIMIZED=1), side by side behind Serve's HTTP proxy:

1. direct (/direct): a plain Ray Serve deployment (`DirectStream`) that loads the same
   registered model version and streams it as OpenAI `chat.completion.chunk` server-sent
   events (a StreamingResponse), pulling the generator from one thread per stream as the
   gateway's slot does - the floor;
2. bare (/bare): the gateway's composition written by hand, as `benchmarks.overhead`'s bare
   mode is for /v1/predict: a minimal ingress (`BareStreamIngress`: parse, call, format)
   streaming from a model deployment (`BareStreamModel`, the same pull) through a
   streaming DeploymentHandle, one Ray item per chunk and one SSE event per chunk. Bare
   minus direct is what the extra Serve hop costs; gateway minus bare, the gateway's code;
3. gateway (/): `gateway.app.build_app` with the default triggers, that version as champion
   and (unless `--challenger-weight 0`) a second registration of the same generator as
   challenger held at that weight (10% by default), answering `/v1/chat/completions` with
   `"stream": true`.

The client (httpx, asyncio, loopback) keeps 1, 16 and 64 streams open in a closed loop
(each connection first opens one stream that is not measured) for `--duration` seconds per
mode and concurrency, in `--rounds` rounds with the modes' order rotated each round (the
machine's drift falls on all alike; `--modes` measures a subset). Per run: time to first
token as the client sees it (request sent to first content event), content events received
inside the window per second, the gaps between a stream's events, failed streams, and the
CPU time each serving process (and the client) spent per 1,000 events. Medians over the
rounds; TTFT added and chunk throughput ratios of gateway vs direct (the goals), gateway vs
bare and bare vs direct. Prints JSON, writes benchmarks/results/streaming.json and the
`streaming` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import itertools
import json
import math
import os
import sys
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlflow.pyfunc import PythonModel
from starlette.requests import Request
from starlette.responses import StreamingResponse

from benchmarks.common import (
    RESULTS_DIR,
    admin_status,
    cpu_seconds,
    find_pids,
    gateway_config,
    local_serve,
    machine_info,
    machine_line,
    median,
    percentile,
    prepare_env,
    ratio,
    rounded,
    temp_registry,
    wait_for,
    write_json,
    write_section,
)

if TYPE_CHECKING:  # ray is imported only after prepare_env() set its environment
    from ray.serve.deployment import Deployment

MODES = ("direct", "bare", "gateway")
CHAT_PATH = "/v1/chat/completions"
TOKEN_TEXT = " tok"  # every token the same 4 characters: chunks of one size in both modes
SSE_DONE = b"data: [DONE]\n\n"
# As the gateway's HTTP-facing deployment: 256 ongoing requests, 0.25 CPU, 5 s to shut down.
DIRECT_OPTS: dict[str, Any] = {"max_ongoing_requests": 256, "graceful_shutdown_timeout_s": 5,
                               "ray_actor_options": {"num_cpus": 0.25}}
# The bare model deployment as the gateway's slots: 64 ongoing requests, 0.25 CPU.
BARE_MODEL_OPTS: dict[str, Any] = {"max_ongoing_requests": 64, "graceful_shutdown_timeout_s": 5,
                                   "ray_actor_options": {"num_cpus": 0.25}}
GOAL_TTFT_ADDED_P50_MS = 1.0
GOAL_THROUGHPUT_RATIO = 0.9


# --- the token generator (an MLflow pyfunc text-generation model) -------------------------


class FixedRateTokens(PythonModel):
    """Streams `max_tokens` tokens (default `default_tokens`) at `rate` tokens a second.

    Token k is due at start + k / rate: a reader that falls behind finds the tokens already
    waiting (as from a real engine, which decodes whatever the reader does), so the rate
    never drifts with the serving path's speed. `predict` answers at once (the gateway's
    health check calls it)."""

    def __init__(self, rate: float = 200.0, default_tokens: int = 64) -> None:
        if rate <= 0:
            raise ValueError(f"rate: expected > 0 tokens/s, got {rate}")
        self.rate = float(rate)
        self.default_tokens = int(default_tokens)

    # No type hints on predict/predict_stream: MLflow would read them as an input schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        out = []
        for rec in _records(model_input):
            n = self._tokens(rec)
            out.append({"text": TOKEN_TEXT * n, "finish_reason": "length",
                        "prompt_tokens": 1, "completion_tokens": n})
        return out

    def predict_stream(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        rows = _records(model_input)
        if len(rows) != 1:
            raise ValueError(f"predict_stream takes one record, got {len(rows)}")
        n = self._tokens(rows[0])
        if n == 0:
            yield {"text": "", "finish_reason": "length", "tokens": 0, "prompt_tokens": 1}
            return
        start = time.perf_counter()
        for k in range(1, n + 1):
            wait = start + k / self.rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            chunk: dict[str, Any] = {"text": TOKEN_TEXT, "tokens": 1,
                                     "finish_reason": "length" if k == n else None}
            if k == n:
                chunk["prompt_tokens"] = 1
            yield chunk

    def _tokens(self, rec: dict[str, Any]) -> int:
        value = rec.get("max_tokens")
        return self.default_tokens if value is None else max(0, int(value))


def _records(model_input: Any) -> list[dict[str, Any]]:
    """A DataFrame, a list of records or one record (what MLflow passes without a
    signature) -> a list of plain dicts."""
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):
        return [dict(r) for r in model_input.to_dict(orient="records")]
    if isinstance(model_input, dict):
        return [model_input]
    if isinstance(model_input, list):
        return [dict(r) for r in model_input]
    raise TypeError(f"expected records, got {type(model_input).__name__}")


def register_generator(registry: Any, model: FixedRateTokens, description: str) -> Any:
    """Log `model` as a text-generation pyfunc (no signature: the gateway's health check then
    makes a short generation, and `predict_stream` gets the record as sent) and register it
    as a new version of the registry's model."""
    import mlflow
    import mlflow.pyfunc

    from gateway.serving.llm.pyfunc_textgen import TASK_KEY, TEXT_GENERATION
    from model_registry.experiments import ensure_experiment, use_tracking_uri

    experiment_id = ensure_experiment(registry.tracking_uri, registry.model_name)
    with use_tracking_uri(registry.tracking_uri), \
            mlflow.start_run(experiment_id=experiment_id, run_name=description) as run:
        mlflow.log_params({"description": description, "rate": model.rate})
        # Explicit requirements: inferring them would spawn a subprocess and take seconds.
        mlflow.pyfunc.log_model(name="model", python_model=model,
                                pip_requirements=[f"mlflow=={mlflow.__version__}"],
                                metadata={TASK_KEY: TEXT_GENERATION})
    return registry.register(f"runs:/{run.info.run_id}/model",
                             tags={"description": description, TASK_KEY: TEXT_GENERATION})


# --- the direct baseline: a plain Serve deployment streaming the same model -------------


def direct_chunk(raw: dict[str, Any], model: str, request_id: str, created: int,
                 first: bool) -> dict[str, Any]:
    """An OpenAI `chat.completion.chunk` of one generated chunk, the shape the gateway sends
    (the first carries `delta.role`)."""
    text = str(raw.get("text", ""))
    delta: dict[str, Any] = {"role": "assistant"} if first else {}
    if text or first:
        delta["content"] = text
    return {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk",
            "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": raw.get("finish_reason")}]}


def sse_event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def load_pyfunc(tracking_uri: str, model_uri: str) -> Any:
    import mlflow
    import mlflow.pyfunc

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(model_uri)


async def pulled(model: Any, max_tokens: int,
                 thread: str) -> AsyncGenerator[dict[str, Any], None]:
    """The pyfunc's `predict_stream` chunks for `max_tokens`, pulled from one thread per
    stream, as the gateway's slot pulls a pyfunc stream (a shared pool of fewer threads than
    streams would cap the baselines, not measure them). Use under `contextlib.aclosing`."""
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread)
    record = {"prompt": "", "max_tokens": max_tokens}
    try:
        chunks = await loop.run_in_executor(worker, model.predict_stream, record)
        while (raw := await loop.run_in_executor(worker, next, chunks, None)) is not None:
            yield raw
    finally:
        worker.shutdown(wait=False)


async def sse_stream(chunks: AsyncIterator[dict[str, Any]], model: str,
                     rid: str) -> AsyncIterator[bytes]:
    """One SSE event per chunk (the gateway's chat chunks), then `[DONE]`."""
    created, first = int(time.time()), True
    async for raw in chunks:
        yield sse_event(direct_chunk(raw, model, rid, created, first))
        first = False
    yield SSE_DONE


def stream_request(body: dict[str, Any], request: Request,
                   default_model: str) -> tuple[int, str, str]:
    """A chat request's `max_tokens`, model name and request id."""
    rid = request.headers.get("x-request-id") or uuid.uuid4().hex
    return int(body.get("max_tokens", 16)), str(body.get("model") or default_model), rid


def sse_response(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})


class DirectStream:
    """The model alone, streamed by hand: load the MLflow pyfunc, answer any POST with the
    SSE stream of its `predict_stream` for the body's `max_tokens`."""

    def __init__(self, tracking_uri: str, model_uri: str) -> None:
        self._model = load_pyfunc(tracking_uri, model_uri)

    async def __call__(self, request: Request) -> StreamingResponse:
        tokens, model, rid = stream_request(json.loads(await request.body()), request,
                                            "direct")
        return sse_response(self._events(tokens, model, rid))

    async def _events(self, tokens: int, model: str, rid: str) -> AsyncIterator[bytes]:
        async with contextlib.aclosing(pulled(self._model, tokens, "direct-stream")) as raw:
            async for event in sse_stream(raw, model, rid):
                yield event


class BareStreamModel:
    """The bare composition's model deployment: the same pyfunc and pull as `DirectStream`,
    its raw chunks streamed to the caller (through a streaming DeploymentHandle: one Ray
    item per chunk)."""

    def __init__(self, tracking_uri: str, model_uri: str) -> None:
        self._model = load_pyfunc(tracking_uri, model_uri)

    async def stream(self, max_tokens: int) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.aclosing(pulled(self._model, max_tokens, "bare-stream")) as raw:
            async for chunk in raw:
                yield chunk


class BareStreamIngress:
    """The bare composition's minimal ingress: parse, open the model deployment's stream,
    answer each chunk as one SSE event (the per-chunk work the gateway's ingress does)."""

    def __init__(self, model: Any) -> None:
        self._model = model.options(method_name="stream", stream=True)

    async def __call__(self, request: Request) -> StreamingResponse:
        tokens, model, rid = stream_request(json.loads(await request.body()), request, "bare")
        return sse_response(self._events(self._model.remote(tokens), model, rid))

    @staticmethod
    async def _events(stream: Any, model: str, rid: str) -> AsyncIterator[bytes]:
        done = False
        try:
            async for event in sse_stream(stream, model, rid):
                yield event
            done = True
        finally:
            if not done:  # the client went away: stop the model's stream too
                stream.cancel()


# --- the client: SSE streams in a closed loop ----------------------------------------------


class SseEvents:
    """Counts the server-sent events of a byte stream read in arbitrary pieces: `data:`
    events other than `[DONE]` (content chunks), and whether `[DONE]` came."""

    def __init__(self) -> None:
        self._buf = b""
        self.data = 0
        self.done = False

    def feed(self, piece: bytes) -> int:
        """The number of content events that `piece` completes."""
        self._buf += piece
        *events, self._buf = self._buf.split(b"\n\n")
        n = 0
        for event in events:
            if not event.startswith(b"data:"):
                continue  # a comment or keep-alive
            if event[5:].strip() == b"[DONE]":
                self.done = True
            else:
                n += 1
        self.data += n
        return n


@dataclass
class StreamSample:
    """One stream as the client saw it: when it was sent, when each content event arrived
    (events read together share an instant), and whether it was whole (200, every token,
    `[DONE]`)."""

    sent: float
    arrivals: list[float] = field(default_factory=list)
    ok: bool = False


def chat_body(tokens: int) -> bytes:
    return json.dumps({"model": "bench", "max_tokens": tokens, "stream": True,
                       "messages": [{"role": "user", "content": "Hello"}]}).encode()


async def one_stream(client: Any, url: str, body: bytes, tokens: int) -> StreamSample:
    import httpx

    sample = StreamSample(time.perf_counter())
    events = SseEvents()
    status = 0
    try:
        async with client.stream("POST", url, content=body,
                                 headers={"content-type": "application/json"}) as resp:
            status = resp.status_code
            async for piece in resp.aiter_raw():
                now = time.perf_counter()
                sample.arrivals.extend([now] * events.feed(piece))
    except httpx.HTTPError:
        status = 0
    sample.ok = status == 200 and events.done and events.data == max(tokens, 1)
    return sample


@dataclass
class RunData:
    """A closed-loop run's streams and window, and the CPU counters' readings."""

    samples: list[StreamSample]
    start: float
    deadline: float
    warmup_errors: int
    cpu_s: dict[str, float]


async def closed_loop(url: str, tokens: int, concurrency: int, duration_s: float,
                      limit_s: float, cpu: Callable[[], dict[str, float]]) -> RunData:
    """`concurrency` workers each opening one stream after another until the window of
    `duration_s` closes (each worker's first, warm-up stream is not measured; streams open
    at the close are read to their end, their later events not counted in the window).
    Bounded by `limit_s` beyond the window. `cpu` reads the CPU counters (after warm-up
    and at the end)."""
    import httpx

    body = chat_body(tokens)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits,
                                 trust_env=False) as client:
        warm = await asyncio.wait_for(asyncio.gather(
            *(one_stream(client, url, body, tokens) for _ in range(concurrency))), limit_s)
        before = cpu()
        samples: list[StreamSample] = []
        start = time.perf_counter()
        deadline = start + duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                samples.append(await one_stream(client, url, body, tokens))

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))),
                               duration_s + limit_s)
        after = cpu()
    used = {k: after[k] - before[k] for k in before if k in after}
    return RunData(samples, start, deadline, sum(1 for s in warm if not s.ok), used)


def window_stats(samples: Sequence[StreamSample], start: float,
                 deadline: float) -> dict[str, float]:
    """Figures of one run: TTFT and inter-event gaps (ms) of the whole streams, content
    events received inside [start, deadline] per second, failed streams."""
    ok = [s for s in samples if s.ok]
    ttft = [(s.arrivals[0] - s.sent) * 1e3 for s in ok if s.arrivals]
    gaps = [(b - a) * 1e3 for s in ok for a, b in itertools.pairwise(s.arrivals)]
    in_window = sum(1 for s in samples for t in s.arrivals if start <= t <= deadline)
    return {"streams": float(len(samples)), "errors": float(len(samples) - len(ok)),
            "chunks_in_window": float(in_window),
            "chunks_total": float(sum(len(s.arrivals) for s in samples)),
            "chunks_per_s": ratio(in_window, deadline - start),
            "ttft_p50_ms": percentile(ttft, 50), "ttft_p99_ms": percentile(ttft, 99),
            "gap_p50_ms": percentile(gaps, 50), "gap_p99_ms": percentile(gaps, 99)}


def run_result(data: RunData) -> dict[str, Any]:
    """`window_stats` plus the CPU ms each process spent per 1,000 content events."""
    stats: dict[str, Any] = window_stats(data.samples, data.start, data.deadline)
    stats["errors"] += data.warmup_errors
    per = 1000.0 / max(stats["chunks_total"], 1.0)
    cpu = {name: used * 1e3 * per for name, used in data.cpu_s.items()}
    cpu["server_total"] = sum(v for k, v in cpu.items() if k != "client")
    stats["cpu_ms_per_1k_chunks"] = cpu
    stats["ttft_ms"] = [(s.arrivals[0] - s.sent) * 1e3 for s in data.samples
                        if s.ok and s.arrivals]
    return stats


# --- rounds, summaries, comparison (pure) ----------------------------------------------------


def rotated(modes: Sequence[str], i: int) -> list[str]:
    k = i % len(modes)
    return [*modes[k:], *modes[:k]]


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over one mode's rounds at one concurrency (TTFT also pooled over them)."""
    pooled = [v for r in runs for v in r["ttft_ms"]]
    cpu_keys = [k for k in runs[0]["cpu_ms_per_1k_chunks"]
                if all(k in r["cpu_ms_per_1k_chunks"] for r in runs)]
    return {
        "rounds": len(runs), "streams": sum(r["streams"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "chunks_per_s": median([r["chunks_per_s"] for r in runs]),
        "ttft_p50_ms": median([r["ttft_p50_ms"] for r in runs]),
        "ttft_p99_ms": median([r["ttft_p99_ms"] for r in runs]),
        "ttft_pooled_p50_ms": percentile(pooled, 50),
        "ttft_pooled_p99_ms": percentile(pooled, 99),
        "gap_p50_ms": median([r["gap_p50_ms"] for r in runs]),
        "gap_p99_ms": median([r["gap_p99_ms"] for r in runs]),
        "cpu_ms_per_1k_chunks": {k: median([r["cpu_ms_per_1k_chunks"][k] for r in runs])
                                 for k in cpu_keys},
        "loadavg_1m": [r["loadavg_1m"] for r in runs],
    }


# (mode, baseline, TTFT key, throughput key, CPU key) of each comparison; gateway vs direct
# keeps the names of the two-mode reports (the goals are judged on them).
PAIRS: tuple[tuple[str, str, str, str, str], ...] = (
    ("gateway", "direct", "ttft_added", "throughput_ratio",
     "cpu_per_chunk_direct_over_gateway"),
    ("gateway", "bare", "ttft_added_over_bare", "throughput_ratio_gateway_over_bare",
     "cpu_per_chunk_bare_over_gateway"),
    ("bare", "direct", "ttft_hop", "throughput_ratio_bare_over_direct",
     "cpu_per_chunk_direct_over_bare"),
)


def compare(results: dict[str, dict[str, Any]],
            runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, float]]:
    """Per concurrency, for gateway vs direct, gateway vs bare and bare vs direct (the Serve
    hop): TTFT added (p50, p99; medians of rounds and pooled), the chunk throughput ratio
    (of the medians, and the median and range of the per-round ratios: each round measures
    all modes back to back) and the CPU per chunk ratio baseline / mode (the capacity ratio
    on a CPU-bound machine). A pair with a mode not measured is left out."""
    concurrencies = next(iter(results.values()), {})
    out: dict[str, dict[str, float]] = {c: {} for c in concurrencies}
    for mode, base, ttft, tput, cpu in PAIRS:
        if mode not in results or base not in results:
            continue
        for c in concurrencies:
            out[c].update(pair_figures(results[mode][c], results[base][c], runs[mode][c],
                                       runs[base][c], ttft, tput, cpu))
    return out


def pair_figures(m: dict[str, Any], b: dict[str, Any], m_runs: Sequence[dict[str, Any]],
                 b_runs: Sequence[dict[str, Any]], ttft: str, tput: str,
                 cpu: str) -> dict[str, float]:
    """Mode `m` against baseline `b` at one concurrency (summaries and per-round runs)."""
    paired = [ratio(x["chunks_per_s"], y["chunks_per_s"])
              for x, y in zip(m_runs, b_runs, strict=True)]
    return {
        f"{ttft}_p50_ms": m["ttft_p50_ms"] - b["ttft_p50_ms"],
        f"{ttft}_p99_ms": m["ttft_p99_ms"] - b["ttft_p99_ms"],
        f"{ttft}_pooled_p50_ms": m["ttft_pooled_p50_ms"] - b["ttft_pooled_p50_ms"],
        f"{ttft}_pooled_p99_ms": m["ttft_pooled_p99_ms"] - b["ttft_pooled_p99_ms"],
        tput: ratio(m["chunks_per_s"], b["chunks_per_s"]),
        f"{tput}_paired": median(paired),
        f"{tput}_paired_min": min(paired, default=math.nan),
        f"{tput}_paired_max": max(paired, default=math.nan),
        cpu: ratio(b["cpu_ms_per_1k_chunks"].get("server_total", math.nan),
                   m["cpu_ms_per_1k_chunks"].get("server_total", math.nan)),
    }


def goals(comparison: dict[str, dict[str, float]]) -> dict[str, bool | None]:
    """TTFT added judged at the lowest concurrency (no queueing: the gateway's own latency),
    throughput at 64 streams (else the highest measured)."""
    if not comparison:
        return {}
    keys = sorted(comparison, key=int)
    low, high = keys[0], "64" if "64" in comparison else keys[-1]

    def check(value: float, ok: Callable[[float], bool]) -> bool | None:
        return None if value != value else ok(value)  # NaN: not measured

    return {
        f"ttft_added_p50<={GOAL_TTFT_ADDED_P50_MS:g}ms@{low}": check(
            comparison[low].get("ttft_added_p50_ms", math.nan),
            lambda v: v <= GOAL_TTFT_ADDED_P50_MS),
        f"throughput_ratio>={GOAL_THROUGHPUT_RATIO:g}@{high}": check(
            comparison[high].get("throughput_ratio", math.nan),
            lambda v: v >= GOAL_THROUGHPUT_RATIO),
    }


# --- RESULTS.md ---------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    s, r, c = report["settings"], report["results"], report["comparison"]
    modes = [mode for mode in MODES if mode in r]
    concs = list(next(iter(r.values())))
    weight = s["challenger_weight"]
    arm = (f"champion plus a copy of the generator as challenger held at {weight:g}%"
           if weight > 0 else "champion only")
    lines = [
        "## Streaming: gateway vs bare Serve composition vs direct Ray Serve streaming", "",
        machine_line(report["machine"]), "",
        f"Command: `{report['command']}`. One generator (`FixedRateTokens`, an MLflow "
        f"text-generation pyfunc: {s['tokens']} tokens a stream at {s['rate']:g} tokens/s, "
        "sleep-paced) served by a plain Serve deployment streaming SSE (direct), by a "
        "minimal ingress streaming it from a model deployment through a streaming "
        "DeploymentHandle, one Ray item and one SSE event per chunk (bare: the gateway's "
        f"composition by hand), and by the gateway ({arm}, default triggers, `{CHAT_PATH}`, "
        f"`stream: true`), side by side (measured: {', '.join(modes)}). "
        f"Closed loop at {', '.join(str(x) for x in s['concurrency'])} concurrent streams, "
        f"{s['rounds']} rounds of {s['duration_s']:g} s per mode and concurrency, order "
        "rotated each round; medians over rounds. TTFT: request sent to first content "
        "event, client side. All through Serve's HTTP proxy, RAY_SERVE_THROUGHPUT_OPTIMIZED=1, "
        "replicas at 0.25 CPU; client (httpx, asyncio) and server share the machine's cores.",
        "", "| streams | mode | TTFT p50 ms | TTFT p99 ms | chunks/s (offered) | gap p50 ms "
        "| gap p99 ms | streams done | errors | server CPU ms / 1k chunks | client |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for conc in concs:
        offered = int(conc) * s["rate"]
        for mode in modes:
            m = r[mode][conc]
            cpu = m["cpu_ms_per_1k_chunks"]
            lines.append(
                f"| {conc} | {mode} | {_num(m['ttft_p50_ms'], 2)} | {_num(m['ttft_p99_ms'], 2)} "
                f"| {_num(m['chunks_per_s'], 0)} ({offered:.0f}) | {_num(m['gap_p50_ms'], 2)} "
                f"| {_num(m['gap_p99_ms'], 2)} | {m['streams']:.0f} | {m['errors']:.0f} "
                f"| {_num(cpu.get('server_total'), 0)} | {_num(cpu.get('client'), 0)} |")
    lines += comparison_tables(c)
    top = concs[-1]
    lines += ["", "CPU ms per 1,000 content chunks by process (median of rounds, at the "
              "highest concurrency; user+system, includes background threads):"]
    for mode in modes:
        cpu = r[mode][top]["cpu_ms_per_1k_chunks"]
        lines.append(f"- {mode}: " + ", ".join(f"{k} {_num(v, 0)}" for k, v in cpu.items()))
    lines += bounds_text(r, top) + hop_text(r, c, concs[0], top)
    loads = [v for mode in modes for m in r[mode].values() for v in m["loadavg_1m"]]
    m = report["machine"]
    lines += ["", f"Machine load (1-min load average, {m['cores']} cores): "
              f"{_num(m['loadavg_1m_at_start'], 2)} at start (other work), "
              f"{_num(min(loads, default=None), 2)}-{_num(max(loads, default=None), 2)} "
              f"after each run (this benchmark's client and server included), "
              f"{_num(m.get('loadavg_1m_at_end'), 2)} at end."]
    lines += ["", "Goals (gateway vs direct: TTFT added p50 <= 1 ms, judged unloaded at the "
              "lowest concurrency; chunk throughput >= 0.9x direct at 64 streams): "
              + ", ".join(f"{k}: {'met' if v else 'MISSED' if v is False else 'n/a'}"
                          for k, v in report["goals"].items()) + "."]
    if s["quick"]:
        lines += ["", "_--quick run: short and noisy; re-run without --quick for the record._"]
    return "\n".join(lines)


def comparison_tables(c: dict[str, dict[str, float]]) -> list[str]:
    """TTFT added and chunk throughput ratios per concurrency, n/a where a mode is missing."""
    lines = ["", "| streams | TTFT added over direct p50 ms | p99 ms | TTFT added over bare "
             "p50 ms | p99 ms | Serve hop (bare - direct) p50 ms | p99 ms |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for conc, x in c.items():
        lines.append(f"| {conc} | " + " | ".join(_num(x.get(k), 2) for k in (
            "ttft_added_p50_ms", "ttft_added_p99_ms", "ttft_added_over_bare_p50_ms",
            "ttft_added_over_bare_p99_ms", "ttft_hop_p50_ms", "ttft_hop_p99_ms")) + " |")
    lines += ["", "| streams | chunk throughput gateway / direct | per-round, median (range) "
              "| gateway / bare | per-round, median (range) | bare / direct "
              "| CPU per chunk direct / gateway | bare / gateway |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for conc, x in c.items():
        lines.append(
            f"| {conc} | {_num(x.get('throughput_ratio'), 3)} "
            f"| {_paired(x, 'throughput_ratio')} "
            f"| {_num(x.get('throughput_ratio_gateway_over_bare'), 3)} "
            f"| {_paired(x, 'throughput_ratio_gateway_over_bare')} "
            f"| {_num(x.get('throughput_ratio_bare_over_direct'), 3)} "
            f"| {_num(x.get('cpu_per_chunk_direct_over_gateway'), 3)} "
            f"| {_num(x.get('cpu_per_chunk_bare_over_gateway'), 3)} |")
    return lines


def _paired(x: dict[str, float], key: str) -> str:
    return (f"{_num(x.get(key + '_paired'), 3)} ({_num(x.get(key + '_paired_min'), 2)}-"
            f"{_num(x.get(key + '_paired_max'), 2)})")


def bounds_text(r: dict[str, Any], conc: str) -> list[str]:
    """Where the gateway's extra CPU per chunk goes, from this run's figures."""
    if "gateway" not in r or "direct" not in r:
        return []
    gw, d = r["gateway"][conc]["cpu_ms_per_1k_chunks"], r["direct"][conc]["cpu_ms_per_1k_chunks"]
    extra = gw.get("server_total", math.nan) - d.get("server_total", math.nan)
    others = sum(v for k, v in gw.items() if k in ("slot_b", "supervisor"))
    return ["", f"At {conc} streams the gateway spends {_num(extra, 0)} ms more server CPU per "
            f"1,000 chunks than direct: its ingress {_num(gw.get('ingress'), 0)}, the proxy "
            f"{_num(gw.get('proxy', math.nan) - d.get('proxy', math.nan), 0)} more, the "
            f"champion slot {_num(gw.get('slot_a'), 0)} against the direct replica's "
            f"{_num(d.get('direct'), 0)}, challenger slot and supervisor {_num(others, 0)}. "
            "Per chunk the gateway adds a Ray streaming hop (slot to ingress: one object per "
            "chunk) and the ingress's own ASGI message to the proxy."]


def hop_text(r: dict[str, Any], c: dict[str, dict[str, float]], low: str,
             top: str) -> list[str]:
    """One sentence: what the extra Serve hop costs (bare - direct), and what is left to the
    gateway's own code (gateway - bare)."""
    if not {"direct", "bare", "gateway"} <= r.keys():
        return []
    cpu = {mode: r[mode][top]["cpu_ms_per_1k_chunks"].get("server_total", math.nan)
           for mode in ("direct", "bare", "gateway")}
    return ["", f"The extra Serve hop alone (bare - direct) adds "
            f"{_num(c[low].get('ttft_hop_p50_ms'), 2)} ms TTFT p50 at {low} stream(s) and, "
            f"at {top} streams, {_num(cpu['bare'] - cpu['direct'], 0)} ms server CPU per "
            f"1,000 chunks for {_num(c[top].get('throughput_ratio_bare_over_direct'), 3)}x "
            f"direct's chunk throughput; the gateway's own code then adds "
            f"{_num(c[low].get('ttft_added_over_bare_p50_ms'), 2)} ms TTFT p50 over bare and "
            f"{_num(cpu['gateway'] - cpu['bare'], 0)} ms CPU per 1,000 chunks, at "
            f"{_num(c[top].get('throughput_ratio_gateway_over_bare'), 3)}x bare's throughput."]


def _num(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None or v != v else f"{v:.{digits}f}"


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    tokens: int  # per stream
    rate: float  # tokens/s of the generator
    concurrency: tuple[int, ...]
    duration_s: float  # measured window per mode, concurrency and round
    rounds: int
    challenger_weight: float  # 0: champion only
    limit_s: float  # bound on warm-up and on draining the streams open at a window's close
    verbose: bool
    quick: bool
    modes: tuple[str, ...] = MODES  # measured, in MODES' order


def parse_args(argv: Sequence[str] | None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m benchmarks.streaming", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short smoke run (noisier numbers)")
    p.add_argument("--tokens", type=int, default=64, help="tokens per stream")
    p.add_argument("--rate", type=float, default=200.0, help="generator tokens per second")
    p.add_argument("--concurrency", default="1,16,64", help="concurrent streams, comma list")
    p.add_argument("--modes", default=",".join(MODES),
                   help=f"modes to measure, comma list of {', '.join(MODES)}")
    p.add_argument("--duration", type=float, help="seconds per mode, concurrency and round")
    p.add_argument("--rounds", type=int, help="rounds, each mode once per concurrency")
    p.add_argument("--challenger-weight", type=float, default=10.0,
                   help="challenger %% held by the gateway (0: champion only)")
    p.add_argument("--verbose", action="store_true", help="show the replicas' logs")
    a = p.parse_args(argv)
    conc = tuple(int(x) for x in str(a.concurrency).split(",") if x.strip())
    if not conc or min(conc) < 1 or a.tokens < 1 or a.rate <= 0:
        p.error("--concurrency, --tokens and --rate must be positive")
    asked = {x.strip() for x in str(a.modes).split(",") if x.strip()}
    if not asked or asked - set(MODES):
        p.error(f"--modes: a comma list of {', '.join(MODES)}")
    q = a.quick
    return Settings(tokens=a.tokens, rate=a.rate, concurrency=conc,
                    duration_s=a.duration or (3.0 if q else 10.0),
                    rounds=a.rounds or (2 if q else 5), challenger_weight=a.challenger_weight,
                    limit_s=60.0, verbose=a.verbose, quick=q,
                    modes=tuple(m for m in MODES if m in asked))


# --- deploying and measuring (a private Ray instance) ------------------------------------


def _own(name: str) -> Any:
    """`name` from this module imported by its name: run as `python -m`, its classes would
    belong to `__main__`, which Ray and cloudpickle cannot pickle by reference (replicas
    import `benchmarks.*` by path, see prepare_env)."""
    return getattr(importlib.import_module("benchmarks.streaming"), name)


def deploy_direct(registry: Any, ref: Any) -> str:
    from ray import serve

    dep = cast("Deployment", serve.deployment(_own("DirectStream"))).options(
        name="direct", **DIRECT_OPTS)
    serve.run(dep.bind(registry.tracking_uri, ref.uri), name="bench-stream-direct",
              route_prefix="/direct")
    return "bench-stream-direct"


def deploy_bare(registry: Any, ref: Any) -> str:
    from ray import serve

    model = cast("Deployment", serve.deployment(_own("BareStreamModel"))).options(
        name="model", **BARE_MODEL_OPTS)
    ingress = cast("Deployment", serve.deployment(_own("BareStreamIngress"))).options(
        name="ingress", **DIRECT_OPTS)
    serve.run(ingress.bind(model.bind(registry.tracking_uri, ref.uri)),
              name="bench-stream-bare", route_prefix="/bare")
    return "bench-stream-bare"


def deploy_gateway(url: str, registry: Any, refs: dict[str, Any], token: str,
                   weight: float) -> Any:
    from ray import serve

    from gateway.app import build_app
    from model_registry.refs import CHALLENGER, CHAMPION

    cfg = gateway_config(registry, "bench-stream-gateway", weight=weight or 10.0)
    registry.set_alias(CHAMPION, refs["champion"].version)
    with contextlib.suppress(Exception):
        registry.delete_alias(CHALLENGER)
    serve.run(build_app(cfg, registry.tracking_uri), name=cfg.app_name, route_prefix="/")
    if weight > 0:
        registry.set_alias(CHALLENGER, refs["challenger"].version)
        wait_for(lambda: admin_status(url, token)["phase"] == "canary", 180,
                 "the gateway's rollout to reach canary")
    return cfg


def processes(app: str, extra: Sequence[tuple[str, str]] = ()) -> dict[str, int]:
    """Serve's proxy, each replica of `app` (by deployment) and `extra` (name, title)."""
    procs: dict[str, int] = {}
    for name, title in (("proxy", "ray::ProxyActor"), *extra):
        for i, pid in enumerate(find_pids(title)):
            procs[name + (str(i) if i else "")] = pid
    prefix = f"ray::ServeReplica:{app}:"
    for pid in find_pids(prefix):
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        procs[cmd[len(prefix):].split(".")[0].split()[0]] = pid
    return procs


def cpu_reader(procs: dict[str, int]) -> Callable[[], dict[str, float]]:
    """Reads each process's CPU seconds, and the client's (this process)."""
    every = {**procs, "client": os.getpid()}

    def read() -> dict[str, float]:
        out = {}
        for name, pid in every.items():
            with contextlib.suppress(OSError):
                out[name] = cpu_seconds(pid)
        return out

    return read


def measure(endpoints: dict[str, str], procs: dict[str, dict[str, int]],
            s: Settings) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every round: each concurrency, each mode (order rotated by round)."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        mode: {str(c): [] for c in s.concurrency} for mode in s.modes}
    for i in range(s.rounds):
        for c in s.concurrency:
            for mode in rotated(s.modes, i):
                data = asyncio.run(closed_loop(endpoints[mode], s.tokens, c, s.duration_s,
                                               s.limit_s, cpu_reader(procs[mode])))
                result = run_result(data)
                result["loadavg_1m"] = os.getloadavg()[0]
                runs[mode][str(c)].append(result)
                log(f"round {i + 1}/{s.rounds} c={c} {mode}: "
                    f"{result['chunks_per_s']:.0f} chunks/s, TTFT p50 "
                    f"{result['ttft_p50_ms']:.2f} ms, errors {result['errors']:.0f}")
    return runs


def warm_up(endpoints: dict[str, str], s: Settings) -> None:
    """Code paths, connections and the gateway's first windows, not measured."""
    for mode in s.modes:
        asyncio.run(closed_loop(endpoints[mode], s.tokens, max(s.concurrency),
                                min(2.0, s.duration_s), s.limit_s, dict))


def run(s: Settings, command: str) -> dict[str, Any]:
    token = prepare_env()
    machine = machine_info()
    model_cls = _own("FixedRateTokens")
    with temp_registry() as registry, local_serve(verbose=s.verbose) as url:
        refs = {"champion": register_generator(registry, model_cls(s.rate, s.tokens),
                                               "champion")}
        if s.challenger_weight > 0 and "gateway" in s.modes:
            refs["challenger"] = register_generator(registry, model_cls(s.rate, s.tokens),
                                                    "challenger")
        cfg, phase = None, None
        try:
            procs: dict[str, dict[str, int]] = {}
            if "direct" in s.modes:
                log("direct: deploying")
                procs["direct"] = processes(deploy_direct(registry, refs["champion"]))
            if "bare" in s.modes:
                log("bare: deploying")
                procs["bare"] = processes(deploy_bare(registry, refs["champion"]))
            if "gateway" in s.modes:
                log("gateway: deploying")
                cfg = deploy_gateway(url, registry, refs, token, s.challenger_weight)
                procs["gateway"] = processes(cfg.app_name, [("supervisor", "ray::Supervisor")])
            endpoints = {"direct": f"{url}/direct{CHAT_PATH}", "bare": f"{url}/bare{CHAT_PATH}",
                         "gateway": f"{url}{CHAT_PATH}"}
            log("warm-up")
            warm_up(endpoints, s)
            runs = measure(endpoints, procs, s)
            if cfg is not None:
                phase = admin_status(url, token)["phase"]
        finally:
            _undeploy(cfg)
    machine["loadavg_1m_at_end"] = os.getloadavg()[0]
    results = {mode: {c: summarize(rs) for c, rs in by_c.items()} for mode, by_c in runs.items()}
    comparison = compare(results, runs)
    for by_c in runs.values():  # the raw TTFTs are summarized; keep the JSON small
        for rs in by_c.values():
            for r in rs:
                r.pop("ttft_ms", None)
    return {"benchmark": "streaming", "command": command, "machine": machine,
            "settings": asdict(s), "processes": procs, "gateway_phase_after": phase,
            "results": results, "comparison": comparison, "goals": goals(comparison),
            "runs": runs}


def _undeploy(cfg: Any) -> None:
    from ray import serve

    if cfg is not None:
        from gateway.app import teardown

        with contextlib.suppress(Exception):
            teardown(cfg)
    for app in ("bench-stream-direct", "bench-stream-bare"):
        with contextlib.suppress(Exception):
            serve.delete(app)


def log(msg: str) -> None:
    print(f"[streaming] {msg}", file=sys.stderr, flush=True)


def render(path: Path) -> int:
    """Rewrite the RESULTS.md section from a saved JSON report (no measuring)."""
    report = cast(dict[str, Any], _nan(json.loads(path.read_text())))
    report["goals"] = goals(report["comparison"])  # None (n/a) did not survive _nan
    write_section("streaming", markdown(report))
    log(f"rendered {path} into benchmarks/RESULTS.md")
    return 0


def _nan(obj: Any) -> Any:
    """JSON's nulls (NaN when written) back to NaN."""
    if obj is None:
        return float("nan")
    if isinstance(obj, dict):
        return {k: _nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan(v) for v in obj]
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--render"]:
        return render(Path(args[1]) if len(args) > 1 else RESULTS_DIR / "streaming.json")
    s = parse_args(args)
    report = run(s, ("python -m benchmarks.streaming " + " ".join(args)).strip())
    out = write_json("streaming.json", report)
    write_section("streaming", markdown(report))
    print(json.dumps(rounded({k: v for k, v in report.items() if k != "runs"}), indent=2))
    log(f"wrote {out} and benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
