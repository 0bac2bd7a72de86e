"""Helpers for streamed generations: `StopFilter` applies stop sequences to a token
stream for backends without native stop support; `StreamTally` measures TTFT and time per
output token."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.serving.llm.generation import GenerationChunk


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
        # The stop sequence that completes first ends the text, as a generation engine that
        # checks after every token would: a longer one that began earlier but would
        # complete later never gets the chance. Judging by completion makes the result the
        # same however the text is split into pieces (ties: the one that began first).
        hits = [(i + len(s), i) for s in self._stops if (i := buf.find(s)) >= 0]
        if hits:
            self.stopped, self._held = True, ""
            return buf[:min(hits)[1]]
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
