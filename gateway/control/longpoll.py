"""The live RoutingTable and its long-poll: ingress and slot replicas ask for a version newer
than the one they hold and get it the moment it is published (or None at their timeout, and
then simply ask again).
"""

from __future__ import annotations

import asyncio

from gateway.control.clock import Clock, SystemClock
from gateway.wire.routing import RoutingTable

__all__ = ["TableHost", "next_version"]


def next_version(previous: int, now: float) -> int:
    """Table versions are wall-clock milliseconds (`now` in seconds), forced monotonic, so a
    restarted supervisor never publishes a version that replicas already consider old."""
    return max(previous + 1, int(now * 1000))


class TableHost:
    """Holds the published table. Not thread-safe: use it from one event loop."""

    def __init__(self, table: RoutingTable, clock: Clock | None = None) -> None:
        self._table = table
        self._clock: Clock = SystemClock() if clock is None else clock
        # Created lazily so it binds the loop that waits on it (an actor's __init__ may run
        # outside it); replaced after each publish so every waiter wakes exactly once.
        self._changed: asyncio.Event | None = None

    @property
    def table(self) -> RoutingTable:
        return self._table

    def publish(self, table: RoutingTable) -> RoutingTable | None:
        """Make `table` (its version is ignored) the live one under a new version and wake
        every waiter; None, and nothing published, when only the version would change."""
        if table.evolve(version=0) == self._table.evolve(version=0):
            return None
        self._table = table.evolve(version=next_version(self._table.version,
                                                        self._clock.time()))
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return self._table

    async def wait_newer(self, known_version: int, timeout_s: float) -> RoutingTable | None:
        """The table as soon as its version is newer than `known_version`; None after
        `timeout_s` on the host's clock."""
        if self._table.version > known_version:
            return self._table
        waiter = asyncio.ensure_future(self._until_newer(known_version))
        timer = asyncio.ensure_future(self._clock.sleep(timeout_s))
        try:
            await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when the caller goes away (the replica's call is cancelled)
            waiter.cancel()
            timer.cancel()
        return self._table if self._table.version > known_version else None

    async def _until_newer(self, known_version: int) -> None:
        while self._table.version <= known_version:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
