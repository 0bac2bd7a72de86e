"""A bounded load generator for the demo: loopback only, fixed rate, fixed duration."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from gateway.demo.models import N_FEATURES


@dataclass
class TrafficStats:
    arms: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 400)

    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0


async def drive(url: str, duration_s: float, rate: float, stats: TrafficStats,
                progress: bool = True, seed: int = 0) -> TrafficStats:
    """Send `rate` requests per second for `duration_s` seconds (at most), then stop."""
    rng = np.random.default_rng(seed)
    interval = 1.0 / rate
    deadline = time.monotonic() + duration_s
    pending: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(timeout=30.0) as client:
        next_at, last_print = time.monotonic(), 0.0
        while time.monotonic() < deadline:
            body = {"inputs": rng.normal(size=(1, N_FEATURES)).round(4).tolist()}
            task = asyncio.ensure_future(_one(client, url, body, stats))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            if progress and time.monotonic() - last_print >= 1.0:
                last_print = time.monotonic()
                _progress(stats, deadline)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending, return_exceptions=True)
    if progress:
        _progress(stats, deadline, final=True)
    return stats


async def _one(client: httpx.AsyncClient, url: str, body: dict[str, Any],
               stats: TrafficStats) -> None:
    start = time.perf_counter()
    try:
        resp = await client.post(url, json=body)
    except httpx.HTTPError:
        stats.statuses[599] += 1
        return
    stats.latencies_ms.append((time.perf_counter() - start) * 1000)
    stats.statuses[resp.status_code] += 1
    stats.arms[resp.headers.get("x-gateway-arm", "none")] += 1
    stats.versions[resp.headers.get("x-gateway-model-version", "none")] += 1


def _progress(stats: TrafficStats, deadline: float, final: bool = False) -> None:
    left = max(0.0, deadline - time.monotonic())
    line = (f"\r  sent {stats.sent:5d} | champion {stats.arms['champion']:5d} | "
            f"challenger {stats.arms['challenger']:5d} | errors {stats.errors:3d} | "
            f"p50 {stats.p50_ms():6.1f} ms | {left:4.0f}s left ")
    sys.stdout.write(line + ("\n" if final else ""))
    sys.stdout.flush()
