"""The supervisor: a named, detached Ray actor that owns the RoutingTable.

Ingress and model-slot replicas hold one long-poll call (`wait_for_table`) each; publishing a
new table version wakes them all at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray

from gateway.routing import Mode, RoutingTable

log = logging.getLogger("champion_gateway.supervisor")


def next_version(previous: int) -> int:
    """Table versions are wall-clock milliseconds, forced monotonic, so a restarted
    supervisor never publishes a version that replicas already consider old."""
    return max(previous + 1, time.time_ns() // 1_000_000)


class Supervisor:
    """Owns the routing table (see module doc). Runs as an async actor."""

    def __init__(self, initial_table: dict[str, Any]) -> None:
        table = RoutingTable.from_dict(initial_table)
        self._table = table.evolve(version=next_version(table.version))
        self._changed: asyncio.Condition | None = None
        self._slot_reports: dict[str, dict[str, dict[str, Any]]] = {}

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:  # created lazily so it binds the actor's event loop
            self._changed = asyncio.Condition()
        return self._changed

    async def get_table(self) -> dict[str, Any]:
        return self._table.to_dict()

    async def wait_for_table(self, known_version: int, timeout_s: float) -> dict[str, Any] | None:
        """Return the table as soon as its version is newer than `known_version`, or None
        after `timeout_s` (the caller simply asks again)."""
        cond = self._cond()
        async with cond:
            try:
                await asyncio.wait_for(
                    cond.wait_for(lambda: self._table.version > known_version), timeout_s)
            except TimeoutError:
                return None
        return self._table.to_dict()

    async def publish(self, table: RoutingTable) -> RoutingTable:
        new = table.evolve(version=next_version(self._table.version))
        cond = self._cond()
        async with cond:
            self._table = new
            cond.notify_all()
        log.info("published routing table v%d: %s", new.version, new.to_dict())
        return new

    async def set_weights(self, weight: float, mode: str, actor: str = "admin") -> dict[str, Any]:
        table = await self.publish(self._table.evolve(challenger_weight=weight, mode=Mode(mode)))
        log.info("weights set by %s: challenger_weight=%s mode=%s", actor, weight, mode)
        return table.to_dict()

    async def report_slot(self, slot: str, replica_id: str, report: dict[str, Any]) -> None:
        """A model-slot replica reports what it has loaded and whether it is healthy."""
        self._slot_reports.setdefault(slot, {})[replica_id] = report
        if report.get("healthy") or slot != self._table.challenger_slot:
            return
        # A challenger that fails to load or fails its health check gets no traffic.
        log.warning("challenger slot %s unhealthy on %s: %s", slot, replica_id,
                    report.get("error"))
        await self.publish(self._table.evolve(challenger_weight=0.0, mode=Mode.PINNED))

    async def slot_reports(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self._slot_reports


def get_or_create_supervisor(name: str, namespace: str, initial_table: RoutingTable) -> Any:
    """The one supervisor actor of a gateway app: created if missing, else reused."""
    actor_cls = ray.remote(Supervisor)
    return actor_cls.options(
        name=name, namespace=namespace, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000,
    ).remote(initial_table.to_dict())


def get_supervisor(name: str, namespace: str, wait_s: float = 10.0) -> Any:
    """The supervisor's handle; waits briefly, since its creation is asynchronous."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return ray.get_actor(name, namespace=namespace)
        except ValueError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
