"""A node's DeltaAggregator: its replicas' flushes merged into one supervisor call at a
time, every interval, sooner after challenger failures, nothing lost or reordered; and their
table long polls answered from its own one. A fake supervisor handle, the manual clock; no
Ray."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from gateway.control.aggregator import DeltaAggregator
from gateway.wire.routing import Mode, RoutingTable
from guards.window import ArmWindow, Observation, Outcome
from model_registry.refs import ModelRef
from tests.unit.gateway.control.supervisor_fakes import ManualClock
from tests.unit.guards.helpers import fill

INTERVAL, URGENT = 0.25, 0.05


class Method:
    """An actor method as a handle has it: `.remote(...)` returns an awaitable."""

    def __init__(self, fn: Callable[..., Awaitable[Any]]) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> Awaitable[Any]:
        return self._fn(*args)


class FakeSupervisor:
    """Records each ingest call (`fail`: they raise); answers long polls with `publish`ed
    tables."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, ArmWindow], list[tuple[str, str]]]] = []
        self.fail = False
        self.polls = 0
        self.table: dict[str, Any] | None = None
        self._changed: asyncio.Event | None = None
        self.ingest = Method(self._ingest)
        self.wait_for_table = Method(self._wait_for_table)

    async def _ingest(self, replica_id: str, deltas: dict[str, bytes],
                      request_ids: list[tuple[str, str]]) -> None:
        self.calls.append((replica_id, {v: ArmWindow.from_bytes(b) for v, b in deltas.items()},
                           request_ids))
        if self.fail:
            raise ConnectionError("supervisor restarting (test)")

    async def _wait_for_table(self, known: int, timeout_s: float,
                              instance: str | None) -> dict[str, Any]:
        self.polls += 1
        while (self.table is None or (self.table["version"] <= known
               and instance in (None, self.table["supervisor"]))):
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
        return self.table

    def publish(self, version: int, challenger: str | None = "2",
                instance: str = "sup-1") -> None:
        models = {"a": ModelRef("m", "1", "/m/1"),
                  "b": ModelRef("m", challenger, "/m/2") if challenger else None}
        table = RoutingTable(version=version, champion_slot="a",
                             challenger_slot="b" if challenger else None,
                             challenger_weight=50.0 if challenger else 0.0,
                             mode=Mode.SPLIT if challenger else Mode.PINNED,
                             slot_models=models)
        self.table = {**table.to_dict(), "supervisor": instance}
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def requests(self, version: str) -> int:
        return sum(d[version].n_requests for _, d, _ in self.calls if version in d)


def flush(rng: np.random.Generator, replica: str, k: int, n: int = 20, err: float = 0.0,
          failing: str = "2") -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    deltas = {v: fill(ArmWindow(), n, rng, err=err if v == failing else 0.0).to_bytes()
              for v in ("1", "2")}
    return deltas, [(f"{replica}-{k}-{i}", v) for v in ("1", "2") for i in range(n)]


def aggregator(sup: FakeSupervisor, clock: ManualClock) -> DeltaAggregator:
    return DeltaAggregator(sup, "node-1", INTERVAL, URGENT, clock=clock)


def outcomes(pattern: str, version: str = "2") -> tuple[dict[str, bytes],
                                                      list[tuple[str, str]]]:
    """A flush whose `version` window has these outcomes in order (`.` ok, `x` a server
    error), the other version's as many successes."""
    windows = {v: ArmWindow() for v in ("1", "2")}
    for v, window in windows.items():
        for c in pattern if v == version else "." * len(pattern):
            window.record(Observation(0.05, Outcome.SERVER_ERROR if c == "x" else Outcome.OK))
    return {v: w.to_bytes() for v, w in windows.items()}, []


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_nodes_flushes_go_as_one_call_at_once_then_every_interval() -> None:
    async def scenario() -> None:
        clock, sup, rng = ManualClock(), FakeSupervisor(), np.random.default_rng(1)
        agg = aggregator(sup, clock)
        sent_ids: list[tuple[str, str]] = []
        for r in range(50):
            deltas, ids = flush(rng, f"r{r}", 0)
            sent_ids += ids
            await agg.ingest(f"r{r}", deltas, ids)
        await settle()
        assert len(sup.calls) == 1  # nothing was in flight: at once, all fifty in one
        assert sup.calls[0][0] == "aggregator-node-1"
        assert sup.requests("1") == sup.requests("2") == 50 * 20
        for r in range(50):
            deltas, ids = flush(rng, f"r{r}", 1)
            sent_ids += ids
            await agg.ingest(f"r{r}", deltas, ids)
        await settle()
        clock.advance(INTERVAL - 0.01)
        await settle()
        assert len(sup.calls) == 1  # healthy data waits for the interval
        clock.advance(0.01)
        await settle()
        assert len(sup.calls) == 2
        assert sup.requests("2") == 100 * 20
        assert [i for _, _, ids in sup.calls for i in ids] == sent_ids  # all, in order
        assert agg.counts() == {"received": 100, "sent": 2}

    run(scenario)


def test_challenger_failures_in_a_row_are_forwarded_within_the_urgent_gap() -> None:
    async def scenario() -> None:
        clock, sup, rng = ManualClock(), FakeSupervisor(), np.random.default_rng(2)
        sup.publish(1, challenger="2")
        agg = aggregator(sup, clock)
        await agg.ingest("r0", *flush(rng, "r0", 0))
        await settle()
        assert len(sup.calls) == 1
        clock.advance(0.01)
        # not urgent: the champion failing (the ingress does not hurry for it either), and
        # the challenger's lone failure among successes (its baseline, as likely as not)
        await agg.ingest("r1", *outcomes("..xxx..", version="1"))
        await agg.ingest("r2", *outcomes("...x...x.."))
        await settle()
        clock.advance(URGENT)
        await settle()
        assert len(sup.calls) == 1
        # two in a row: at once, the urgent gap having passed
        await agg.ingest("r3", *outcomes("....xx."))
        await settle()
        clock.advance(0.001)
        await settle()
        assert len(sup.calls) == 2
        assert sup.calls[1][1]["2"].n_server_errors == 4  # r2's two and r3's
        # right after a forward: within the urgent gap, not the interval; and a flush of
        # nothing but a failure (one request) is urgent too
        await agg.ingest("r4", *outcomes("x"))
        await settle()
        clock.advance(URGENT - 0.01)
        await settle()
        assert len(sup.calls) == 2
        clock.advance(0.01)
        await settle()
        assert len(sup.calls) == 3
        # healthy data: back to the interval
        await agg.ingest("r5", *flush(rng, "r5", 1))
        await settle()
        clock.advance(URGENT)
        await settle()
        assert len(sup.calls) == 3
        clock.advance(INTERVAL - URGENT)
        await settle()
        assert len(sup.calls) == 4
        assert sup.requests("2") == 20 + 7 + 10 + 7 + 1 + 20  # every flush, once

    run(scenario)


def test_before_the_first_table_any_versions_failures_in_a_row_are_urgent() -> None:
    async def scenario() -> None:
        clock, sup = ManualClock(), FakeSupervisor()  # it never answers a long poll
        agg = aggregator(sup, clock)
        await agg.ingest("r0", *outcomes("...."))
        await settle()
        await agg.ingest("r1", *outcomes(".xx.", version="1"))
        await settle()
        clock.advance(URGENT)
        await settle()
        assert len(sup.calls) == 2

    run(scenario)


def test_replicas_long_polls_are_answered_from_one_poll_of_the_supervisor() -> None:
    async def scenario() -> None:
        clock, sup = ManualClock(), FakeSupervisor()
        sup.publish(5)
        agg = aggregator(sup, clock)
        first = await agg.wait_for_table(-1, 30.0, None)
        assert first is not None and first["version"] == 5
        waiting = [asyncio.ensure_future(agg.wait_for_table(5, 30.0, "sup-1"))
                   for _ in range(50)]
        await settle()
        assert not any(w.done() for w in waiting)
        sup.publish(6, challenger=None)
        await settle()
        answers = [w.result() for w in waiting]
        assert {a["version"] for a in answers} == {6} and answers[0]["challenger_slot"] is None
        assert sup.polls == 3  # the first, the one answered with v6, the one now open
        # a replica that knew another supervisor instance gets the table at once
        restarted = await agg.wait_for_table(6, 30.0, "sup-0")
        assert restarted is not None and restarted["supervisor"] == "sup-1"
        # nothing new within the timeout: None, on the clock
        late = asyncio.ensure_future(agg.wait_for_table(6, 30.0, "sup-1"))
        await settle()
        clock.advance(30.0)
        await settle()
        assert late.done() and late.result() is None

    run(scenario)


def test_a_failed_forward_is_dropped_and_the_next_goes_through(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        clock, sup, rng = ManualClock(), FakeSupervisor(), np.random.default_rng(3)
        agg = aggregator(sup, clock)
        sup.fail = True
        await agg.ingest("r0", *flush(rng, "r0", 0))
        await settle()
        sup.fail = False
        await agg.ingest("r0", *flush(rng, "r0", 1))
        await settle()
        clock.advance(INTERVAL)
        await settle()
        assert len(sup.calls) == 2
        assert [ids[0][0] for _, _, ids in sup.calls] == ["r0-0-0", "r0-1-0"]

    run(scenario)
    assert "forwarding 40 requests' deltas to the supervisor failed" in caplog.text


def test_gaps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        DeltaAggregator(FakeSupervisor(), "n", 0.0, URGENT)


def test_it_takes_the_supervisors_calls_as_the_supervisor_does() -> None:
    """A replica may call its node's aggregator instead of the supervisor."""
    import inspect

    from gateway.control.supervisor import Supervisor

    def params(cls: type, name: str) -> list[str]:
        # Ray's tracing adds `_ray_trace_ctx` to an actor class's methods in place once
        # `ray.remote` has wrapped it in this process (an e2e test on the same worker).
        return [p for p in inspect.signature(getattr(cls, name)).parameters
                if p != "_ray_trace_ctx"]

    for name in ("ingest", "wait_for_table"):
        assert params(DeltaAggregator, name) == params(Supervisor, name)
