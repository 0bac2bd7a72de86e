"""OpenAI-compatible endpoints of the ingress: `/v1/completions`, `/v1/chat/completions`.

Routed by the same table as `/v1/predict`. Streams (`stream: true`) are passed through from
the chosen arm without buffering: each item the slot sends (one chunk, or the chunks that
were already waiting together) goes on at once as one ASGI message of one event per chunk;
a challenger that fails before its first token is replaced by the champion, invisibly. Every
answer is measured (TTFT, time per output token, tokens) and a sample is scored for
hallucination off the request path.

`OpenAIRoutes` is held by the Ingress and uses it only through `IngressServices`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core.errors import InputError
from gateway.config import GatewayConfig
from gateway.metrics import GatewayMetrics
from gateway.serving.calls import (
    ArmCall,
    Censor,
    Route,
    arm_headers,
    call_timeout,
    request_id_of,
    served_version,
)
from gateway.serving.http import json_response, parse_json_object, read_body
from gateway.serving.llm.evaluator import EvaluatorPool, table_sample_rates
from gateway.serving.llm.generation import GenerationChunk, GenerationRequest, GenerationResult
from gateway.serving.llm.openai_format import (
    SSE_DONE,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    error_body,
    input_error_body,
    sse,
    usage_chunk,
)
from gateway.serving.llm.openai_parse import parse_chat, parse_completion
from gateway.serving.llm.streaming import StreamTally
from gateway.wire.replies import (
    CallOutcome,
    SlotError,
    StreamChunk,
    StreamChunks,
    StreamStart,
)
from gateway.wire.routing import Arm, RoutingTable
from guards.window import Observation, Outcome

# A stream's outcome, in the comparison window.
_WINDOW_OUTCOMES = {CallOutcome.OK: Outcome.OK, CallOutcome.TIMEOUT: Outcome.TIMEOUT}


class IngressServices(Protocol):
    """What the OpenAI routes use of the ingress that holds them: its routing, its calls to
    the arms, and its bookkeeping of outcomes, so both kinds of endpoint are observed alike.
    """

    @property
    def table(self) -> RoutingTable:
        """The routing table the replica applies now."""
        ...

    def route(self, request: Request) -> Route:
        """Choose the arm for `request` (its sticky key, if any) under the current table."""
        ...

    async def serve(self, route: Route, inputs: Any, method: str) -> tuple[Arm, ArmCall]:
        """Call `route.arm`'s slot method `method` (the champion on a challenger failure),
        observing every call; returns the arm that answered and its call."""
        ...

    def censor(self, table: RoutingTable, bucket: int | None) -> Censor | None:
        """Arm the censoring of a champion call at the comparison deadline, if there is one."""
        ...

    def observe(self, arm: Arm, version: str, outcome: CallOutcome, latency_s: float,
                observation: Observation | None) -> None:
        """Count and measure one outcome of `version`; `observation` (None for a call that
        is not compared) goes into its comparison window."""
        ...

    def failover(self, table: RoutingTable) -> None:
        """Count a failover from `table`'s challenger to its champion."""
        ...

    def remember_served(self, request_id: str, version: str) -> None:
        """`request_id` was answered by `version` (feedback may name it later)."""
        ...

    def evaluator(self) -> EvaluatorPool:
        """The hallucination scoring pool."""
        ...


@dataclass(slots=True)
class OpenStream:
    """A stream that delivered its first item, and how its outcome is to be observed."""

    stream: Any
    first: StreamStart | SlotError
    tally: StreamTally
    bucket: int | None  # the sticky key's analysis bucket, if any
    # False for a failover stream, and for a champion stream censored at the comparison
    # deadline before its first token: counted and measured, kept out of the window.
    compared: bool


class OpenAIRoutes:
    """The OpenAI endpoints: `completions` and `chat` are the ingress's route handlers.
    `stream_handles`: each slot's `stream` method, as a streaming DeploymentHandle."""

    def __init__(self, cfg: GatewayConfig, ingress: IngressServices,
                 stream_handles: Mapping[str, Any], metrics: GatewayMetrics) -> None:
        self._cfg = cfg
        self._ingress = ingress
        self._stream_handles = stream_handles
        self._metrics = metrics

    async def completions(self, request: Request) -> Response:
        return await self._openai(request, "completion")

    async def chat(self, request: Request) -> Response:
        return await self._openai(request, "chat")

    async def _openai(self, request: Request, kind: str) -> Response:
        rid = request_id_of(request)
        try:
            body = parse_json_object(await read_body(request, self._cfg.http.max_body_bytes))
            limit = self._cfg.llm.max_tokens_limit
            req = (parse_completion(body, limit) if kind == "completion"
                   else parse_chat(body, limit))
        except InputError as exc:
            return json_response(input_error_body(exc), exc.status)
        route = self._ingress.route(request)
        if req.stream:
            return await self._stream_answer(route, req, rid)
        arm, call = await self._ingress.serve(route, req, "generate")
        return self._generation_answer(arm, call, req, rid)

    def _generation_answer(self, arm: Arm, call: ArmCall, req: GenerationRequest,
                           rid: str) -> Response:
        refused = call.client_error
        if refused is not None:
            err = error_body(refused.message, "invalid_request_error", refused.field)
            return json_response(err, refused.status)
        answer = call.answer
        if answer is None:
            return json_response(error_body(f"the champion model could not answer: "
                                            f"{call.message}", "server_error"), 502)
        out = answer.outputs
        result = GenerationResult(out["text"], out["finish_reason"], int(out["prompt_tokens"]),
                                  int(out["completion_tokens"]))
        model = answer.model
        self._ingress.remember_served(rid, model.version)
        if call.compared:  # a failover or censored answer is no evidence for either arm
            self.evaluate(arm, model.version, req, result.text, rid)
        fmt = completion_response if req.kind == "completion" else chat_response
        payload = fmt(result, req.model or model.name, rid, int(time.time()))
        return json_response(payload, 200, arm_headers(arm, model))

    # --- streaming -------------------------------------------------------------------------

    async def _stream_answer(self, route: Route, req: GenerationRequest,
                             rid: str) -> Response:
        table, arm = route.table, route.arm
        opened = await self._open_stream(table, arm, req, route.bucket, True)
        if opened is None and arm is Arm.CHALLENGER:
            self._ingress.failover(table)
            arm = Arm.CHAMPION
            # Kept out of the champion's window, as a failover of `/v1/predict` is.
            opened = await self._open_stream(table, arm, req, route.bucket, False)
        if opened is None:
            return json_response(error_body("the champion model could not answer",
                                            "server_error"), 502)
        first = opened.first
        if isinstance(first, SlotError):
            return json_response(error_body(first.message, "invalid_request_error",
                                            first.field), first.status)
        self._ingress.remember_served(rid, first.model.version)
        body = self._sse(opened, first, arm, req, rid)
        return StreamingResponse(body, media_type="text/event-stream",
                                 headers={**arm_headers(arm, first.model),
                                          "cache-control": "no-cache"})

    async def _open_stream(self, table: RoutingTable, arm: Arm, req: GenerationRequest,
                           bucket: int | None, compared: bool) -> OpenStream | None:
        """Start a stream and wait for its first item (the first token, or a client error).
        None when the arm failed before it: the caller may fail over.

        The first token is where streams are compared: a champion stream (not a failover)
        still waiting for it at the comparison deadline is censored there (see `Censor`)."""
        slot = table.slot_of(arm)
        if slot is None:
            return None
        timeout = call_timeout(arm, self._cfg.timeouts)
        censor = (self._ingress.censor(table, bucket) if compared and arm is Arm.CHAMPION
                  else None)
        tally = StreamTally(started=time.perf_counter())
        stream = self._stream_handles[slot].remote(req)
        try:
            async with asyncio.timeout(timeout):
                first = await stream.__anext__()
            if not isinstance(first, StreamStart | SlotError):  # a broken slot: its failure
                raise TypeError(f"a stream's first item must be a StreamStart or a "
                                f"SlotError, not {type(first).__name__}")
        except Exception as exc:
            stream.cancel()
            outcome = (CallOutcome.TIMEOUT if isinstance(exc, TimeoutError)
                       else CallOutcome.SERVER_ERROR)
            if censor is not None and not censor.stop():
                compared = False
            self._observe_stream(table, arm, outcome, tally, None, bucket, compared)
            return None
        finally:  # also when the request is cancelled (client gone) before the deadline
            if censor is not None and not censor.stop():
                compared = False
        if isinstance(first, StreamStart):
            tally.add(GenerationChunk(**first.chunk), time.perf_counter())
        return OpenStream(stream, first, tally, bucket, compared)

    async def _sse(self, opened: OpenStream, first: StreamStart, arm: Arm,
                   req: GenerationRequest, rid: str) -> AsyncIterator[bytes]:
        stream, tally = opened.stream, opened.tally
        table, version = self._ingress.table, first.model.version
        name, created = req.model or first.model.name, int(time.time())
        outcome = CallOutcome.SERVER_ERROR
        try:
            yield sse(self._chunk(req, GenerationChunk(**first.chunk), name, rid, created,
                                  first=True))
            async for item in stream:
                # The chunks of one item arrived together: one ASGI message for all their
                # events (the client still sees one event per chunk).
                now, events = time.perf_counter(), []
                for raw in _later_chunks(item):
                    chunk = GenerationChunk(**raw)
                    tally.add(chunk, now)
                    events.append(sse(self._chunk(req, chunk, name, rid, created)))
                if events:
                    yield b"".join(events)
            if req.include_usage:
                yield sse(usage_chunk(req.kind, tally.prompt_tokens, tally.tokens, name,
                                      rid, created))
            yield SSE_DONE
            outcome = CallOutcome.OK
        finally:
            self._observe_stream(table, arm, outcome, tally, version, opened.bucket,
                                 opened.compared)
            if outcome is CallOutcome.OK and opened.compared:
                self.evaluate(arm, version, req, tally.text, rid)

    @staticmethod
    def _chunk(req: GenerationRequest, chunk: GenerationChunk, model: str, rid: str,
               created: int, first: bool = False) -> dict[str, Any]:
        if req.kind == "chat":
            return chat_chunk(chunk, model, rid, created, first=first)
        return completion_chunk(chunk, model, rid, created)

    def _observe_stream(self, table: RoutingTable, arm: Arm, outcome: CallOutcome,
                        tally: StreamTally, version: str | None, bucket: int | None = None,
                        compared: bool = True) -> None:
        """Count and measure a stream's outcome; into the window only when `compared`."""
        version = version or served_version(table, arm)
        latency = time.perf_counter() - tally.started
        observation = Observation(
            latency, _WINDOW_OUTCOMES.get(outcome, Outcome.SERVER_ERROR),
            tokens_in=tally.prompt_tokens, tokens_out=tally.tokens, busy_s=latency,
            ttft_s=tally.ttft_s, key_bucket=bucket) if compared else None
        self._ingress.observe(arm, version, outcome, latency, observation)
        if outcome is CallOutcome.OK:
            self._metrics.llm_timing(arm.value, version, tally.ttft_s, tally.tpot_s,
                                     tally.tokens)

    def evaluate(self, arm: Arm, version: str, req: GenerationRequest, text: str,
                 rid: str) -> None:
        """Maybe score the answer, at its arm's sampling rate under the live table (each arm
        gets as many scored answers as its traffic allows, within the configured budget)."""
        if req.context:
            champion, challenger = table_sample_rates(self._cfg.hallucination.sample_rate,
                                                      self._ingress.table)
            self._ingress.evaluator().submit(
                version, req.context, text, req.question, request_id=rid,
                rate=champion if arm is Arm.CHAMPION else challenger)


def _later_chunks(item: object) -> tuple[dict[str, Any], ...]:
    """The chunks of a stream's item after the first: a `StreamChunk`'s one, or a
    `StreamChunks`' several (anything else breaks the stream, which is observed as a server
    error)."""
    if isinstance(item, StreamChunks):
        return item.chunks
    if isinstance(item, StreamChunk):
        return (item.chunk,)
    raise TypeError(f"a stream's later items must be StreamChunks or StreamChunk, "
                    f"not {type(item).__name__}")
