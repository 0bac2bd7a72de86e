"""Keep a local copy of the supervisor's RoutingTable, updated by long-poll.

Replicas read `current` on every request (no remote call). One pending `wait_for_table` call
per replica returns as soon as the supervisor publishes a new version, so a rollback reaches
every replica within milliseconds. If the supervisor is down, the replica keeps serving with
its last table and retries in the background; nothing on the request path waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from core.logs import get_logger
from gateway.wire.routing import RoutingTable

log = get_logger(__name__)

OnChange = Callable[[RoutingTable], Awaitable[None] | None]


class TableWatcher:
    def __init__(self, supervisor: Any, initial: RoutingTable, *, poll_timeout_s: float = 30.0,
                 on_change: OnChange | None = None,
                 on_new_supervisor: Callable[[], None] | None = None) -> None:
        self._sup = supervisor
        self.current = initial
        self._poll_timeout_s = poll_timeout_s
        self._on_change = on_change
        # Called when the supervisor answering is another instance than before (it
        # restarted and lost what it held in memory).
        self._on_new_supervisor = on_new_supervisor
        self.supervisor: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                raw = await self._sup.wait_for_table.remote(self.current.version,
                                                            self._poll_timeout_s,
                                                            self.supervisor)
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # supervisor restarting or gone: keep the last table
                log.warning("supervisor unreachable (%s); serving with table v%d",
                            type(exc).__name__, self.current.version)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if raw is not None:
                self.saw_supervisor(raw.get("supervisor"))
                await self.apply(RoutingTable.from_dict(raw))

    def saw_supervisor(self, instance: str | None) -> None:
        """Note which supervisor instance answered; tell the owner when it changed."""
        if instance is None or instance == self.supervisor:
            return
        restarted = self.supervisor is not None
        self.supervisor = instance
        if restarted and self._on_new_supervisor is not None:
            self._on_new_supervisor()

    async def apply(self, table: RoutingTable) -> None:
        """Adopt `table` if it is newer than the current one (versions only move forward)."""
        if table.version <= self.current.version:
            return
        self.current = table
        if self._on_change is not None:
            result = self._on_change(table)
            if asyncio.iscoroutine(result):
                await result
