"""OpenAI-compatible endpoints of the ingress: `/v1/completions`, `/v1/chat/completions`.

Routed by the same table as `/v1/predict`. Streams (`stream: true`) are passed through from
the chosen arm chunk by chunk, without buffering; a challenger that fails before its first
token is replaced by the champion, invisibly. Every answer is measured (TTFT, time per output
token, tokens) and a sample is scored for hallucination off the request path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core.errors import InputError
from gateway.serving.http import json_response, parse_json_object, read_body
from gateway.serving.llm.evaluator import table_sample_rates
from gateway.serving.llm.openai_api import (
    SSE_DONE,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    StreamTally,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    error_body,
    input_error_body,
    parse_chat,
    parse_completion,
    sse,
    usage_chunk,
)
from gateway.wire.routing import Arm, RoutingTable, choose_arm
from guards.window import Observation, Outcome, key_bucket

if TYPE_CHECKING:
    from collections import Counter

    from gateway.config import GatewayConfig
    from gateway.metrics import GatewayMetrics
    from gateway.serving.ingress import ArmCall, Censor
    from gateway.serving.llm.evaluator import EvaluatorPool
    from gateway.serving.tablewatch import TableWatcher


class IngressCore(Protocol):
    """What the OpenAI routes use of the Ingress they are mixed into."""

    _cfg: GatewayConfig
    _watcher: TableWatcher
    _sticky_header: str
    _served: list[tuple[str, str]]
    _stream_handles: dict[str, Any]
    _metrics: GatewayMetrics
    counts: Counter[tuple[str, str]]

    async def _serve(self, table: RoutingTable, arm: Arm, inputs: Any, method: str,
                     bucket: int | None = None) -> tuple[Arm, ArmCall]: ...
    def _censor(self, table: RoutingTable, bucket: int | None) -> Censor | None: ...
    def _version(self, table: RoutingTable, arm: Arm) -> str: ...
    def _record(self, arm: Arm, version: str, observation: Observation) -> None: ...
    def _evaluator(self) -> EvaluatorPool: ...
    async def _openai(self, request: Request, kind: str) -> Response: ...
    def _generation_answer(self, arm: Arm, call: ArmCall, req: GenerationRequest,
                           request_id: str) -> Response: ...
    async def _stream_answer(self, table: RoutingTable, arm: Arm, req: GenerationRequest,
                             request_id: str, bucket: int | None = None) -> Response: ...
    async def _open_stream(self, table: RoutingTable, arm: Arm, req: GenerationRequest,
                           bucket: int | None, compared: bool) -> OpenStream | None: ...
    def _sse(self, opened: OpenStream, arm: Arm, req: GenerationRequest,
             request_id: str) -> AsyncIterator[bytes]: ...
    def _chunk(self, req: GenerationRequest, chunk: GenerationChunk, model: str,
               request_id: str, created: int, first: bool = False) -> dict[str, Any]: ...
    def _observe_stream(self, table: RoutingTable, arm: Arm, outcome: str,
                        tally: StreamTally, version: str | None, bucket: int | None = None,
                        compared: bool = True) -> None: ...
    def _evaluate(self, arm: Arm, version: str, req: GenerationRequest, text: str,
                  request_id: str) -> None: ...


@dataclass(slots=True)
class OpenStream:
    """A stream that delivered its first item, and how its outcome is to be observed."""

    stream: Any
    first: dict[str, Any]
    tally: StreamTally
    bucket: int | None  # the sticky key's analysis bucket, if any
    # False for a failover stream, and for a champion stream censored at the comparison
    # deadline before its first token: counted and measured, kept out of the window.
    compared: bool


class LLMRoutes:
    """Mixed into the Ingress; uses its table, slots, observation and metrics."""

    async def _completions(self: IngressCore, request: Request) -> Response:
        return await self._openai(request, "completion")

    async def _chat(self: IngressCore, request: Request) -> Response:
        return await self._openai(request, "chat")

    async def _openai(self: IngressCore, request: Request, kind: str) -> Response:
        from gateway.serving.ingress import _request_id

        request_id = _request_id(request)
        try:
            body = parse_json_object(await read_body(request, self._cfg.http.max_body_bytes))
            limit = self._cfg.llm.max_tokens_limit
            req = (parse_completion(body, limit) if kind == "completion"
                   else parse_chat(body, limit))
        except InputError as exc:
            return json_response(input_error_body(exc), exc.status)
        table = self._watcher.current
        key = request.headers.get(self._sticky_header)
        bucket = None if key is None else key_bucket(key)
        arm = choose_arm(table, key)
        if req.stream:
            return await self._stream_answer(table, arm, req, request_id, bucket)
        arm, call = await self._serve(table, arm, req, "generate", bucket)
        return self._generation_answer(arm, call, req, request_id)

    def _generation_answer(self: IngressCore, arm: Arm, call: ArmCall, req: GenerationRequest,
                           request_id: str) -> Response:
        reply = call.reply
        if call.outcome == "client_error" and reply is not None:
            err = error_body(str(reply.get("message")), "invalid_request_error",
                             reply.get("field"))
            return json_response(err, int(reply.get("status", 422)))
        if call.outcome != "ok" or reply is None:
            return json_response(error_body(f"the champion model could not answer: "
                                            f"{call.message}", "server_error"), 502)
        out = reply["outputs"]
        result = GenerationResult(out["text"], out["finish_reason"], int(out["prompt_tokens"]),
                                  int(out["completion_tokens"]))
        model = reply["model"]
        self._served.append((request_id, str(model["version"])))
        if call.compared:  # a failover or censored answer is no evidence for either arm
            self._evaluate(arm, str(model["version"]), req, result.text, request_id)
        fmt = completion_response if req.kind == "completion" else chat_response
        payload = fmt(result, req.model or model["name"], request_id, int(time.time()))
        return json_response(payload, 200, _arm_headers(arm, model))

    # --- streaming -------------------------------------------------------------------------

    async def _stream_answer(self: IngressCore, table: RoutingTable, arm: Arm,
                             req: GenerationRequest, request_id: str,
                             bucket: int | None = None) -> Response:
        opened = await self._open_stream(table, arm, req, bucket, True)
        if opened is None and arm is Arm.CHALLENGER:
            self.counts[("challenger", "failover")] += 1
            self._metrics.failover(self._version(table, Arm.CHALLENGER))
            arm = Arm.CHAMPION
            # Kept out of the champion's window, as a failover of `/v1/predict` is.
            opened = await self._open_stream(table, arm, req, bucket, False)
        if opened is None:
            return json_response(error_body("the champion model could not answer",
                                            "server_error"), 502)
        first = opened.first
        if "error" in first:
            return json_response(error_body(first["message"], "invalid_request_error",
                                            first.get("field")), int(first["status"]))
        model = first["model"]
        self._served.append((request_id, str(model["version"])))
        body = self._sse(opened, arm, req, request_id)
        return StreamingResponse(body, media_type="text/event-stream",
                                 headers={**_arm_headers(arm, model), "cache-control": "no-cache"})

    async def _open_stream(self: IngressCore, table: RoutingTable, arm: Arm,
                           req: GenerationRequest, bucket: int | None,
                           compared: bool) -> OpenStream | None:
        """Start a stream and wait for its first item (the first token, or a client error).
        None when the arm failed before it: the caller may fail over.

        The first token is where streams are compared: a champion stream (not a failover)
        still waiting for it at the comparison deadline is censored there (see `Censor`)."""
        slot = table.slot_of(arm)
        if slot is None:
            return None
        timeout = (self._cfg.timeouts.champion_s if arm is Arm.CHAMPION
                   else self._cfg.timeouts.challenger_s)
        censor = self._censor(table, bucket) if compared and arm is Arm.CHAMPION else None
        tally = StreamTally(started=time.perf_counter())
        stream = self._stream_handles[slot].remote(req)
        try:
            async with asyncio.timeout(timeout):
                first = await stream.__anext__()
        except Exception as exc:
            stream.cancel()
            outcome = "timeout" if isinstance(exc, TimeoutError) else "server_error"
            if censor is not None and not censor.stop():
                compared = False
            self._observe_stream(table, arm, outcome, tally, None, bucket, compared)
            return None
        finally:  # also when the request is cancelled (client gone) before the deadline
            if censor is not None and not censor.stop():
                compared = False
        if "error" not in first:
            tally.add(GenerationChunk(**first["chunk"]), time.perf_counter())
        return OpenStream(stream, first, tally, bucket, compared)

    async def _sse(self: IngressCore, opened: OpenStream, arm: Arm, req: GenerationRequest,
                   request_id: str) -> AsyncIterator[bytes]:
        stream, first, tally = opened.stream, opened.first, opened.tally
        table, model = self._watcher.current, first["model"]
        name, created = req.model or model["name"], int(time.time())
        outcome = "server_error"
        try:
            yield sse(self._chunk(req, GenerationChunk(**first["chunk"]), name, request_id,
                                  created, first=True))
            async for item in stream:
                chunk = GenerationChunk(**item["chunk"])
                tally.add(chunk, time.perf_counter())
                yield sse(self._chunk(req, chunk, name, request_id, created))
            if req.include_usage:
                yield sse(usage_chunk(req.kind, tally.prompt_tokens, tally.tokens, name,
                                      request_id, created))
            yield SSE_DONE
            outcome = "ok"
        finally:
            self._observe_stream(table, arm, outcome, tally, str(model["version"]),
                                 opened.bucket, opened.compared)
            if outcome == "ok" and opened.compared:
                self._evaluate(arm, str(model["version"]), req, tally.text, request_id)

    @staticmethod
    def _chunk(req: GenerationRequest, chunk: GenerationChunk, model: str, request_id: str,
               created: int, first: bool = False) -> dict[str, Any]:
        if req.kind == "chat":
            return chat_chunk(chunk, model, request_id, created, first=first)
        return completion_chunk(chunk, model, request_id, created)

    def _observe_stream(self: IngressCore, table: RoutingTable, arm: Arm, outcome: str,
                        tally: StreamTally, version: str | None, bucket: int | None = None,
                        compared: bool = True) -> None:
        """Count and measure a stream's outcome; into the window only when `compared`."""
        version = version or self._version(table, arm)
        latency = time.perf_counter() - tally.started
        self.counts[(arm.value, outcome)] += 1
        if compared:
            self._record(arm, version, Observation(
                latency, Outcome.OK if outcome == "ok" else
                (Outcome.TIMEOUT if outcome == "timeout" else Outcome.SERVER_ERROR),
                tokens_in=tally.prompt_tokens, tokens_out=tally.tokens, busy_s=latency,
                ttft_s=tally.ttft_s, key_bucket=bucket))
        self._metrics.request(arm.value, version, outcome, latency)
        if outcome == "ok":
            self._metrics.llm_timing(arm.value, version, tally.ttft_s, tally.tpot_s,
                                     tally.tokens)

    def _evaluate(self: IngressCore, arm: Arm, version: str, req: GenerationRequest,
                  text: str, request_id: str) -> None:
        """Maybe score the answer, at its arm's sampling rate under the live table (each arm
        gets as many scored answers as its traffic allows, within the configured budget)."""
        if req.context:
            champion, challenger = table_sample_rates(self._cfg.hallucination.sample_rate,
                                                      self._watcher.current)
            self._evaluator().submit(version, req.context, text, req.question,
                                     request_id=request_id,
                                     rate=champion if arm is Arm.CHAMPION else challenger)


def _arm_headers(arm: Arm, model: dict[str, Any]) -> dict[str, str]:
    return {"x-gateway-arm": arm.value, "x-gateway-model-version": str(model["version"])}
