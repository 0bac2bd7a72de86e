"""Coalesced runs of an async job: one run at a time, and every caller that asks while one
is in progress shares the next run, which starts as soon as the current one ends.

The supervisor judges this way (`Supervisor.ingest`): a flush that arrives alone is judged at
once (an urgent flush after failures within milliseconds), while the flushes of hundreds of
replicas that arrive during one judge pass cost one more pass between them, not one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["Coalesced"]


class Coalesced:
    """Use from one event loop. `await coalesced()` returns after a run of `job` that started
    after the call (so it saw whatever the caller did before calling), or raises that run's
    exception."""

    def __init__(self, job: Callable[[], Awaitable[None]]) -> None:
        self._job = job
        self._next: asyncio.Future[None] | None = None  # the run not started yet
        self._runner: asyncio.Task[None] | None = None
        self.runs = 0

    async def __call__(self) -> None:
        run = self._next
        if run is None:
            run = self._next = asyncio.get_running_loop().create_future()
            if self._runner is None or self._runner.done():
                self._runner = asyncio.ensure_future(self._run_all())
        # Shielded: a caller that goes away does not cancel the run the others wait for.
        await asyncio.shield(run)

    async def _run_all(self) -> None:
        while (run := self._next) is not None:
            self._next = None
            self.runs += 1
            try:
                await self._job()
            except asyncio.CancelledError:
                run.cancel()
                raise
            except Exception as exc:
                run.set_exception(exc)
                run.exception()  # its waiters get it; no "never retrieved" warning without
            else:
                run.set_result(None)
