"""OpenAI-compatible request parsing: pure, no Ray, no I/O.

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
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from core.errors import InputError
from gateway.serving.llm.generation import (
    DEFAULT_COMPLETION_MAX_TOKENS,
    MAX_STOP_SEQUENCES,
    ChatMessage,
    GenerationRequest,
)

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
