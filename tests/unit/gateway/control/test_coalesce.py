"""Coalesced judge passes: one at a time, callers that ask meanwhile share the next one, and
each caller returns only after a pass that saw what it did before asking. Then the
supervisor itself: many replicas' flushes at once cost a few looks, not one each, and a
failing flush among them is still rolled back before its ingest returns."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from gateway.control.coalesce import Coalesced
from tests.unit.gateway.control.supervisor_fakes import deltas
from tests.unit.gateway.control.test_supervisor import HOLD_10, World, run


class Job:
    """A job that records the `data` it saw at each start and waits for `release`."""

    def __init__(self) -> None:
        self.data: list[int] = []
        self.seen: list[list[int]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.fail = False

    async def __call__(self) -> None:
        self.seen.append(list(self.data))
        self.started.set()
        await self.release.wait()
        if self.fail:
            raise RuntimeError("judge failed")


def test_a_lone_call_runs_at_once() -> None:
    async def scenario() -> None:
        job = Job()
        job.release.set()
        coalesced = Coalesced(job)
        job.data.append(1)
        await coalesced()
        assert job.seen == [[1]] and coalesced.runs == 1

    run(scenario)


def test_calls_during_a_run_share_the_next_one_which_sees_all_their_data() -> None:
    async def scenario() -> None:
        job = Job()
        coalesced = Coalesced(job)
        job.data.append(0)
        first = asyncio.ensure_future(coalesced())
        await job.started.wait()  # the first run is in progress, blocked
        waiters = []
        for i in range(1, 6):
            job.data.append(i)
            waiters.append(asyncio.ensure_future(coalesced()))
        await asyncio.sleep(0)
        assert not any(w.done() for w in (first, *waiters))
        job.release.set()
        await asyncio.gather(first, *waiters)
        # two runs for six calls; the second saw every later caller's data
        assert job.seen == [[0], [0, 1, 2, 3, 4, 5]]
        assert coalesced.runs == 2

    run(scenario)


def test_a_failed_run_raises_in_its_callers_and_the_next_run_is_unaffected() -> None:
    async def scenario() -> None:
        job = Job()
        coalesced = Coalesced(job)
        job.fail = True
        job.release.set()
        results = await asyncio.gather(coalesced(), coalesced(), return_exceptions=True)
        assert [type(r) for r in results] == [RuntimeError, RuntimeError]
        job.fail = False
        await coalesced()
        assert coalesced.runs == 2

    run(scenario)


def test_a_caller_that_goes_away_does_not_cancel_the_run_others_wait_for() -> None:
    async def scenario() -> None:
        job = Job()
        coalesced = Coalesced(job)
        gone = asyncio.ensure_future(coalesced())
        await job.started.wait()
        stays = asyncio.ensure_future(coalesced())
        also_gone = asyncio.ensure_future(coalesced())
        await asyncio.sleep(0)
        gone.cancel()
        also_gone.cancel()
        job.release.set()
        await stays
        assert coalesced.runs == 2
        with pytest.raises(asyncio.CancelledError):
            await gone

    run(scenario)


def test_many_flushes_at_once_cost_a_few_looks_and_all_their_requests_count() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await world.canary(sup)
        looks = (await sup.status())["judge"]["looks_judged"]
        flushes = [deltas(world.v1, world.v2, world.rng, n=50) for _ in range(200)]
        await asyncio.gather(*(sup.ingest(f"ingress-{i}", d) for i, d in enumerate(flushes)))
        status = await sup.status()
        assert status["requests"] == {"champion": 200 * 50, "challenger": 200 * 50}
        assert status["phase"] == "canary"
        # per ingest this was 200 looks: now the first flush's, then one for the rest
        assert status["judge"]["looks_judged"] - looks <= 2
        await sup.shutdown()

    run(scenario)


def test_a_failing_flush_among_many_is_rolled_back_before_its_ingest_returns() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await world.canary(sup)
        rng = np.random.default_rng(3)
        healthy = [asyncio.ensure_future(sup.ingest(f"ingress-{i}", deltas(
            world.v1, world.v2, rng, n=50))) for i in range(100)]
        await sup.ingest("ingress-bad", deltas(world.v1, world.v2, rng, challenger_err=0.5))
        status = await sup.status()
        assert status["phase"] == "rolled_back", status
        assert "error_rate" in status["reason"]
        await asyncio.gather(*healthy)
        await sup.shutdown()

    run(scenario)
