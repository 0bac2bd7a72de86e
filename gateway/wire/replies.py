"""What a model slot replies to the ingress, typed on both sides of the Ray hop.

A slot never raises for bad input or a failed model: `predict` and `generate` return a
`SlotReply` (a `SlotAnswer`, or a `SlotError` naming its `CallOutcome`). `stream` yields a
`StreamStart` (the model and the first chunk), then `StreamChunk`s or `StreamChunks` (the
chunks that were waiting together, one Ray object for several), or a `SlotError` as its
first and only item. A chunk stays a plain dict (`GenerationChunk` fields): its type belongs
to the serving plane, which this package may not import.

All are frozen, slotted dataclasses of plain values: Ray pickles them by reference to this
module, which both the slot and the ingress replicas import.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class CallOutcome(enum.StrEnum):
    """How one call to a model slot ended, as the ingress counts it (the values are the
    metric labels and the `counts` keys). A slot's own `SlotError` is one of the errors
    and `UNAVAILABLE`; `TIMEOUT` only the caller can see."""

    OK = "ok"
    CLIENT_ERROR = "client_error"  # the request's fault: never counted against the model
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"  # no model was called (no healthy model, no slot)
    # The slot's replica died under the call: the supervisor decides whose fault it was
    # (`gateway.control.replica_loss`); never in a comparison window.
    REPLICA_LOST = "replica_lost"


# The kinds a slot itself may reply with (it cannot time itself out, and OK is an answer).
ERROR_KINDS = frozenset({CallOutcome.CLIENT_ERROR, CallOutcome.SERVER_ERROR,
                         CallOutcome.UNAVAILABLE})


@dataclass(frozen=True, slots=True)
class ServedModel:
    """The model version that answered: what clients see as `model` in a response."""

    name: str
    version: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


@dataclass(frozen=True, slots=True)
class SlotAnswer:
    """A slot's answer: the JSON-ready outputs, and what the comparison window observes."""

    outputs: Any
    model: ServedModel
    output_summary: float | None = None  # scalar summary of the outputs (output drift)
    input_summary: float | None = None  # scalar summary of the inputs (input drift)
    tokens_in: int = 0
    tokens_out: int = 0
    busy_s: float = 0.0  # the model's own service time (0: not measured)
    batch_size: int = 1  # requests in the model-server batch this call ran in


@dataclass(frozen=True, slots=True)
class SlotError:
    """A slot's refusal or failure; `status` and `message` reach the client as they are."""

    kind: CallOutcome
    status: int
    message: str
    field: str | None = None  # the request field at fault, for a client error

    def __post_init__(self) -> None:
        # Checked here, so a wrong kind fails in the slot, not as a miscount in the ingress.
        kind = CallOutcome(self.kind)  # a plain string is taken, and kept as the enum
        object.__setattr__(self, "kind", kind)
        if kind not in ERROR_KINDS:
            raise ValueError(f"SlotError kind must be one of "
                             f"{sorted(k.value for k in ERROR_KINDS)}, not {self.kind!r}")


SlotReply = SlotAnswer | SlotError


@dataclass(frozen=True, slots=True)
class StreamStart:
    """A stream's first item: the model and the first chunk, together, so a stream that
    fails before its first token fails at the caller's first `__anext__`."""

    model: ServedModel
    chunk: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """Every later item of a stream."""

    chunk: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamChunks:
    """Later chunks that were waiting together, in order: one item (one Ray object) for
    all of them, so a backlog does not cost a Ray message per chunk."""

    chunks: tuple[dict[str, Any], ...]


StreamItem = StreamStart | StreamChunk | StreamChunks | SlotError
