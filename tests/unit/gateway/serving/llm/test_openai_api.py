"""OpenAI-compatible parsing and formatting, checked against the official `openai` client.

The client tests route the official client's HTTP calls to a handler that answers with the
bytes our formatters produce (a MockTransport of httpx2, the client's HTTP library): what is
under test is that the real client parses our responses, streams and errors.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from typing import Any

import httpx2 as httpx  # the HTTP library the openai client is built on
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from core.errors import InputError
from gateway.serving.llm.openai_api import (
    SSE_DONE,
    ChatMessage,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    StopFilter,
    StreamTally,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    error_body,
    error_type,
    format_chat_prompt,
    input_error_body,
    parse_chat,
    parse_completion,
    sse,
    usage_chunk,
)

LIMIT = 256
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"model": "m", "prompt": "hi"}


# ---- parsing ---------------------------------------------------------------------------

def test_completion_defaults_follow_openai() -> None:
    req = parse_completion({"model": "m", "prompt": "Tell me"}, LIMIT)
    assert req == GenerationRequest(
        prompt="Tell me", context=None, question="Tell me", max_tokens=16, temperature=1.0,
        top_p=1.0, stop=(), stream=False, n=1, model="m", kind="completion", seed=None)


def test_completion_reads_every_sampling_field_and_the_context_extension() -> None:
    req = parse_completion({"prompt": ["Q?"], "max_tokens": 100, "temperature": 0,
                            "top_p": 0.5, "stop": "\n", "stream": True, "n": 1, "seed": 7,
                            "stream_options": {"include_usage": True}, "context": "Doc.",
                            "user": "u-1", "logprobs": None, "echo": False}, LIMIT)
    assert (req.prompt, req.max_tokens, req.temperature, req.top_p, req.stop, req.stream,
            req.seed, req.include_usage, req.context, req.model) == (
        "Q?", 100, 0.0, 0.5, ("\n",), True, 7, True, "Doc.", None)


def test_completion_default_max_tokens_is_capped_by_the_limit() -> None:
    assert parse_completion(COMPLETION, 8).max_tokens == 8
    assert parse_completion(COMPLETION, LIMIT, default_max_tokens=100).max_tokens == 100


def test_chat_template_context_and_question() -> None:
    body = {"model": "m", "context": "Extra doc.", "messages": [
        {"role": "system", "content": "Paris is in France."},
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "Where is Paris?"},
        {"role": "assistant", "content": "In France."},
        {"role": "user", "content": [{"type": "text", "text": "And"},
                                     {"type": "text", "text": "Lyon?"}]}]}
    req = parse_chat(body, LIMIT)
    assert req.prompt == ("system: Paris is in France.\nsystem: Be brief.\n"
                          "context: Extra doc.\nuser: Where is Paris?\n"
                          "assistant: In France.\nuser: And\nLyon?\nassistant:")
    assert req.context == "Paris is in France.\nBe brief.\nExtra doc."
    assert req.question == "And\nLyon?"
    assert req.kind == "chat" and req.max_tokens == LIMIT
    assert req.messages[0] == ChatMessage("system", "Paris is in France.")


def test_chat_without_system_or_context_has_no_context() -> None:
    req = parse_chat(CHAT, LIMIT)
    assert req.context is None and req.question == "hi"
    assert req.prompt == "user: hi\nassistant:"


def test_chat_max_completion_tokens_wins_over_max_tokens() -> None:
    req = parse_chat({**CHAT, "max_tokens": 10, "max_completion_tokens": 20}, LIMIT)
    assert req.max_tokens == 20
    assert parse_chat({**CHAT, "max_tokens": 10}, LIMIT).max_tokens == 10


def test_chat_accepts_valid_fields_that_change_nothing() -> None:
    body = {**CHAT, "user": "u", "logprobs": False, "metadata": {"a": "b"}, "store": False,
            "parallel_tool_calls": True, "tool_choice": "none", "tools": [],
            "response_format": {"type": "text"}, "n": 1, "frequency_penalty": 0,
            "presence_penalty": 0.0, "logit_bias": {}, "modalities": ["text"],
            "service_tier": "auto", "top_logprobs": 0,
            "messages": [{"role": "user", "content": "hi", "name": "bob"},
                         {"role": "assistant", "content": None, "tool_calls": []},
                         {"role": "user", "content": "again"}]}
    assert parse_chat(body, LIMIT).question == "again"


def test_to_record_encodes_missing_values_and_folds_seeds() -> None:
    assert parse_chat(CHAT, LIMIT).to_record() == {
        "prompt": "user: hi\nassistant:", "context": "", "question": "hi",
        "max_tokens": LIMIT, "temperature": 1.0, "top_p": 1.0, "seed": -1}
    assert parse_chat({**CHAT, "seed": -2}, LIMIT).to_record()["seed"] == 2**63 - 2


COMPLETION_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"model": "m"}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": [[1, 2]]}, "prompt"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": -3}, "max_tokens"),
    ({"prompt": "x", "max_tokens": "10"}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 1.5}, "max_tokens"),
    ({"prompt": "x", "max_tokens": True}, "max_tokens"),
    ({"prompt": "x", "max_tokens": LIMIT + 1}, "max_tokens"),
    ({"prompt": "x", "temperature": -0.1}, "temperature"),
    ({"prompt": "x", "temperature": 2.5}, "temperature"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "temperature": math.nan}, "temperature"),
    ({"prompt": "x", "temperature": False}, "temperature"),
    ({"prompt": "x", "top_p": 1.5}, "top_p"),
    ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": "x", "stop": ""}, "stop"),
    ({"prompt": "x", "stop": [1]}, "stop"),
    ({"prompt": "x", "stop": {"a": 1}}, "stop"),
    ({"prompt": "x", "stream": "yes"}, "stream"),
    ({"prompt": "x", "n": 2}, "n"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "n": True}, "n"),
    ({"prompt": "x", "seed": "7"}, "seed"),
    ({"prompt": "x", "seed": 1.5}, "seed"),
    ({"prompt": "x", "seed": 2**64}, "seed"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ({"prompt": "x", "stream": True, "stream_options": []}, "stream_options"),
    ({"prompt": "x", "stream": True, "stream_options": {"include_usage": 1}},
     "stream_options.include_usage"),
    ({"prompt": "x", "echo": True}, "echo"),
    ({"prompt": "x", "best_of": 2}, "best_of"),
    ({"prompt": "x", "suffix": "end"}, "suffix"),
    ({"prompt": "x", "logprobs": 5}, "logprobs"),
    ({"prompt": "x", "frequency_penalty": 0.5}, "frequency_penalty"),
    ({"prompt": "x", "presence_penalty": -1}, "presence_penalty"),
    ({"prompt": "x", "logit_bias": {"50256": -100}}, "logit_bias"),
    ({"prompt": "x", "context": 5}, "context"),
    ({"prompt": "x", "model": 5}, "model"),
    ({"prompt": "x", "messages": []}, "messages"),
    ({"prompt": "x", "frobnicate": 1}, "frobnicate"),
]


@pytest.mark.parametrize(("body", "field"), COMPLETION_ERRORS)
def test_completion_rejects_what_it_cannot_honour(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_completion(body, LIMIT)
    assert info.value.status == 422
    assert info.value.field == field
    assert str(info.value).startswith(field)


def _chat(**overrides: Any) -> dict[str, Any]:
    return {**CHAT, **overrides}


CHAT_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"model": "m"}, "messages"),
    (_chat(messages=[]), "messages"),
    (_chat(messages="hi"), "messages"),
    (_chat(messages=["hi"]), "messages[0]"),
    (_chat(messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
    (_chat(messages=[{"content": "x"}]), "messages[0].role"),
    (_chat(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    (_chat(messages=[{"role": "user", "content": None}]), "messages[0].content"),
    (_chat(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]), "messages[0].content[0]"),
    (_chat(messages=[{"role": "user", "content": [{"type": "text", "text": 3}]}]),
     "messages[0].content[0]"),
    (_chat(messages=[{"role": "user", "content": ["raw"]}]), "messages[0].content[0]"),
    (_chat(tools=[{"type": "function", "function": {"name": "f"}}]), "tools"),
    (_chat(functions=[{"name": "f"}]), "functions"),
    (_chat(tool_choice="required"), "tool_choice"),
    (_chat(function_call={"name": "f"}), "function_call"),
    (_chat(response_format={"type": "json_object"}), "response_format"),
    (_chat(logprobs=True), "logprobs"),
    (_chat(top_logprobs=2), "top_logprobs"),
    (_chat(n=3), "n"),
    (_chat(audio={"voice": "x"}), "audio"),
    (_chat(modalities=["text", "audio"]), "modalities"),
    (_chat(reasoning_effort="high"), "reasoning_effort"),
    (_chat(max_completion_tokens=0), "max_completion_tokens"),
    (_chat(max_completion_tokens=LIMIT + 1), "max_completion_tokens"),
    (_chat(max_tokens=LIMIT + 1), "max_tokens"),
    (_chat(temperature=3), "temperature"),
    (_chat(stop=["a"] * 5), "stop"),
    (_chat(seed=None, context=["doc"]), "context"),
    (_chat(prompt="x"), "prompt"),
    (_chat(echo=True), "echo"),
]


@pytest.mark.parametrize(("body", "field"), CHAT_ERRORS)
def test_chat_rejects_what_it_cannot_honour(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_chat(body, LIMIT)
    assert info.value.status == 422
    assert info.value.field == field
    assert str(info.value).startswith(field)


@pytest.mark.parametrize("parse", [parse_chat, parse_completion])
def test_a_body_that_is_not_an_object_is_a_400(parse: Callable[..., Any]) -> None:
    with pytest.raises(InputError) as info:
        parse(["not", "an", "object"], LIMIT)
    assert info.value.status == 400


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


def test_format_chat_prompt_maps_late_system_messages_and_tools() -> None:
    messages = (ChatMessage("user", "a"), ChatMessage("developer", "b"),
                ChatMessage("tool", "c"))
    assert format_chat_prompt(messages) == "user: a\nsystem: b\ntool: c\nassistant:"


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


# ---- stop sequences and stream timing ---------------------------------------------------

def _run_filter(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    stop_filter = StopFilter(stops)
    out = "".join(stop_filter.feed(p) for p in pieces) + stop_filter.flush()
    return out, stop_filter.stopped


def test_stop_filter_holds_back_a_stop_sequence_split_across_pieces() -> None:
    stop_filter = StopFilter(("\n\nuser:",))
    assert stop_filter.feed("Paris.\n") == "Paris."
    assert stop_filter.feed("\nus") == ""
    assert stop_filter.feed("er: more") == ""
    assert stop_filter.stopped


def test_stop_filter_releases_held_text_that_was_no_stop() -> None:
    assert _run_filter(("END",), ["the E", "N", "d"]) == ("the ENd", False)
    assert _run_filter(("END",), ["the EN"]) == ("the EN", False)


def test_stop_filter_cuts_at_the_earliest_stop() -> None:
    assert _run_filter(("c", "b"), ["a", "bc"]) == ("a", True)
    assert _run_filter(("x",), ["x at start"]) == ("", True)
    assert _run_filter((), ["no", " stops"]) == ("no stops", False)


@given(text=st.text(alphabet="abc\n", max_size=40), stops=st.lists(
    st.text(alphabet="abc\n", min_size=1, max_size=4), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 40), max_size=10))
def test_stop_filter_equals_cutting_the_whole_text(text: str, stops: list[str],
                                                   cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    expected = text[:min(hits)] if hits else text
    assert _run_filter(tuple(stops), pieces) == (expected, bool(hits))


def test_stream_tally_measures_ttft_and_time_per_output_token() -> None:
    tally = StreamTally(started=10.0)
    tally.add(GenerationChunk("a", None, 1), 10.5)
    tally.add(GenerationChunk(" b", None, 2), 10.7)
    tally.add(GenerationChunk(" c", "stop", 1, prompt_tokens=12), 11.1)
    assert tally.text == "a b c" and tally.tokens == 4 and tally.prompt_tokens == 12
    assert tally.finish_reason == "stop"
    assert tally.ttft_s == pytest.approx(0.5)
    assert tally.tpot_s == pytest.approx(0.6 / 3)


def test_stream_tally_without_tokens_has_no_timings() -> None:
    tally = StreamTally(started=0.0)
    tally.add(GenerationChunk("", "length", 0), 1.0)
    assert tally.ttft_s is None and tally.tpot_s is None
