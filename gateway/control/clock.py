"""The control plane's time source, injected so tests can drive it by hand.

`time()` stamps rollout states, feedback and table versions (wall clock, comparable across
restarts); `monotonic()` paces periodic work; `sleep()` paces the control loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals only)."""
        ...

    async def sleep(self, seconds: float) -> None:
        ...


class SystemClock:
    """The real clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
