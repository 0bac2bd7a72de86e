"""OpenAI-compatible responses: `completion_response`, `chat_response`, the streaming
chunks `completion_chunk` and `chat_chunk`, `usage_chunk`, `sse` (server-sent events
framing) and `error_body` (OpenAI's error shape). Pure: no Ray, no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from core.errors import InputError
from gateway.serving.llm.generation import GenerationChunk, GenerationResult, Kind

SSE_DONE = b"data: [DONE]\n\n"

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
