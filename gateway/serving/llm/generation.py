"""What a text generation is, whatever the API in front of it: the request
(`GenerationRequest`), its streamed pieces and result, and the `TextGenerator` Protocol
every text backend implements. Pure values: no Ray, no I/O."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Kind = Literal["completion", "chat"]
FINISH_REASONS = ("stop", "length")
MAX_STOP_SEQUENCES = 4  # OpenAI's limit
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions




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
