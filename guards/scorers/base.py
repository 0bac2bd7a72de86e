"""The Scorer extension point shared by every hallucination scorer."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.errors import GatewayError


class ScorerError(GatewayError):
    """A scorer could not score a (context, response) pair; the message names the input or URL."""


@runtime_checkable
class Scorer(Protocol):
    """Scores how likely a model response is hallucinated with respect to its context.

    Contract:
    - `score(context, response, question)` returns a float in [0, 1]; higher means less
      grounded in `context` (more likely hallucinated). `question` is the user's question when
      known: words the response copies from it are not evidence of grounding.
    - A response counts as hallucinated when its score is >= `threshold` (the value the
      hallucination guard uses to turn scores into a rate).
    - No side effects the caller can observe; safe to call from many threads at once. Local
      scorers are pure functions of their inputs.
    - On any failure (unusable input, unreachable service, bad payload) it raises `ScorerError`
      naming the input or the URL at fault; it never returns a made-up score.
    - Bounded time: it never hangs (network scorers use timeouts and a bounded retry).
    """

    @property
    def name(self) -> str:
        """Registry name of the scorer, used in config and in evidence."""
        ...

    @property
    def threshold(self) -> float:
        """Scores at or above this value count as hallucinated."""
        ...

    def score(self, context: str, response: str, question: str | None = None) -> float:
        """Hallucination score in [0, 1] of `response` given `context` (and `question`)."""
        ...
