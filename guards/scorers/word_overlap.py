"""Plain word overlap: the baseline the groundedness scorer is measured against."""

from __future__ import annotations

import re
from dataclasses import dataclass

from guards.scorers.base import ScorerError

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class WordOverlapScorer:
    """Fraction of the response's lowercase words that do not occur in the context.

    Kept as a baseline for evaluation (benchmarks/hallucination_eval.py) and as the simplest
    possible scorer; it ignores the question, stopwords and word weights.
    """

    name: str = "word_overlap"
    threshold: float = 0.5

    def score(self, context: str, response: str, question: str | None = None) -> float:
        if not isinstance(context, str) or not isinstance(response, str):
            raise ScorerError(f"{self.name}: context and response must be strings")
        words = _WORD.findall(response.lower())
        if not words:
            return 0.0
        context_words = set(_WORD.findall(context.lower()))
        return sum(word not in context_words for word in words) / len(words)
