"""The routing-table long-poll: immediate when newer, else woken by a publish or a
timeout on the host's clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gateway.control.longpoll import TableHost, next_version
from gateway.wire.routing import Mode, RoutingTable
from model_registry.refs import ModelRef
from tests.unit.gateway.control.supervisor_fakes import (
    FakeEffects,
    FakeRegistry,
    ManualClock,
    config,
    supervisor,
)

V1 = ModelRef("fraud", "1", "/models/1")
V2 = ModelRef("fraud", "2", "/models/2")
TABLE = RoutingTable(version=5, champion_slot="a", challenger_slot=None, challenger_weight=0.0,
                     mode=Mode.PINNED, slot_models={"a": V1, "b": None})
CANARY = RoutingTable(version=0, champion_slot="a", challenger_slot="b", challenger_weight=20.0,
                      mode=Mode.SPLIT, slot_models={"a": V1, "b": V2})


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_versions_are_wall_clock_milliseconds_and_never_go_back() -> None:
    assert next_version(0, 1_700_000_000.5) == 1_700_000_000_500
    assert next_version(1_700_000_000_500, 1_700_000_000.5) == 1_700_000_000_501
    assert next_version(10**13, 1.0) == 10**13 + 1  # a clock set back


def test_a_newer_table_is_returned_at_once() -> None:
    async def scenario() -> None:
        host = TableHost(TABLE, ManualClock())
        assert await host.wait_newer(4, timeout_s=30) == TABLE
        assert await host.wait_newer(-1, timeout_s=0) == TABLE

    run(scenario)


def test_a_waiter_is_woken_by_the_next_publish() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        host = TableHost(TABLE, clock)
        waiters = [asyncio.ensure_future(host.wait_newer(5, timeout_s=30)) for _ in range(3)]
        await settle()
        assert not any(w.done() for w in waiters)
        published = host.publish(CANARY)
        assert published is not None and published.version == next_version(5, clock.now)
        assert published.evolve(version=0) == CANARY
        for waiter in waiters:
            assert await waiter == published
        assert clock.sleeping == 0  # the timers were cancelled

    run(scenario)


def test_a_waiter_gets_none_at_its_timeout() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        host = TableHost(TABLE, clock)
        waiter = asyncio.ensure_future(host.wait_newer(5, timeout_s=30))
        await settle()
        clock.advance(29.0)
        await settle()
        assert not waiter.done()
        clock.advance(1.0)
        assert await waiter is None
        # and the next call still sees the next publish
        again = asyncio.ensure_future(host.wait_newer(5, timeout_s=30))
        await settle()
        host.publish(CANARY)
        assert (await again) is not None

    run(scenario)


def test_publishing_the_same_routing_wakes_nobody() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        host = TableHost(TABLE, clock)
        waiter = asyncio.ensure_future(host.wait_newer(5, timeout_s=30))
        await settle()
        assert host.publish(TABLE.evolve(version=99)) is None
        await settle()
        assert not waiter.done() and host.table == TABLE
        clock.advance(30.0)
        assert await waiter is None

    run(scenario)


def test_a_caller_that_goes_away_leaves_nothing_waiting() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        host = TableHost(TABLE, clock)
        waiter = asyncio.ensure_future(host.wait_newer(5, timeout_s=30))
        await settle()
        assert clock.sleeping == 1
        waiter.cancel()
        await settle()
        assert waiter.cancelled() and clock.sleeping == 0

    run(scenario)


def test_the_supervisor_long_poll_uses_the_host() -> None:
    async def scenario() -> None:
        registry, clock = FakeRegistry(), ManualClock()
        v1 = registry.add("1")
        registry.add("2")
        sup = supervisor(config([{"weight": 10.0}]), registry, FakeEffects(), clock, v1)
        current = (await sup.get_table())["version"]
        assert (await sup.wait_for_table(current - 1, 30.0)) is not None
        waiter = asyncio.ensure_future(sup.wait_for_table(current, 30.0))
        await settle()
        assert not waiter.done()
        table = await sup.set_weights(0.0, "shadow")
        got = await waiter
        assert got is not None and got.pop("supervisor")  # which instance answered
        assert got == table and table["version"] > current
        await sup.shutdown()

    run(scenario)


def test_a_caller_that_knew_another_supervisor_instance_gets_the_table_at_once() -> None:
    import asyncio as _asyncio

    from tests.unit.gateway.control.supervisor_fakes import (
        FakeEffects,
        FakeRegistry,
        ManualClock,
        config,
        supervisor,
    )

    async def scenario() -> None:
        registry = FakeRegistry()
        sup = supervisor(config([{"weight": 10.0, "min_requests": 10, "min_duration_s": 1.0}]),
                         registry, FakeEffects(), ManualClock(), registry.add("1"))
        first = await sup.get_table()
        instance = first["supervisor"]
        # (one that knows this instance waits for a newer table, as before: tested above)
        again = await _asyncio.wait_for(sup.wait_for_table(first["version"], 30.0, "before"), 1)
        assert again is not None and again["supervisor"] == instance
        await sup.shutdown()

    _asyncio.run(scenario())
