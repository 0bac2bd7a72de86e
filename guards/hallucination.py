"""Hallucination scoring: the `Scorer` extension point, the built-in scorers and their factory
(`guards.scorers.factory`), in one import.

Scorers turn a sampled (context, response, question) triple into a score in [0, 1]; the
hallucination guard compares the share of scores at or above `scorer.threshold` between the
challenger and the champion. See guards/scorers/base.py for the contract.
"""

from __future__ import annotations

from guards.scorers.base import Scorer, ScorerError
from guards.scorers.factory import DEFAULT_SCORER, SCORERS, make_scorer
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
