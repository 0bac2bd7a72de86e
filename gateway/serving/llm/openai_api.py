"""OpenAI-compatible request parsing and response formatting: pure, no Ray, no I/O.

Requests: `parse_completion` (POST /v1/completions) and `parse_chat` (POST
/v1/chat/completions) turn a JSON body into a `GenerationRequest`, or raise `InputError`
(HTTP 422, or 400 for a body of the wrong shape) naming the field at fault. Fields OpenAI
defines but that change nothing here (`user`, `metadata`, `store`, `logprobs: false`, ...)
are accepted and ignored; fields asking for something this gateway cannot honour (n > 1,
logprobs, tools, penalties, echo, ...) are rejected, so a client never silently gets less
than it asked for. Unknown fields are rejected, as OpenAI itself does.

Extension fields (not in OpenAI's schema):
- `context` (string): the grounding document of the request. It is what the hallucination
  scorer checks the answer against. For chat, the context for scoring is the system (and
  developer) messages plus this field; for completions it is this field only.

Chat prompt template (one line per message, then the cue for the answer)::

    system: <system message>
    context: <the `context` field, when given>
    user: <user message>
    assistant: <earlier answer>
    assistant:

Responses: `completion_response`, `chat_response`, the streaming chunks `completion_chunk`
and `chat_chunk`, `usage_chunk`, `sse` (server-sent events framing) and `error_body`
(OpenAI's error shape). `StopFilter` applies stop sequences to a token stream for backends
without native stop support; `StreamTally` measures TTFT and time per output token.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from core.errors import InputError

Kind = Literal["completion", "chat"]
FINISH_REASONS = ("stop", "length")
MAX_STOP_SEQUENCES = 4  # OpenAI's limit
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
SSE_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One validated generation request, whichever endpoint it came from.

    `prompt` is what a plain text model continues (for chat: the formatted template);
    `messages` keeps the chat turns for engines that apply the model's own chat template.
    `context` and `question` feed the hallucination scorer and context-aware models.
    """

    prompt: str
    context: str | None
    question: str | None
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    stream: bool
    n: int
    model: str | None
    kind: Kind
    seed: int | None
    include_usage: bool = False  # stream_options.include_usage: a final usage-only chunk
    messages: tuple[ChatMessage, ...] = ()

    def to_record(self) -> dict[str, Any]:
        """The input record of a text-generation pyfunc model (see gateway.demo.textgen).

        Missing values are encoded so every column has one type: "" for no context or
        question, -1 for no seed (user seeds are folded into [0, 2**63)).
        """
        return {"prompt": self.prompt, "context": self.context or "",
                "question": self.question or "", "max_tokens": self.max_tokens,
                "temperature": self.temperature, "top_p": self.top_p,
                "seed": -1 if self.seed is None else self.seed & (2**63 - 1)}


@dataclass(frozen=True)
class GenerationChunk:
    """A piece of a streamed answer: its text, the tokens it holds, and the finish reason
    on the last piece (None before). The last piece also carries `prompt_tokens` when the
    model knows it (for `usage`)."""

    text: str
    finish_reason: str | None
    tokens: int
    prompt_tokens: int | None = None


@dataclass(frozen=True)
class GenerationResult:
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


class TextGenerator(Protocol):
    """What a model slot's backend offers to the OpenAI endpoints.

    Contract: `generate` returns the whole answer; `stream` yields it piece by piece as the
    model produces it (never buffered), the last piece carrying the finish reason. Both raise
    `InputError` for requests the model cannot take (a client error) and any other exception
    when the model fails. Cancelling the stream's consumer stops the generation.
    """

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]: ...


# ---- request parsing ------------------------------------------------------------------------

_COMMON = frozenset({"model", "max_tokens", "temperature", "top_p", "stop", "stream",
                     "stream_options", "n", "seed", "user", "context", "logprobs",
                     "frequency_penalty", "presence_penalty", "logit_bias"})
_IGNORED = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls",
                      "prompt_cache_key", "safety_identifier"})
_COMPLETION_FIELDS = _COMMON | {"prompt", "echo", "best_of", "suffix"}
_CHAT_FIELDS = _COMMON | _IGNORED | {
    "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "functions",
    "function_call", "response_format", "modalities", "audio", "prediction",
    "reasoning_effort", "web_search_options", "verbosity"}
_CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_CONTEXT_ROLES = ("system", "developer")


def parse_completion(body: Mapping[str, Any], max_tokens_limit: int,
                     default_max_tokens: int | None = None) -> GenerationRequest:
    """A POST /v1/completions body -> GenerationRequest; InputError names the bad field.

    `max_tokens` defaults to `default_max_tokens`, else OpenAI's 16 (capped at the limit).
    The prompt is sent verbatim; `question` is the prompt itself (words the answer copies
    from it are not evidence of grounding).
    """
    body = _check_fields(body, _COMPLETION_FIELDS | _IGNORED)
    _reject_unless(body, "echo", lambda v: v in (None, False), "echo is not supported")
    _reject_unless(body, "best_of", lambda v: v in (None, 1), "best_of > 1 is not supported")
    _reject_unless(body, "suffix", lambda v: v in (None, ""), "suffix is not supported")
    _reject_unless(body, "logprobs", lambda v: v in (None, False, 0),
                   "logprobs are not supported")
    prompt = _prompt(body.get("prompt"))
    default = default_max_tokens or min(DEFAULT_COMPLETION_MAX_TOKENS, max_tokens_limit)
    context = _optional_str(body, "context")
    return GenerationRequest(
        prompt=prompt, context=context, question=prompt or None,
        max_tokens=_max_tokens(body, "max_tokens", max_tokens_limit, default),
        kind="completion", messages=(), **_sampling(body))


def parse_chat(body: Mapping[str, Any], max_tokens_limit: int,
               default_max_tokens: int | None = None) -> GenerationRequest:
    """A POST /v1/chat/completions body -> GenerationRequest; InputError names the bad field.

    `max_completion_tokens` wins over the older `max_tokens`; both default to
    `default_max_tokens`, else the limit. Context for scoring: the system and developer
    messages plus the `context` extension field; question: the last user message.
    """
    body = _check_fields(body, _CHAT_FIELDS)
    _reject_unless(body, "logprobs", lambda v: v in (None, False), "logprobs are not supported")
    _reject_unless(body, "top_logprobs", lambda v: v in (None, 0),
                   "top_logprobs are not supported")
    for name in ("tools", "functions"):
        _reject_unless(body, name, lambda v: v in (None, []), "tool calling is not supported")
    for name in ("tool_choice", "function_call"):
        _reject_unless(body, name, lambda v: v in (None, "none", "auto"),
                       "tool calling is not supported")
    _reject_unless(body, "response_format", lambda v: v is None or v == {"type": "text"},
                   "only the text response format is supported")
    _reject_unless(body, "modalities", lambda v: v in (None, ["text"]),
                   "only text output is supported")
    for name in ("audio", "prediction", "reasoning_effort", "web_search_options", "verbosity"):
        _reject_unless(body, name, lambda v: v is None, "not supported by this gateway")
    messages = _messages(body.get("messages"))
    context_field = _optional_str(body, "context")
    limit_field = "max_completion_tokens" if body.get("max_completion_tokens") is not None \
        else "max_tokens"
    return GenerationRequest(
        prompt=format_chat_prompt(messages, context_field),
        context=_chat_context(messages, context_field),
        question=next((m.content for m in reversed(messages) if m.role == "user"), None),
        max_tokens=_max_tokens(body, limit_field, max_tokens_limit,
                               default_max_tokens or max_tokens_limit),
        kind="chat", messages=messages, **_sampling(body))


def format_chat_prompt(messages: tuple[ChatMessage, ...], context: str | None = None) -> str:
    """The documented plain chat template (see the module docstring)."""
    lines: list[str] = []
    leading = 0
    while leading < len(messages) and messages[leading].role in _CONTEXT_ROLES:
        lines.append(f"system: {messages[leading].content}")
        leading += 1
    if context:
        lines.append(f"context: {context}")
    for message in messages[leading:]:
        role = "system" if message.role in _CONTEXT_ROLES else message.role
        lines.append(f"{role}: {message.content}")
    lines.append("assistant:")
    return "\n".join(lines)


def _chat_context(messages: tuple[ChatMessage, ...], extra: str | None) -> str | None:
    parts = [m.content for m in messages if m.role in _CONTEXT_ROLES and m.content.strip()]
    if extra and extra.strip():
        parts.append(extra)
    return "\n".join(parts) if parts else None


def _check_fields(body: Any, known: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InputError("request body: expected a JSON object", status=400)
    unknown = sorted(k for k in body if k not in known)
    if unknown:
        raise InputError(f"{unknown[0]}: unrecognized request argument", field=unknown[0])
    return body


def _reject_unless(body: Mapping[str, Any], name: str, ok: Any, why: str) -> None:
    if name in body and not ok(body[name]):
        raise InputError(f"{name}: {why} (got {json.dumps(body[name])[:80]})", field=name)


def _prompt(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return value
    if value is None:
        raise InputError("prompt: missing required field", field="prompt")
    if isinstance(value, list) and len(value) != 1 and all(isinstance(v, str) for v in value):
        raise InputError(f"prompt: exactly one prompt per request is supported, got "
                         f"{len(value)}", field="prompt")
    raise InputError("prompt: expected a string (token-id prompts are not supported)",
                     field="prompt")


def _messages(value: Any) -> tuple[ChatMessage, ...]:
    if value is None:
        raise InputError("messages: missing required field", field="messages")
    if not isinstance(value, list) or not value:
        raise InputError("messages: expected a non-empty list of messages", field="messages")
    return tuple(_message(m, f"messages[{i}]") for i, m in enumerate(value))


def _message(value: Any, path: str) -> ChatMessage:
    if not isinstance(value, Mapping):
        raise InputError(f"{path}: expected an object with role and content", field=path)
    role = value.get("role")
    if role not in _CHAT_ROLES:
        raise InputError(f"{path}.role: expected one of {', '.join(_CHAT_ROLES)}, got "
                         f"{json.dumps(role)[:40]}", field=f"{path}.role")
    content = value.get("content")
    if content is None and role == "assistant":  # an assistant turn that only called tools
        return ChatMessage(role, "")
    return ChatMessage(role, _content(content, f"{path}.content"))


def _content(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise InputError(f"{path}: expected a string or a list of text parts", field=path)
    texts = []
    for j, part in enumerate(value):
        where = f"{path}[{j}]"
        if not isinstance(part, Mapping) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
            raise InputError(f"{where}.type: only text parts are supported, got "
                             f"{json.dumps(kind)[:40]}", field=where)
        text = part.get("text")
        if not isinstance(text, str):
            raise InputError(f"{where}.text: expected a string", field=where)
        texts.append(text)
    return "\n".join(texts)


def _sampling(body: Mapping[str, Any]) -> dict[str, Any]:
    for name in ("frequency_penalty", "presence_penalty"):
        _reject_unless(body, name, lambda v: v in (None, 0), "penalties are not supported")
    _reject_unless(body, "logit_bias", lambda v: v in (None, {}), "logit_bias is not supported")
    stream = _optional_bool(body, "stream")
    return {"model": _optional_str(body, "model"),
            "temperature": _number(body, "temperature", 1.0, 0.0, 2.0),
            "top_p": _number(body, "top_p", 1.0, 0.0, 1.0),
            "stop": _stop(body.get("stop")), "stream": stream, "n": _n(body.get("n")),
            "seed": _seed(body.get("seed")),
            "include_usage": _include_usage(body.get("stream_options"), stream)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _max_tokens(body: Mapping[str, Any], name: str, limit: int, default: int) -> int:
    value = body.get(name)
    if value is None:
        return min(default, limit)
    if not _is_int(value) or value < 1:
        raise InputError(f"{name}: expected a positive integer, got {json.dumps(value)[:40]}",
                         field=name)
    if value > limit:
        raise InputError(f"{name}: {value} exceeds this gateway's limit of {limit}", field=name)
    return int(value)


def _number(body: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) \
            or not math.isfinite(value) or not lo <= value <= hi:
        raise InputError(f"{name}: expected a number in [{lo:g}, {hi:g}], got "
                         f"{json.dumps(value)[:40]}", field=name)
    return float(value)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise InputError("stop: expected a non-empty string or a list of non-empty strings",
                         field="stop")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise InputError(f"stop: at most {MAX_STOP_SEQUENCES} sequences, got {len(stops)}",
                         field="stop")
    return tuple(stops)


def _n(value: Any) -> int:
    if value is None or (_is_int(value) and value == 1):
        return 1
    raise InputError(f"n: only n=1 is supported, got {json.dumps(value)[:40]}", field="n")


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not -(2**63) <= value < 2**64:
        raise InputError("seed: expected a 64-bit integer", field="seed")
    return int(value)


def _include_usage(value: Any, stream: bool) -> bool:
    if value is None:
        return False
    if not stream:
        raise InputError("stream_options: only allowed when stream is true",
                         field="stream_options")
    if not isinstance(value, Mapping):
        raise InputError("stream_options: expected an object", field="stream_options")
    flag = value.get("include_usage", False)
    if not isinstance(flag, bool):
        raise InputError("stream_options.include_usage: expected true or false",
                         field="stream_options.include_usage")
    return flag


def _optional_bool(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InputError(f"{name}: expected true or false", field=name)
    return value


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{name}: expected a string", field=name)
    return value


# ---- response formatting -------------------------------------------------------------------

def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_response(result: GenerationResult, model: str, request_id: str,
                        created: int) -> dict[str, Any]:
    """An OpenAI `text_completion` object."""
    return {"id": f"cmpl-{request_id}", "object": "text_completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "text": result.text, "logprobs": None,
                         "finish_reason": result.finish_reason}],
            "usage": usage(result.prompt_tokens, result.completion_tokens)}


def chat_response(result: GenerationResult, model: str, request_id: str,
                  created: int) -> dict[str, Any]:
    """An OpenAI `chat.completion` object."""
    return {"id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "logprobs": None, "finish_reason": result.finish_reason}],
            "usage": usage(result.prompt_tokens, result.completion_tokens)}


def completion_chunk(chunk: GenerationChunk, model: str, request_id: str,
                     created: int) -> dict[str, Any]:
    """One streamed piece of a completion (OpenAI streams `text_completion` objects)."""
    return {"id": f"cmpl-{request_id}", "object": "text_completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "text": chunk.text, "logprobs": None,
                         "finish_reason": chunk.finish_reason}]}


def chat_chunk(chunk: GenerationChunk, model: str, request_id: str, created: int,
               first: bool = False) -> dict[str, Any]:
    """One `chat.completion.chunk`; the first carries `delta.role`, as OpenAI's do."""
    delta: dict[str, Any] = {"role": "assistant"} if first else {}
    if chunk.text or first:
        delta["content"] = chunk.text
    return {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk",
            "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": chunk.finish_reason}]}


def usage_chunk(kind: Kind, prompt_tokens: int, completion_tokens: int, model: str,
                request_id: str, created: int) -> dict[str, Any]:
    """The last chunk when `stream_options.include_usage` is set: no choices, the usage."""
    prefix, obj = (("chatcmpl", "chat.completion.chunk") if kind == "chat"
                   else ("cmpl", "text_completion"))
    return {"id": f"{prefix}-{request_id}", "object": obj, "created": created, "model": model,
            "choices": [], "usage": usage(prompt_tokens, completion_tokens)}


def sse(data: Mapping[str, Any] | str) -> bytes:
    """One server-sent event: `data: <json>\\n\\n` (a str is sent as is, e.g. "[DONE]")."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "invalid_request_error",
                422: "invalid_request_error", 429: "rate_limit_error"}


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(message: str, type: str = "invalid_request_error",
               param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def input_error_body(exc: InputError) -> dict[str, Any]:
    return error_body(str(exc), error_type(exc.status), exc.field, None)


# ---- streaming helpers ---------------------------------------------------------------------

class StopFilter:
    """Applies stop sequences to streamed text: emits everything before the first stop
    sequence and holds back a tail that could still become one, so no piece of a stop
    sequence ever reaches the client."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped, self._held = True, ""
            return buf[:min(hits)]
        keep = self._partial_suffix(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep]

    def flush(self) -> str:
        """The held-back tail, once the stream ended without completing a stop sequence."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_suffix(self, buf: str) -> int:
        best = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buf)), best, -1):
                if stop.startswith(buf[-k:]):
                    best = k
                    break
        return best


@dataclass
class StreamTally:
    """Accumulates a stream for the observation and the evaluator: text, tokens, finish
    reason, time to first token and time per output token (after the first)."""

    started: float
    first_token_at: float | None = None
    last_token_at: float | None = None
    tokens: int = 0
    prompt_tokens: int = 0
    finish_reason: str | None = None
    parts: list[str] = field(default_factory=list)

    def add(self, chunk: GenerationChunk, now: float) -> None:
        if chunk.tokens > 0 or chunk.text:
            if self.first_token_at is None:
                self.first_token_at = now
            self.last_token_at = now
        self.tokens += chunk.tokens
        self.parts.append(chunk.text)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.prompt_tokens is not None:
            self.prompt_tokens = chunk.prompt_tokens

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def tpot_s(self) -> float | None:
        if self.first_token_at is None or self.last_token_at is None or self.tokens < 2:
            return None
        return (self.last_token_at - self.first_token_at) / (self.tokens - 1)
