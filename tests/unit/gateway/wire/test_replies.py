"""The typed slot replies: they cross the Ray hop intact (pickled by reference, as Ray does),
are immutable, and a slot error names an error kind, never an answer or a timeout."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from ray import cloudpickle

from gateway.wire.replies import (
    ERROR_KINDS,
    CallOutcome,
    ServedModel,
    SlotAnswer,
    SlotError,
    StreamChunk,
    StreamChunks,
    StreamStart,
)

MODEL = ServedModel("m", "7")
REPLIES: list[Any] = [
    SlotAnswer([[0.25, 0.75]], MODEL, output_summary=0.5, input_summary=0.1, tokens_in=3,
               tokens_out=2, busy_s=0.004, batch_size=4),
    SlotAnswer({"text": "hi", "finish_reason": "stop", "prompt_tokens": 3,
                "completion_tokens": 1}, MODEL),
    SlotError(CallOutcome.CLIENT_ERROR, 422, "inputs: expected 8 features", "inputs"),
    SlotError(CallOutcome.SERVER_ERROR, 500, "model m version 7 failed: ValueError: x"),
    SlotError(CallOutcome.UNAVAILABLE, 503, "slot b has no healthy model"),
    StreamStart(MODEL, {"text": "he", "finish_reason": None, "tokens": 1}),
    StreamChunk({"text": "llo", "finish_reason": "stop", "tokens": 1, "prompt_tokens": 3}),
    StreamChunks(({"text": "l", "finish_reason": None, "tokens": 1, "prompt_tokens": None},
                  {"text": "o", "finish_reason": "stop", "tokens": 1, "prompt_tokens": 3})),
]


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "ray"])
@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: type(r).__name__)
def test_a_reply_round_trips_equal_and_typed(reply: Any, dumps: Any) -> None:
    back = pickle.loads(dumps(reply))
    assert back == reply and type(back) is type(reply)
    if isinstance(reply, SlotError):
        assert back.kind is reply.kind  # still the enum member, not a plain string


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: type(r).__name__)
def test_replies_are_frozen_and_slotted(reply: Any) -> None:
    name = dataclasses.fields(reply)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(reply, name, None)
    assert not hasattr(reply, "__dict__")


def test_an_answer_defaults_to_no_summaries_and_a_batch_of_one() -> None:
    answer = SlotAnswer([1.0], MODEL)
    assert (answer.output_summary, answer.input_summary, answer.tokens_in, answer.tokens_out,
            answer.busy_s, answer.batch_size) == (None, None, 0, 0, 0.0, 1)


def test_the_served_model_is_what_clients_see() -> None:
    assert MODEL.to_dict() == {"name": "m", "version": "7"}


def test_outcomes_are_the_metric_labels() -> None:
    assert [o.value for o in CallOutcome] == ["ok", "client_error", "server_error", "timeout",
                                              "unavailable", "replica_lost"]
    assert {("champion", CallOutcome.OK): 1} == {("champion", "ok"): 1}  # counts keys
    assert f"{CallOutcome.TIMEOUT}" == "timeout"


def test_a_slot_can_only_reply_with_an_error_kind() -> None:
    kinds = {CallOutcome.CLIENT_ERROR, CallOutcome.SERVER_ERROR, CallOutcome.UNAVAILABLE}
    assert kinds == ERROR_KINDS
    for kind in (CallOutcome.OK, CallOutcome.TIMEOUT):
        with pytest.raises(ValueError, match="SlotError kind"):
            SlotError(kind, 500, "no")
    with pytest.raises(ValueError):
        SlotError("bogus", 500, "no")  # type: ignore[arg-type]


def test_a_plain_string_kind_is_kept_as_the_enum() -> None:
    err = SlotError("client_error", 400, "no")  # type: ignore[arg-type]
    assert err.kind is CallOutcome.CLIENT_ERROR
    assert err == SlotError(CallOutcome.CLIENT_ERROR, 400, "no")
