"""The default scorer: lexical groundedness of a response in the context of its request."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from core.errors import ConfigError
from guards.scorers.base import ScorerError
from guards.scorers.text import Token, bigrams, content_keys, tokenise

# Set above the bigram weight (0.2) so that word order alone never flags a response made only
# of context words: some unsupported word must be present. HaluEval-tuned thresholds are far
# lower (its right answers are exact spans of the context), which would flag paraphrases.
DEFAULT_THRESHOLD = 0.25


@dataclass(frozen=True)
class _Reference:
    """What a response may lean on: context keys and bigrams, question keys and bigrams."""

    context_keys: frozenset[str]
    context_bigrams: frozenset[tuple[str, str]]
    question_keys: frozenset[str]
    question_bigrams: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class GroundednessScorer:
    """How much of a response's content is not supported by the request's context.

    Each content word of the response (stopwords dropped, case, accents, punctuation and simple
    inflection normalised) is supported if the context contains it. Unsupported numbers and
    capitalised words (entities) weigh more than common words, because invented figures and
    names are the usual hallucinations. Words copied from the question prove nothing: when the
    context also has them they count at `question_weight`, otherwise they are left out. The
    word score is U / (U + S + prior): the prior keeps one odd word in a short answer from
    dominating. Adjacent content-word pairs must also occur in the context (pairs copied from
    the question are left out), which catches answers stitched together from context words.
    Score = (1 - bigram_weight) * word score + bigram_weight * unsupported-pair fraction, so
    with the defaults pair evidence alone (at most 0.2) stays below the threshold (0.25).
    """

    name: str = "groundedness"
    threshold: float = DEFAULT_THRESHOLD
    number_weight: float = 3.0
    entity_weight: float = 2.0
    question_weight: float = 0.5
    prior: float = 1.0
    bigram_weight: float = 0.2
    max_chars: int = 200_000

    def __post_init__(self) -> None:
        for field in ("threshold", "bigram_weight"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise ConfigError(f"scorer.{field}: must be in [0, 1], got {getattr(self, field)}")
        for field in ("number_weight", "entity_weight", "question_weight"):
            if not getattr(self, field) >= 0.0:
                raise ConfigError(f"scorer.{field}: must be >= 0, got {getattr(self, field)}")
        if not self.prior > 0.0:
            raise ConfigError(f"scorer.prior: must be > 0, got {self.prior}")
        if self.max_chars < 1:
            raise ConfigError(f"scorer.max_chars: must be >= 1, got {self.max_chars}")

    def score(self, context: str, response: str, question: str | None = None) -> float:
        self._check_inputs(context, response, question)
        reference = self._reference(context, question)
        tokens = tokenise(response)
        word_score = self._word_score(tokens, reference)
        pair_score = self._pair_score(content_keys(tokens), reference)
        if pair_score is None:
            return word_score
        return (1.0 - self.bigram_weight) * word_score + self.bigram_weight * pair_score

    def _check_inputs(self, context: str, response: str, question: str | None) -> None:
        fields = {"context": context, "response": response, "question": question or ""}
        for field, value in fields.items():
            if not isinstance(value, str):
                raise ScorerError(f"{self.name}: {field} must be a string, got {type(value)}")
            if len(value) > self.max_chars:
                raise ScorerError(f"{self.name}: {field} longer than {self.max_chars} characters")
        if not context.strip():
            raise ScorerError(f"{self.name}: context is empty; groundedness needs a context")

    def _reference(self, context: str, question: str | None) -> _Reference:
        context_content = content_keys(tokenise(context))
        question_content = content_keys(tokenise(question)) if question else []
        return _Reference(
            frozenset(context_content),
            frozenset(bigrams(context_content)),
            frozenset(question_content),
            frozenset(bigrams(question_content)),
        )

    def _weight(self, token: Token) -> float:
        if token.is_number:
            return self.number_weight
        return self.entity_weight if token.is_capitalised else 1.0

    def _word_score(self, tokens: list[Token], reference: _Reference) -> float:
        supported = unsupported = 0.0
        for token in tokens:
            if token.is_stopword:
                continue
            weight = self._weight(token)
            in_context = token.key in reference.context_keys
            if token.key in reference.question_keys:
                if not in_context:
                    continue  # restating the question is neither support nor a claim
                weight *= self.question_weight
            if in_context:
                supported += weight
            else:
                unsupported += weight
        total = unsupported + supported + self.prior
        return unsupported / total

    def _pair_score(self, keys: list[str], reference: _Reference) -> float | None:
        pairs = [
            pair
            for pair in itertools.pairwise(keys)
            if pair in reference.context_bigrams or pair not in reference.question_bigrams
        ]
        if not pairs:
            return None
        missing = sum(pair not in reference.context_bigrams for pair in pairs)
        return missing / len(pairs)
