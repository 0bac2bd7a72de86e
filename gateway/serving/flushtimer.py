"""When an ingress replica sends its window deltas to the supervisor.

Regularly every `interval_s`; sooner, `urgent_s` after `urge()` (a failed challenger call:
errors are what must roll back fastest); and never two flushes closer than `urgent_s`, so a
failing challenger is judged at once while a healthy one costs the supervisor only a few
merges a second.
"""

from __future__ import annotations

import asyncio
import contextlib


class FlushTimer:
    def __init__(self, interval_s: float, urgent_s: float) -> None:
        if interval_s <= 0 or urgent_s <= 0:
            raise ValueError("interval_s and urgent_s must be > 0")
        self._gap = urgent_s
        self._wait = max(interval_s - urgent_s, 0.0)
        self._urged = asyncio.Event()

    def urge(self) -> None:
        """Ask for a flush within `urgent_s` (cheap; call it on every failure)."""
        self._urged.set()

    async def next_flush(self) -> None:
        """Return when the next flush is due."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._wait):
                await self._urged.wait()
        # Also the least gap between flushes, and it lets a burst of failures travel in one
        # delta.
        await asyncio.sleep(self._gap)
        self._urged.clear()
