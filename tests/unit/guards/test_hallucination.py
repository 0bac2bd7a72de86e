"""Hallucination scorers: the groundedness scorer on real HaluEval data, the HTTP scorer
against a real local HTTP server, the factory and the evaluation helpers."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError, GatewayError
from guards.hallucination import (
    DEFAULT_SCORER,
    DEFAULT_THRESHOLD,
    SCORERS,
    GroundednessScorer,
    HttpScorer,
    Scorer,
    ScorerError,
    WordOverlapScorer,
    make_scorer,
)
from guards.scorers.evaluation import (
    classify,
    halueval_pairs,
    labels_of,
    roc_auc,
    score_pairs,
)

SLICE = Path(__file__).resolve().parents[2] / "data" / "halueval_qa_slice.jsonl"


def load_slice() -> list[dict[str, str]]:
    with SLICE.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


# --- factory and protocol ----------------------------------------------------------------


def test_factory_builds_every_registered_scorer() -> None:
    params: dict[str, dict[str, Any]] = {"http": {"url": "http://127.0.0.1:9/score"}}
    for name in SCORERS:
        scorer = make_scorer(name, **params.get(name, {}))
        assert isinstance(scorer, Scorer)
        assert scorer.name == name
        assert 0.0 <= scorer.threshold <= 1.0
    assert isinstance(make_scorer(), GroundednessScorer)
    assert DEFAULT_SCORER == "groundedness"
    assert make_scorer().threshold == DEFAULT_THRESHOLD


def test_factory_names_an_unknown_scorer() -> None:
    with pytest.raises(ConfigError, match="'ragas'"):
        make_scorer("ragas")


def test_factory_rejects_unknown_parameters() -> None:
    with pytest.raises(ConfigError, match="groundedness"):
        make_scorer("groundedness", bigram_wieght=0.2)


def test_scorer_error_is_a_gateway_error() -> None:
    assert issubclass(ScorerError, GatewayError)


# --- groundedness ------------------------------------------------------------------------

CONTEXT = (
    "Arthur's Magazine (1844-1846) was an American literary periodical published in "
    "Philadelphia in the 19th century. First for Women is a woman's magazine published by "
    "Bauer Media Group in the USA."
)
QUESTION = "Which magazine was started first Arthur's Magazine or First for Women?"


def test_extractive_answer_is_fully_grounded() -> None:
    assert GroundednessScorer().score(CONTEXT, "Arthur's Magazine", QUESTION) == 0.0


def test_invented_entity_scores_above_threshold() -> None:
    scorer = GroundednessScorer()
    score = scorer.score(CONTEXT, "Harper's Bazaar, published in Boston.", QUESTION)
    assert score >= scorer.threshold


def test_wrong_number_scores_higher_than_right_number() -> None:
    scorer = GroundednessScorer()
    right = scorer.score(CONTEXT, "It was first published in 1844.", QUESTION)
    wrong = scorer.score(CONTEXT, "It was first published in 1852.", QUESTION)
    assert right < scorer.threshold <= wrong


def test_restating_the_question_is_not_a_hallucination() -> None:
    # "started" and "first" come from the question, not the context: neutral, not claims.
    scorer = GroundednessScorer()
    assert scorer.score(CONTEXT, "Arthur's Magazine was started first.", QUESTION) == 0.0
    assert scorer.score(CONTEXT, "Arthur's Magazine was started first.") > 0.0


def test_words_copied_from_the_question_are_weak_support() -> None:
    scorer = GroundednessScorer()
    response = "Arthur's Magazine, not Harper's."
    assert scorer.score(CONTEXT, response, QUESTION) > scorer.score(CONTEXT, response)


def test_normalises_case_accents_punctuation_and_inflection() -> None:
    context = "Die Rhöner Säuwäntzt play skiffle-blues; the band was founded in 11,000 BC."
    response = "die RHONER sauwantzt played Skiffle Blues. The bands were founded in 11000 BC"
    assert GroundednessScorer().score(context, response) == 0.0


def test_word_order_alone_never_crosses_the_default_threshold() -> None:
    scrambled = "Century magazine Philadelphia periodical 19th literary American Women USA."
    scorer = GroundednessScorer()
    score = scorer.score(CONTEXT, scrambled)
    assert 0.0 < score < scorer.threshold


@pytest.mark.parametrize(
    "params",
    [{"threshold": 1.5}, {"bigram_weight": -0.1}, {"entity_weight": -1.0}, {"prior": 0.0}],
)
def test_groundedness_config_errors_name_the_field(params: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=f"scorer.{next(iter(params))}"):
        make_scorer("groundedness", **params)


def test_response_without_content_words_scores_zero() -> None:
    assert GroundednessScorer().score(CONTEXT, "Yes.", "Is it a magazine?") == 0.0
    assert GroundednessScorer().score(CONTEXT, "") == 0.0


def test_empty_context_is_an_error() -> None:
    with pytest.raises(ScorerError, match="context"):
        GroundednessScorer().score("   ", "Paris")


def test_oversized_input_is_an_error() -> None:
    with pytest.raises(ScorerError, match="response"):
        GroundednessScorer(max_chars=100).score("a short context", "word " * 100)


# Written as an LLM would answer, before their scores were looked at: correct answers that
# restate the question and paraphrase must stay below the threshold.
SENTENCE_ANSWERS = {
    0: 'Abraham Weinberg was a suspect in the killing of Vincent "Mad Dog" Coll.',
    1: "He played for Widnes Vikings, whose home matches are at the Select Security Stadium.",
    2: "The Jazz also signed Danny Manning.",
    3: "Leeuwarden, where Foeke Booy was born, had a population of 108,249.",
    4: "BlackBerry Limited was founded in 1984.",
    5: "The ceremony was chaired by Isabelle Mergault.",
    7: "Carl Orff is best known for his cantata Carmina Burana.",
    9: "Barack Obama was the first executive director of the Developing Communities Project.",
    11: "The series is by Sarah J. Maas.",
}


def test_correct_sentence_answers_stay_below_threshold() -> None:
    rows, scorer = load_slice(), GroundednessScorer()
    for index, answer in SENTENCE_ANSWERS.items():
        row = rows[index]
        score = scorer.score(row["knowledge"], answer, row["question"])
        assert score < scorer.threshold, (index, answer, score)


@settings(max_examples=200, deadline=None)
@given(context=st.text(min_size=1), response=st.text(), question=st.none() | st.text())
def test_score_is_a_deterministic_number_in_unit_interval(
    context: str, response: str, question: str | None
) -> None:
    scorer = GroundednessScorer()
    if not context.strip():
        with pytest.raises(ScorerError):
            scorer.score(context, response, question)
        return
    score = scorer.score(context, response, question)
    assert 0.0 <= score <= 1.0
    assert scorer.score(context, response, question) == score


def test_concurrent_calls_give_the_same_scores() -> None:
    pairs = halueval_pairs(load_slice())
    scorer = GroundednessScorer()
    expected = score_pairs(scorer, pairs)
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(score_pairs(scorer, pairs)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_scores_a_typical_pair_well_under_a_millisecond() -> None:
    pairs = halueval_pairs(load_slice())
    scorer = GroundednessScorer()
    best = float("inf")
    for _ in range(3):  # best of three: the machine is shared
        start = time.perf_counter()
        score_pairs(scorer, pairs)
        best = min(best, (time.perf_counter() - start) / len(pairs))
    assert best < 1e-3


# --- evaluation on the labelled slice ----------------------------------------------------


def plain_word_overlap(context: str, response: str) -> float:
    """The baseline, written out here: share of response words missing from the context."""
    words = re.findall(r"\w+", response.lower())
    context_words = set(re.findall(r"\w+", context.lower()))
    return sum(w not in context_words for w in words) / len(words) if words else 0.0


def test_default_scorer_beats_word_overlap_on_labelled_slice() -> None:
    pairs = halueval_pairs(load_slice())
    labels = labels_of(pairs)
    baseline = np.array([plain_word_overlap(p.context, p.response) for p in pairs])
    default = make_scorer()
    scores = score_pairs(default, pairs)
    baseline_auc, default_auc = roc_auc(baseline, labels), roc_auc(scores, labels)
    assert default_auc >= baseline_auc + 0.03, (default_auc, baseline_auc)
    at_threshold = classify(scores, labels, default.threshold)
    assert at_threshold.precision >= 0.9
    assert at_threshold.recall >= 0.6


def test_word_overlap_scorer_matches_the_plain_baseline() -> None:
    pairs = halueval_pairs(load_slice())
    scorer = WordOverlapScorer()
    for pair in pairs:
        assert scorer.score(pair.context, pair.response) == plain_word_overlap(
            pair.context, pair.response
        )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), st.booleans()), min_size=2))
def test_roc_auc_equals_pairwise_probability(items: list[tuple[float, bool]]) -> None:
    scores = np.array([s for s, _ in items])
    labels = np.array([y for _, y in items])
    positives, negatives = scores[labels], scores[~labels]
    if not len(positives) or not len(negatives):
        return
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    assert roc_auc(scores, labels) == pytest.approx(wins / (len(positives) * len(negatives)))


def test_classify_counts() -> None:
    scores = np.array([0.9, 0.6, 0.4, 0.1])
    labels = np.array([True, False, True, False])
    result = classify(scores, labels, 0.5)
    assert (result.true_positives, result.false_positives, result.false_negatives) == (1, 1, 1)
    assert result.precision == result.recall == result.f1 == 0.5


# --- HTTP scorer against a real local server ---------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b'{"score": 0.25}'
    delay_s: float = 0.0
    trickle_s: float = 0.0  # pause between body bytes


class EvaluationService:
    """A real HTTP server on 127.0.0.1 that answers POSTs with scripted replies."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[tuple[dict[str, str], Any]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                service.requests.append((dict(self.headers), json.loads(self.rfile.read(length))))
                reply = service.replies.popleft() if service.replies else Reply()
                time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    for byte in reply.body if reply.trickle_s else [reply.body]:
                        self.wfile.write(bytes([byte]) if isinstance(byte, int) else byte)
                        self.wfile.flush()
                        time.sleep(reply.trickle_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should on a timeout

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1/score"


@pytest.fixture
def service() -> Iterator[EvaluationService]:
    svc = EvaluationService()
    svc.thread.start()
    yield svc
    svc.server.shutdown()
    svc.server.server_close()


def test_http_scorer_posts_the_triple_and_reads_the_score(service: EvaluationService) -> None:
    scorer = HttpScorer(url=service.url)
    assert scorer.score("ctx", "resp", "q?") == 0.25
    assert scorer.score("ctx", "resp") == 0.25
    assert [body for _, body in service.requests] == [
        {"context": "ctx", "response": "resp", "question": "q?"},
        {"context": "ctx", "response": "resp", "question": None},
    ]
    assert "Authorization" not in service.requests[0][0]
    scorer.close()


def test_http_scorer_is_safe_to_share_between_threads(service: EvaluationService) -> None:
    scorer = HttpScorer(url=service.url)
    results: list[float] = []
    threads = [
        threading.Thread(target=lambda: results.extend(scorer.score("c", "r") for _ in range(5)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [0.25] * 20
    assert len(service.requests) == 20
    scorer.close()
    assert scorer.score("c", "r") == 0.25  # usable again after close()


def test_http_scorer_reads_a_nested_key(service: EvaluationService) -> None:
    service.replies.append(Reply(body=b'{"result": {"hallucination": 0.9}}'))
    assert HttpScorer(url=service.url, score_key="result.hallucination").score("c", "r") == 0.9


def test_http_scorer_sends_bearer_token_from_env(
    service: EvaluationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVAL_TOKEN", "s3cret")
    HttpScorer(url=service.url, token_env="EVAL_TOKEN").score("c", "r")
    headers = service.requests[0][0]
    assert headers["Authorization"] == "Bearer s3cret"


def test_http_scorer_retries_a_500_once(service: EvaluationService) -> None:
    service.replies.extend([Reply(status=500, body=b"oops"), Reply(body=b'{"score": 0.7}')])
    assert HttpScorer(url=service.url, retries=1, backoff_s=0.0).score("c", "r") == 0.7
    assert len(service.requests) == 2


def test_http_scorer_gives_up_after_bounded_retries(service: EvaluationService) -> None:
    service.replies.extend([Reply(status=503, body=b"")] * 3)
    scorer = HttpScorer(url=service.url, retries=2, backoff_s=0.0)
    with pytest.raises(ScorerError, match=re.escape(service.url)) as info:
        scorer.score("c", "r")
    assert "503" in str(info.value)
    assert len(service.requests) == 3


def test_http_scorer_does_not_retry_a_client_error(service: EvaluationService) -> None:
    service.replies.append(Reply(status=404, body=b"{}"))
    with pytest.raises(ScorerError, match="404"):
        HttpScorer(url=service.url, retries=3, backoff_s=0.0).score("c", "r")
    assert len(service.requests) == 1


def test_http_scorer_times_out_in_bounded_time(service: EvaluationService) -> None:
    service.replies.extend([Reply(delay_s=2.0)] * 2)
    scorer = HttpScorer(url=service.url, timeout_s=0.2, retries=1, backoff_s=0.05)
    start = time.monotonic()
    with pytest.raises(ScorerError, match=re.escape(service.url)) as info:
        scorer.score("c", "r")
    assert time.monotonic() - start < 1.5
    assert "Timeout" in str(info.value)
    assert len(service.requests) == 2


def test_http_scorer_bounds_a_trickling_reply(service: EvaluationService) -> None:
    body = b'{"score": 0.25, "padding": "' + b"x" * 40 + b'"}'
    service.replies.append(Reply(body=body, trickle_s=0.05))
    scorer = HttpScorer(url=service.url, timeout_s=0.5, retries=0)
    start = time.monotonic()
    with pytest.raises(ScorerError, match="not complete within"):
        scorer.score("c", "r")
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json {", "invalid JSON"),
        (b'{"verdict": 0.3}', "lacks key 'score'"),
        (b'{"score": "0.3"}', "expected a number"),
        (b'{"score": 1.5}', "expected a number"),
        (b'{"score": true}', "expected a number"),
        (b'{"score": NaN}', "expected a number"),
        (b"[0.3]", "lacks key"),
    ],
)
def test_http_scorer_rejects_a_bad_payload(
    service: EvaluationService, body: bytes, message: str
) -> None:
    service.replies.append(Reply(body=body))
    with pytest.raises(ScorerError, match=message) as info:
        HttpScorer(url=service.url, retries=2).score("c", "r")
    assert service.url in str(info.value)
    assert len(service.requests) == 1  # a bad payload is not transient: no retry


def test_http_scorer_names_the_url_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/score"
    with pytest.raises(ScorerError, match=re.escape(url)):
        HttpScorer(url=url, retries=1, backoff_s=0.0).score("c", "r")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"url": "ftp://evaluator/score"}, "scorer.url"),
        ({"url": "evaluator:8080"}, "scorer.url"),
        ({"url": "http://e/s", "timeout_s": 0}, "scorer.timeout_s"),
        ({"url": "http://e/s", "retries": 50}, "scorer.retries"),
        ({"url": "http://e/s", "score_key": ""}, "scorer.score_key"),
        ({"url": "http://e/s", "threshold": 2.0}, "scorer.threshold"),
        ({"url": "http://e/s", "token_env": "NO_SUCH_TOKEN_VARIABLE_X"}, "scorer.token_env"),
    ],
)
def test_http_scorer_config_errors_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(field)):
        make_scorer("http", **params)
