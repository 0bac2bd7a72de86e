"""Hallucination scoring off the request path: a small pool of Ray actors.

The ingress replica owns an `EvaluatorPool`. For each answered LLM request it calls
`submit(model_version, context, response, question, request_id=..., rate=...)`, which
samples (at the answering arm's rate, `table_sample_rates`: equal expected scored answers per
arm within the configured budget; deterministic by a hash of the request id), and sends
the triple fire-and-forget to the next `HallucinationEvaluator` actor (round robin). It never
blocks and never raises on the hot path: when too many calls are in flight (an actor is slow
or gone) the sample is dropped and counted.

Each actor buffers what it receives, scores it in batches with a `Scorer` from
`guards.hallucination.make_scorer` in a worker thread (its event loop stays free to accept
more), and delivers `(model_version, scores)` per model version to the target actor's
`ingest_hallucination(model_version: str, scores: list[float])` method — the supervisor's,
which records them with `ArmWindow.record_hallucination_batch`. Pairs the scorer cannot score
(ScorerError) are counted and skipped, never given a made-up score.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray

from core.logs import get_logger
from gateway.config import EvaluatorConfig
from gateway.wire.routing import Mode, RoutingTable
from guards.hallucination import Scorer, ScorerError, make_scorer

log = get_logger(__name__)

DELIVERY_TIMEOUT_S = 10.0


def sampled(request_id: str, rate: float) -> bool:
    """Deterministic sampling: the same request id is always in or always out, on every
    replica (a stable hash, not Python's salted `hash`)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def arm_sample_rates(budget: float, challenger_share: float) -> tuple[float, float]:
    """Sampling rates `(champion, challenger)` giving both arms as many scored answers as
    the traffic allows, within the same total budget as scoring every arm at `budget`.

    `challenger_share` is the challenger's fraction of requests, in [0, 1]. Each arm aims at
    `budget / 2` scored answers per request: the challenger at `budget / (2 w)`, the champion
    at `budget / (2 (1 - w))`. A rate is capped at 1, and what the capped arm cannot use goes
    to the other arm, so the expected number of scored answers per request is always `budget`.
    An arm that gets no traffic leaves the whole budget to the other (rate `budget`).

    Unequal rates do not bias the comparison: the guard compares rates per scored answer, and
    which answers are scored depends on the request id only (`sampled`), never on the answer.
    """
    if not 0.0 <= budget <= 1.0:
        raise ValueError(f"budget must be in [0, 1], got {budget!r}")
    w = min(max(challenger_share, 0.0), 1.0)
    if w == 0.0 or w == 1.0:
        return budget, budget
    challenger = min(1.0, budget / (2.0 * w))
    champion = min(1.0, budget / (2.0 * (1.0 - w)))
    if challenger == 1.0 and champion < 1.0:  # leftover of the capped challenger
        champion = min(1.0, (budget - w) / (1.0 - w))
    elif champion == 1.0 and challenger < 1.0:  # leftover of the capped champion
        challenger = min(1.0, (budget - (1.0 - w)) / w)
    return champion, challenger


def table_sample_rates(budget: float, table: RoutingTable) -> tuple[float, float]:
    """`arm_sample_rates` for the traffic `table` routes: the challenger's weight in split
    mode; equal rates when both arms see every request (shadow) or one arm sees none."""
    if table.mode is Mode.SPLIT and table.challenger_slot is not None:
        return arm_sample_rates(budget, table.challenger_weight / 100.0)
    return budget, budget


@dataclass(frozen=True)
class EvalItem:
    model_version: str
    context: str
    response: str
    question: str | None


@dataclass(frozen=True)
class PoolStats:
    seen: int  # submit calls
    sampled: int  # ... that the sampler kept
    skipped_no_context: int  # ... kept but without a context to check against
    submitted: int  # sent to an actor
    dropped: int  # not sent: too many calls in flight
    failed: int  # sent, but the actor call failed (actor dead or restarting)
    in_flight: int


class HallucinationEvaluator:
    """Ray actor: buffers pairs, scores them in batches, delivers scores per version."""

    def __init__(self, scorer: str, scorer_params: Mapping[str, Any], target: Any,
                 batch_size: int, flush_interval_s: float, max_buffer: int) -> None:
        self._scorer: Scorer = make_scorer(scorer, **dict(scorer_params))
        self._target = target
        self._batch_size, self._interval, self._max_buffer = (batch_size, flush_interval_s,
                                                              max_buffer)
        self._buffer: list[EvalItem] = []
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._counts: dict[str, int] = defaultdict(int)

    async def evaluate(self, item: EvalItem) -> None:
        """Accept one pair (returns at once; scoring happens in the background)."""
        self._start()
        self._counts["received"] += 1
        if len(self._buffer) >= self._max_buffer:
            self._counts["dropped"] += 1
            return
        self._buffer.append(item)
        # Wake the loop on the first pair (it starts the interval) and on a full batch.
        if (len(self._buffer) == 1 or len(self._buffer) >= self._batch_size) \
                and self._wake is not None:
            self._wake.set()

    async def flush(self) -> dict[str, int]:
        """Score and deliver everything buffered now; returns the counters (for tests and
        for draining at shutdown)."""
        self._start()
        await self._score_and_deliver()
        return dict(self._counts)

    def stats(self) -> dict[str, int]:
        return dict(self._counts)

    def _start(self) -> None:
        if self._loop_task is None:
            self._wake, self._lock = asyncio.Event(), asyncio.Lock()
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()  # idle until a pair arrives
            self._wake.clear()
            deadline = loop.time() + self._interval
            # Let a batch fill up, but never hold a pair longer than the interval.
            while len(self._buffer) < self._batch_size and loop.time() < deadline:
                try:
                    await asyncio.wait_for(self._wake.wait(), deadline - loop.time())
                except TimeoutError:
                    break
                self._wake.clear()
            try:
                await self._score_and_deliver()
            except Exception:  # the loop must survive anything
                log.exception("hallucination evaluator: batch failed")
            if self._buffer:  # more arrived while scoring
                self._wake.set()

    async def _score_and_deliver(self) -> None:
        assert self._lock is not None
        async with self._lock:
            batch, self._buffer = self._buffer, []
            if not batch:
                return
            # Scoring is CPU work: a worker thread keeps the loop free to accept pairs.
            by_version, errors = await asyncio.to_thread(self._score_batch, batch)
            self._counts["score_errors"] += errors
            self._counts["scored"] += sum(len(v) for v in by_version.values())
            await self._deliver(by_version)

    def _score_batch(self, batch: list[EvalItem]) -> tuple[dict[str, list[float]], int]:
        by_version: dict[str, list[float]] = defaultdict(list)
        errors = 0
        for item in batch:
            try:
                score = float(self._scorer.score(item.context, item.response, item.question))
            except ScorerError as exc:
                errors += 1
                log.debug("hallucination evaluator: %s", exc)
                continue
            if not 0.0 <= score <= 1.0:  # the window rejects such values: never deliver them
                errors += 1
                continue
            by_version[item.model_version].append(score)
        return dict(by_version), errors

    async def _deliver(self, by_version: dict[str, list[float]]) -> None:
        for version, scores in by_version.items():
            try:
                await asyncio.wait_for(
                    self._target.ingest_hallucination.remote(version, scores),
                    DELIVERY_TIMEOUT_S)
                self._counts["delivered"] += len(scores)
            except Exception as exc:  # target restarting or gone: count, drop, go on
                self._counts["undelivered"] += len(scores)
                log.warning("hallucination evaluator: delivery of %d scores for version %s "
                            "failed: %s", len(scores), version, exc)


class EvaluatorPool:
    """Client side of the evaluator actors, owned by one ingress replica.

    `submit` is safe to call from the replica's event loop or any thread; it does not wait
    for Ray. `close` kills the actors this pool created.
    """

    def __init__(self, config: EvaluatorConfig, target: Any, *,
                 rng: random.Random | None = None) -> None:
        self._cfg = config
        actor_cls = ray.remote(HallucinationEvaluator)
        self._actors: list[Any] = [
            actor_cls.options(num_cpus=config.num_cpus, max_restarts=-1,
                              max_concurrency=1000).remote(
                config.scorer, dict(config.scorer_params), target, config.batch_size,
                config.flush_interval_s, config.max_buffer)
            for _ in range(config.actors)]
        self._rng = rng or random.Random()
        self._next = 0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._counts: dict[str, int] = defaultdict(int)

    @property
    def actors(self) -> list[Any]:
        return list(self._actors)

    def submit(self, model_version: str, context: str | None, response: str,
               question: str | None, *, request_id: str | None = None,
               rate: float | None = None) -> None:
        """Maybe send one (context, response, question) triple for scoring; never blocks.

        Sampled at `rate` (default: the configured `sample_rate`; the ingress passes its arm's
        rate from `table_sample_rates`)."""
        if rate is None:
            rate = self._cfg.sample_rate
        with self._lock:
            self._counts["seen"] += 1
            keep = (sampled(request_id, rate) if request_id is not None
                    else self._rng.random() < rate)
            if not keep:
                return
            self._counts["sampled"] += 1
            if not context or not context.strip():
                self._counts["skipped_no_context"] += 1
                return
            if self._in_flight >= self._cfg.max_in_flight:
                self._counts["dropped"] += 1
                return
            self._in_flight += 1
            actor = self._actors[self._next]
            self._next = (self._next + 1) % len(self._actors)
        try:
            ref = actor.evaluate.remote(EvalItem(model_version, context, response, question))
            ref.future().add_done_callback(self._done)
        except Exception as exc:  # never fail a request because of the evaluator
            with self._lock:
                self._in_flight -= 1
                self._counts["failed"] += 1
            log.warning("hallucination evaluator: submit failed: %s", exc)
            return
        with self._lock:
            self._counts["submitted"] += 1

    def _done(self, future: Any) -> None:
        failed = future.cancelled() or future.exception() is not None
        with self._lock:
            self._in_flight -= 1
            if failed:
                self._counts["failed"] += 1

    def stats(self) -> PoolStats:
        with self._lock:
            c = self._counts
            return PoolStats(seen=c["seen"], sampled=c["sampled"],
                             skipped_no_context=c["skipped_no_context"],
                             submitted=c["submitted"], dropped=c["dropped"], failed=c["failed"],
                             in_flight=self._in_flight)

    async def flush(self, timeout_s: float = 30.0) -> list[dict[str, int]]:
        """Wait for calls in flight, then make every actor score and deliver what it holds;
        returns each actor's counters."""
        deadline = time.monotonic() + timeout_s
        while self.stats().in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        refs = [a.flush.remote() for a in self._actors]
        return list(await asyncio.wait_for(asyncio.gather(*refs), max(0.1, deadline
                                                                        - time.monotonic())))

    def close(self) -> None:
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception as exc:  # already gone
                log.debug("hallucination evaluator: kill failed: %s", exc)
        self._actors = []
