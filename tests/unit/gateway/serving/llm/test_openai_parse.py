"""OpenAI-compatible request parsing: what is accepted, ignored and rejected (naming the
field), and the chat prompt template."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from core.errors import InputError
from gateway.serving.llm.generation import (
    ChatMessage,
    GenerationRequest,
)
from gateway.serving.llm.openai_parse import format_chat_prompt, parse_chat, parse_completion

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



def test_format_chat_prompt_maps_late_system_messages_and_tools() -> None:
    messages = (ChatMessage("user", "a"), ChatMessage("developer", "b"),
                ChatMessage("tool", "c"))
    assert format_chat_prompt(messages) == "user: a\nsystem: b\ntool: c\nassistant:"
