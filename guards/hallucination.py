"""Hallucination scoring: the `Scorer` extension point, the built-in scorers and their factory.

Scorers turn a sampled (context, response, question) triple into a score in [0, 1]; the
hallucination guard compares the share of scores at or above `scorer.threshold` between the
challenger and the champion. See guards/scorers/base.py for the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import ConfigError
from guards.scorers.base import Scorer, ScorerError
from guards.scorers.groundedness import DEFAULT_THRESHOLD, GroundednessScorer
from guards.scorers.http_service import HttpScorer
from guards.scorers.word_overlap import WordOverlapScorer

__all__ = [
    "DEFAULT_SCORER",
    "DEFAULT_THRESHOLD",
    "SCORERS",
    "GroundednessScorer",
    "HttpScorer",
    "Scorer",
    "ScorerError",
    "WordOverlapScorer",
    "make_scorer",
]

DEFAULT_SCORER = "groundedness"

SCORERS: dict[str, Callable[..., Scorer]] = {
    "groundedness": GroundednessScorer,
    "http": HttpScorer,
    "word_overlap": WordOverlapScorer,
}


def make_scorer(name: str = DEFAULT_SCORER, **params: Any) -> Scorer:
    """Build the scorer registered as `name` with `params` (its constructor's keywords).

    Raises ConfigError naming the scorer when the name is unknown or a parameter is wrong.
    """
    factory = SCORERS.get(name)
    if factory is None:
        known = ", ".join(sorted(SCORERS))
        raise ConfigError(f"hallucination.scorer: unknown scorer {name!r} (known: {known})")
    try:
        return factory(**params)
    except TypeError as exc:
        raise ConfigError(f"hallucination.scorer: bad parameters for {name!r}: {exc}") from exc
