"""The hallucination evaluator pool on a real local Ray: sampling, round robin, batching,
bounded in-flight calls, and delivery of scores to an actor exposing the supervisor's
`ingest_hallucination(model_version, scores)` interface."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from core.errors import ConfigError
from gateway.config import EvaluatorConfig
from gateway.demo.textgen import GroundedLM, UngroundedLM, load_corpus, train_lm
from gateway.serving.llm.evaluator import EvaluatorPool, sampled
from guards.hallucination import make_scorer

DATA = Path(__file__).resolve().parents[4] / "data" / "halueval_qa_slice.jsonl"


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """Reuse the session's Ray when a test already started it; else a private one."""
    if ray.is_initialized():
        yield
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


@ray.remote(num_cpus=0)
class Sink:
    """Stands in for the supervisor: the same method, recording what it is given."""

    def __init__(self) -> None:
        self.got: dict[str, list[float]] = defaultdict(list)
        self.calls = 0

    def ingest_hallucination(self, model_version: str, scores: list[float]) -> None:
        self.calls += 1
        self.got[model_version].extend(scores)

    def received(self) -> tuple[dict[str, list[float]], int]:
        return dict(self.got), self.calls


@pytest.fixture(scope="module")
def answers() -> list[dict[str, Any]]:
    """30 HaluEval items with a grounded and an ungrounded model's answer to each."""
    lm = train_lm(load_corpus())
    grounded, ungrounded = GroundedLM(lm), UngroundedLM(lm)
    out = []
    for i, line in enumerate(DATA.read_text().splitlines()[:30]):
        item = json.loads(line)
        rec = {"prompt": item["question"], "context": item["knowledge"],
               "question": item["question"], "max_tokens": 40, "temperature": 0.8,
               "top_p": 0.95, "seed": i}
        out.append({**item, "grounded": grounded.predict(None, [rec])[0]["text"],
                    "ungrounded": ungrounded.predict(None, [rec])[0]["text"]})
    return out


def _pool(sink: Any, **kw: Any) -> EvaluatorPool:
    defaults: dict[str, Any] = {"sample_rate": 1.0, "actors": 2, "batch_size": 8,
                                "flush_interval_s": 0.1}
    return EvaluatorPool(EvaluatorConfig(**{**defaults, **kw}), sink)


def _received(sink: Any, want: int, timeout_s: float = 20.0) -> dict[str, list[float]]:
    deadline = time.monotonic() + timeout_s
    while True:
        got, _ = ray.get(sink.received.remote())
        if sum(len(v) for v in got.values()) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


# ---- pure parts --------------------------------------------------------------------------

def test_sampling_by_request_id_is_stable_and_close_to_the_rate() -> None:
    ids = [f"req-{i}" for i in range(4000)]
    first = [sampled(i, 0.25) for i in ids]
    assert first == [sampled(i, 0.25) for i in ids]
    assert 0.22 < np.mean(first) < 0.28
    assert all(sampled(i, 1.0) for i in ids[:50]) and not any(sampled(i, 0.0) for i in ids[:50])
    # nested: whatever is sampled at 10% is sampled at 25% too
    assert all(sampled(i, 0.25) for i in ids if sampled(i, 0.10))


@pytest.mark.parametrize(("kw", "field"), [
    ({"sample_rate": 1.5}, "hallucination.sample_rate"),
    ({"sample_rate": -0.1}, "hallucination.sample_rate"),
    ({"actors": 0}, "hallucination.actors"),
    ({"max_in_flight": 0}, "hallucination.max_in_flight"),
    ({"flush_interval_s": 0.0}, "hallucination.flush_interval_s"),
    ({"scorer": "oracle"}, "hallucination.scorer"),
    ({"scorer_params": {"threshold": 2.0}}, "scorer.threshold"),
    ({"scorer_params": {"bogus": 1}}, "hallucination.scorer"),
])
def test_config_errors_name_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        EvaluatorConfig(**kw)


# ---- on Ray ------------------------------------------------------------------------------

def test_scores_flow_to_the_target_per_model_version(ray_local: None,
                                                     answers: list[dict[str, Any]]) -> None:
    sink = Sink.remote()  # type: ignore[attr-defined]
    pool = _pool(sink)
    try:
        for i, a in enumerate(answers):
            pool.submit("1", a["knowledge"], a["grounded"], a["question"], request_id=f"g{i}")
            pool.submit("2", a["knowledge"], a["ungrounded"], a["question"], request_id=f"u{i}")
        per_actor = asyncio.run(pool.flush())
        got = _received(sink, 2 * len(answers))
    finally:
        pool.close()
    scorer = make_scorer()
    expected_g = [scorer.score(a["knowledge"], a["grounded"], a["question"]) for a in answers]
    expected_u = [scorer.score(a["knowledge"], a["ungrounded"], a["question"]) for a in answers]
    # The same scores the scorer gives locally (in whatever order batches arrived).
    assert sorted(got["1"]) == pytest.approx(sorted(expected_g))
    assert sorted(got["2"]) == pytest.approx(sorted(expected_u))
    assert np.mean(got["2"]) - np.mean(got["1"]) > 0.5
    # Round robin: both actors took half of the 60 pairs, and scored them all.
    assert [s["received"] for s in per_actor] == [30, 30]
    assert sum(s["scored"] for s in per_actor) == 60
    stats = pool.stats()
    assert (stats.seen, stats.sampled, stats.submitted, stats.dropped) == (60, 60, 60, 0)


def test_actors_deliver_in_batches_without_being_flushed(ray_local: None,
                                                         answers: list[dict[str, Any]]) -> None:
    sink = Sink.remote()  # type: ignore[attr-defined]
    pool = _pool(sink, actors=1, batch_size=10, flush_interval_s=0.2)
    try:
        for a in answers[:25]:
            pool.submit("7", a["knowledge"], a["grounded"], a["question"])
        got = _received(sink, 25)  # the last 5 go out by the interval, not by size
        _, calls = ray.get(sink.received.remote())
    finally:
        pool.close()
    assert len(got["7"]) == 25
    assert 1 < calls < 25  # batched: fewer deliveries than pairs


def test_only_sampled_request_ids_are_scored(ray_local: None,
                                             answers: list[dict[str, Any]]) -> None:
    sink = Sink.remote()  # type: ignore[attr-defined]
    pool = _pool(sink, sample_rate=0.3)
    ids = [f"r-{i}" for i in range(300)]
    a = answers[0]
    try:
        for rid in ids:
            pool.submit("3", a["knowledge"], a["grounded"], a["question"], request_id=rid)
        asyncio.run(pool.flush())
        want = sum(sampled(r, 0.3) for r in ids)
        got = _received(sink, want)
    finally:
        pool.close()
    assert pool.stats().sampled == pool.stats().submitted == want == len(got["3"])
    assert 60 < want < 120


def test_submit_never_blocks_and_drops_over_the_in_flight_bound(
        ray_local: None, answers: list[dict[str, Any]]) -> None:
    sink = Sink.remote()  # type: ignore[attr-defined]
    pool = _pool(sink, max_in_flight=2)
    a = answers[1]
    try:
        started = time.perf_counter()
        for _ in range(500):
            pool.submit("4", a["knowledge"], a["ungrounded"], a["question"])
        elapsed = time.perf_counter() - started
        asyncio.run(pool.flush())
        stats = pool.stats()
        got = _received(sink, stats.submitted)
    finally:
        pool.close()
    assert stats.dropped > 0
    assert stats.submitted + stats.dropped == stats.sampled == 500
    assert stats.in_flight == 0
    assert len(got["4"]) == stats.submitted
    assert elapsed / 500 < 0.005  # fire and forget: well under 5 ms a call


def test_pairs_without_context_or_unscorable_are_counted_not_scored(
        ray_local: None, answers: list[dict[str, Any]]) -> None:
    sink = Sink.remote()  # type: ignore[attr-defined]
    pool = _pool(sink, actors=1, scorer_params={"max_chars": 200})
    a = answers[2]
    try:
        pool.submit("5", None, "an answer", "q")
        pool.submit("5", "   ", "an answer", "q")
        pool.submit("5", "short context here", "short context", "q")
        pool.submit("5", "short context here", "x" * 500, "q")  # too long: ScorerError
        (counts,) = asyncio.run(pool.flush())
        got = _received(sink, 1)
    finally:
        pool.close()
    assert pool.stats().skipped_no_context == 2
    assert counts["received"] == 2 and counts["scored"] == 1 and counts["score_errors"] == 1
    assert len(got["5"]) == 1 and a  # only the scorable pair was delivered


def test_a_dead_target_costs_scores_not_errors(ray_local: None,
                                               answers: list[dict[str, Any]]) -> None:
    sink = Sink.remote()  # type: ignore[attr-defined]
    pool = _pool(sink, actors=1)
    ray.kill(sink)
    a = answers[3]
    try:
        pool.submit("6", a["knowledge"], a["grounded"], a["question"])
        (counts,) = asyncio.run(pool.flush())
    finally:
        pool.close()
    assert counts["scored"] == 1 and counts["undelivered"] == 1
    assert pool.stats().failed == 0
