"""OpenAI-compatible responses, checked against the official `openai` client.

The client tests route the official client's HTTP calls to a handler that answers with the
bytes our formatters produce (a MockTransport of httpx2, the client's HTTP library): what is
under test is that the real client parses our responses, streams and errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2 as httpx  # the HTTP library the openai client is built on
import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from core.errors import InputError
from gateway.serving.llm.generation import (
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
)
from gateway.serving.llm.openai_format import (
    SSE_DONE,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    error_body,
    error_type,
    input_error_body,
    sse,
    usage_chunk,
)
from gateway.serving.llm.openai_parse import parse_chat, parse_completion

LIMIT = 256
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"model": "m", "prompt": "hi"}




# ---- formatting, validated with the openai package's own types -------------------------

RESULT = GenerationResult(text="Paris is in France.", finish_reason="stop", prompt_tokens=9,
                          completion_tokens=4)


def test_completion_response_is_an_openai_completion() -> None:
    body = completion_response(RESULT, "demo", "r1", 1700000000)
    parsed = Completion.model_validate(body)
    assert parsed.choices[0].text == RESULT.text
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.usage is not None and parsed.usage.total_tokens == 13
    assert parsed.id == "cmpl-r1" and parsed.model == "demo"


def test_chat_response_is_an_openai_chat_completion() -> None:
    parsed = ChatCompletion.model_validate(chat_response(RESULT, "demo", "r1", 1700000000))
    assert parsed.choices[0].message.role == "assistant"
    assert parsed.choices[0].message.content == RESULT.text
    assert parsed.usage is not None and (parsed.usage.prompt_tokens,
                                         parsed.usage.completion_tokens) == (9, 4)


def test_chat_chunks_are_openai_chunks_and_the_first_carries_the_role() -> None:
    first = ChatCompletionChunk.model_validate(
        chat_chunk(GenerationChunk("Par", None, 1), "demo", "r1", 1, first=True))
    middle = ChatCompletionChunk.model_validate(
        chat_chunk(GenerationChunk("is", None, 1), "demo", "r1", 1))
    last = ChatCompletionChunk.model_validate(
        chat_chunk(GenerationChunk("", "length", 0), "demo", "r1", 1))
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == "Par"
    assert middle.choices[0].delta.role is None and middle.choices[0].delta.content == "is"
    assert last.choices[0].delta.content is None and last.choices[0].finish_reason == "length"
    assert {first.id, middle.id, last.id} == {"chatcmpl-r1"}


def test_usage_chunks_have_no_choices() -> None:
    chunk = ChatCompletionChunk.model_validate(usage_chunk("chat", 3, 5, "demo", "r1", 1))
    assert chunk.choices == [] and chunk.usage is not None and chunk.usage.total_tokens == 8
    done = Completion.model_validate(usage_chunk("completion", 3, 5, "demo", "r1", 1))
    assert done.object == "text_completion" and done.usage is not None


def test_last_completion_chunk_is_an_openai_completion() -> None:
    chunk = completion_chunk(GenerationChunk(" end.", "stop", 1), "demo", "r1", 1)
    assert Completion.model_validate(chunk).choices[0].text == " end."


def test_sse_framing() -> None:
    assert sse({"a": 1}) == b'data: {"a":1}\n\n'
    assert sse("[DONE]") == SSE_DONE == b"data: [DONE]\n\n"


def test_error_body_shape_and_types() -> None:
    assert error_body("bad", param="n") == {"error": {
        "message": "bad", "type": "invalid_request_error", "param": "n", "code": None}}
    assert error_type(401) == "authentication_error"
    assert error_type(503) == "server_error"
    exc = InputError("n: only n=1 is supported", field="n")
    assert input_error_body(exc)["error"]["param"] == "n"


# ---- the official client against our bytes -------------------------------------------

def _client(handler: Callable[[dict[str, Any]], httpx.Response]) -> openai.OpenAI:
    def route(request: httpx.Request) -> httpx.Response:
        return handler(json.loads(request.content))

    transport = httpx.MockTransport(route)
    return openai.OpenAI(api_key="unused", base_url="http://gateway.test/v1", max_retries=0,
                         http_client=openai.DefaultHttpxClient(transport=transport))


def _stream(events: list[bytes]) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=b"".join(events))


def _chat_events(req: GenerationRequest, pieces: list[str]) -> list[bytes]:
    events = [sse(chat_chunk(GenerationChunk(p, None, 1), "demo", "r1", 1, first=i == 0))
              for i, p in enumerate(pieces)]
    events.append(sse(chat_chunk(GenerationChunk("", "stop", 0), "demo", "r1", 1)))
    if req.include_usage:
        events.append(sse(usage_chunk("chat", 5, len(pieces), "demo", "r1", 1)))
    return [*events, SSE_DONE]


def test_openai_client_completes_and_streams_chat() -> None:
    def handler(body: dict[str, Any]) -> httpx.Response:
        req = parse_chat(body, LIMIT)
        if req.stream:
            return _stream(_chat_events(req, ["Paris", " is", " in", " France."]))
        return httpx.Response(200, json=chat_response(RESULT, "demo", "r1", 1))

    client = _client(handler)
    messages: Any = [{"role": "system", "content": "Paris is in France."},
                     {"role": "user", "content": "Where is Paris?"}]
    reply = client.chat.completions.create(model="demo", messages=messages, max_tokens=8)
    assert reply.choices[0].message.content == RESULT.text
    chunks = list(client.chat.completions.create(
        model="demo", messages=messages, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is in France."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_openai_client_completes_and_streams_completions() -> None:
    def handler(body: dict[str, Any]) -> httpx.Response:
        req = parse_completion(body, LIMIT)
        if not req.stream:
            return httpx.Response(200, json=completion_response(RESULT, "demo", "r1", 1))
        pieces = [GenerationChunk("a", None, 1), GenerationChunk(" b", "length", 1)]
        return _stream([*(sse(completion_chunk(p, "demo", "r1", 1)) for p in pieces),
                        SSE_DONE])

    client = _client(handler)
    assert client.completions.create(model="demo", prompt="x").choices[0].text == RESULT.text
    chunks = list(client.completions.create(model="demo", prompt="x", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "a b"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_openai_client_surfaces_our_input_errors() -> None:
    def handler(body: dict[str, Any]) -> httpx.Response:
        try:
            parse_chat(body, LIMIT)
        except InputError as exc:
            return httpx.Response(exc.status, json=input_error_body(exc))
        raise AssertionError("expected an InputError")

    with pytest.raises(openai.UnprocessableEntityError) as info:
        _client(handler).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}], n=2)
    assert "only n=1 is supported" in info.value.message
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "n"
