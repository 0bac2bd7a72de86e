"""Pure helpers to evaluate a Scorer on labelled (context, response) pairs: AUC, P/R/F1."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from guards.scorers.base import Scorer


@dataclass(frozen=True)
class LabelledPair:
    """One response with its context; `hallucinated` is the ground truth."""

    context: str
    response: str
    question: str | None
    hallucinated: bool


@dataclass(frozen=True)
class Classification:
    """Precision, recall and F1 of flagging hallucinations at one threshold."""

    threshold: float
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int


def halueval_pairs(rows: Iterable[Mapping[str, str]]) -> list[LabelledPair]:
    """Two pairs per HaluEval QA row: its right answer (label 0) and hallucinated one (1)."""
    pairs: list[LabelledPair] = []
    for index, row in enumerate(rows):
        try:
            context, question = row["knowledge"], row["question"]
            right, wrong = row["right_answer"], row["hallucinated_answer"]
        except KeyError as exc:
            raise InputError(f"HaluEval row {index} lacks field {exc.args[0]!r}") from exc
        pairs.append(LabelledPair(context, right, question, False))
        pairs.append(LabelledPair(context, wrong, question, True))
    return pairs


def score_pairs(scorer: Scorer, pairs: Sequence[LabelledPair]) -> np.ndarray:
    """The scorer's score for every pair, in order."""
    return np.array([scorer.score(p.context, p.response, p.question) for p in pairs], dtype=float)


def labels_of(pairs: Sequence[LabelledPair]) -> np.ndarray:
    """The ground-truth labels (1 = hallucinated) of `pairs`, in order."""
    return np.array([p.hallucinated for p in pairs], dtype=bool)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic; ties count one half."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise InputError("roc_auc needs at least one positive and one negative label")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average rank of each distinct value: tied scores share the mean of their ranks.
    ends = np.cumsum(counts)
    mean_ranks = ends - (counts - 1) / 2.0
    ranks = mean_ranks[inverse]
    u_statistic = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u_statistic / (positives * negatives))


def classify(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Classification:
    """Precision / recall / F1 of predicting `score >= threshold` as hallucinated."""
    predicted = np.asarray(scores, dtype=float) >= threshold
    truth = np.asarray(labels, dtype=bool)
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Classification(threshold, precision, recall, f1, tp, fp, fn)
