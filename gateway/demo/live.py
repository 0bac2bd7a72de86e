"""The demo's live traffic: `gateway.demo.traffic` at a fixed rate plus a one-line view of the
rollout (phase, weight, guards), refreshed from the admin API while traffic runs."""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.demo.traffic import Answer, Traffic, random_rows


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

    def merge(self, other: TrafficStats) -> None:
        self.arms.update(other.arms)
        self.versions.update(other.versions)
        self.statuses.update(other.statuses)
        self.latencies_ms.extend(other.latencies_ms)

    def add(self, answer: Answer, resp: httpx.Response | None, latency_s: float) -> None:
        self.statuses[answer.status] += 1
        if resp is None:  # a transport error: no latency, no arm
            return
        self.latencies_ms.append(latency_s * 1000)
        self.arms[resp.headers.get("x-gateway-arm", "none")] += 1
        self.versions[resp.headers.get("x-gateway-model-version", "none")] += 1


@dataclass
class Watch:
    """The latest admin view, refreshed while traffic runs, and the last one taken during
    the canary (what `gateway watch` would have shown mid-rollout)."""

    view: dict[str, Any] = field(default_factory=dict)
    canary_view: dict[str, Any] | None = None


async def drive(base_url: str, max_s: float, rate: float, stats: TrafficStats,
                done: Callable[[dict[str, Any]], bool] | None = None,
                admin_headers: dict[str, str] | None = None, seed: int = 0) -> Watch:
    """Send `rate` req/s until `done(view)` is true or `max_s` seconds pass."""
    watch = Watch()
    traffic = Traffic(base_url, rate=rate, max_s=max_s, payload=random_rows(seed),
                      on_answer=stats.add)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, trust_env=False) as client:
        poller = asyncio.ensure_future(_poll(client, watch, admin_headers or {}, stats))
        await traffic.run(stop=lambda: bool(done and watch.view and done(watch.view)))
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        watch.view = await _view(client, admin_headers or {}) or watch.view
    _line(watch.view, stats, final=True)
    return watch


async def _view(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any] | None:
    try:
        resp = await client.get("/admin/rollout", headers=headers)
        return dict(resp.json()) if resp.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def _poll(client: httpx.AsyncClient, watch: Watch, headers: dict[str, str],
                stats: TrafficStats) -> None:
    while True:
        watch.view = await _view(client, headers) or watch.view
        if watch.view.get("phase") == "canary" and watch.view.get("verdict"):
            watch.canary_view = watch.view
        _line(watch.view, stats)
        await asyncio.sleep(0.5)


def _line(view: dict[str, Any], stats: TrafficStats, final: bool = False) -> None:
    table = view.get("table", {})
    step, steps = view.get("step"), view.get("steps") or []
    where = f" {step + 1}/{len(steps)}" if step is not None and steps else ""
    verdict = view.get("verdict") or {}
    guards = " ".join(f"{r['guard']}:{r['state'][:4]}" for r in verdict.get("results", [])
                      if r.get("signal", True) and r["guard"] in _SHOWN)
    weight = table.get("challenger_weight", 0)
    line = (f"\r  {view.get('phase', '?'):<11}{where:<5} weight {weight:>3.0f}%"
            f" | sent {stats.sent:5d} champion {stats.arms['champion']:5d} challenger "
            f"{stats.arms['challenger']:4d} non-2xx {stats.errors} | {guards}")
    sys.stdout.write(line[:160].ljust(160) + ("\n" if final else ""))
    sys.stdout.flush()


_SHOWN = ("error_rate", "latency_p95", "output_drift", "throughput")
