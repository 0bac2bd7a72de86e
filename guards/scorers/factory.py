"""The one factory of hallucination scorers: name -> Scorer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import ConfigError
from guards.scorers.base import Scorer
from guards.scorers.groundedness import GroundednessScorer
from guards.scorers.http_service import HttpScorer
from guards.scorers.word_overlap import WordOverlapScorer

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
