"""Per-node pre-aggregation for the supervisor's two high-volume calls, so its load grows
with nodes, not with ingress replicas.

The ingress replicas of one node flush to their node's `DeltaAggregator` (the signature of
`Supervisor.ingest`); it merges their deltas by version and forwards them, with the served
request ids in order, as one ingest call to the supervisor at a time, on the rule of the
replicas' own `FlushTimer`: every `interval_s`, and within `urgent_s` of a delta in which the
challenger failed in a row (two or more consecutive server errors or timeouts, or nothing
but failures: what must roll back fastest). A lone failure among successes waits the
interval: with hundreds of replicas behind it, a node sees one in almost every interval at
any challenger's baseline error rate, and hurrying for each would cost the supervisor
1/`urgent_s` calls a second per node. A node's replicas so cost the supervisor one call per
`interval_s`, and a failing challenger's flush reaches the judge one local hop (and at most
`urgent_s`) later than directly. A replica's call returns once its flush is merged here (it
is fire-and-forget anyway); a forward that fails is logged and its data dropped, as a
replica's failed flush is.

It also answers the replicas' table long polls (`wait_for_table`, the supervisor's contract)
from one long poll of its own, so a publication costs the supervisor one answer per node;
the same table tells it which version is the challenger.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from core.logs import get_logger
from gateway.control.clock import Clock, SystemClock
from guards.window import ArmWindow, Outcome

__all__ = ["DeltaAggregator", "aggregator_name", "aggregator_prefix", "get_or_create_aggregator"]

log = get_logger(__name__)


class DeltaAggregator:
    """One node's ingress replicas' deltas on their way to `supervisor`, and its table for
    them (`supervisor`: an actor handle, or anything whose `ingest` and `wait_for_table` have
    `.remote(...)` returning an awaitable). An async Ray actor."""

    def __init__(self, supervisor: Any, node_id: str, interval_s: float, urgent_s: float,
                 poll_timeout_s: float = 30.0, clock: Clock | None = None) -> None:
        if interval_s <= 0 or urgent_s <= 0:
            raise ValueError("interval_s and urgent_s must be > 0")
        self._sup = supervisor
        self._id = f"aggregator-{node_id}"
        self._interval_s = interval_s
        self._urgent_s = min(urgent_s, interval_s)
        self._clock: Clock = SystemClock() if clock is None else clock
        self._windows: dict[str, ArmWindow] = {}
        self._ids: list[tuple[str, str]] = []
        self._urged = asyncio.Event()
        self._last_sent = -math.inf
        self._task: asyncio.Task[None] | None = None
        self.received = 0  # replica flushes merged
        self.sent = 0  # calls to the supervisor
        # The supervisor's table as it last answered (with its instance id), and a waiter's
        # event, replaced at each change so every waiter wakes once.
        self._poll_timeout_s = poll_timeout_s
        self._table: dict[str, Any] | None = None
        self._challenger: str | None = None
        self._changed = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def ingest(self, replica_id: str, deltas: dict[str, bytes],
                     request_ids: list[tuple[str, str]] | None = None) -> None:
        """A replica's flush, as `Supervisor.ingest` takes it."""
        self._ensure_watch()
        for version, blob in deltas.items():
            delta = ArmWindow.from_bytes(blob)
            if (self._table is None or version == self._challenger) and _failing(delta):
                self._urged.set()
            window = self._windows.get(version)
            if window is None:
                self._windows[version] = delta
            else:
                window.merge(delta)
        if request_ids:
            self._ids.extend(request_ids)
        self.received += 1
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._forward_all())

    def counts(self) -> dict[str, int]:
        return {"received": self.received, "sent": self.sent}

    async def _forward_all(self) -> None:
        """Forward until nothing is left, one call at a time, each when it is due."""
        while self._windows or self._ids:
            gap = self._urgent_s if self._urged.is_set() else self._interval_s
            wait = self._last_sent + gap - self._clock.monotonic()
            if wait > 0:
                await self._until_due(wait)
                continue  # an urgent delta may have shortened the gap
            self._urged.clear()
            windows, self._windows = self._windows, {}
            ids, self._ids = self._ids, []
            deltas = {v: w.to_bytes() for v, w in windows.items() if not w.is_empty()}
            self._last_sent = self._clock.monotonic()
            self.sent += 1
            try:
                await self._sup.ingest.remote(self._id, deltas, ids)
            except Exception as exc:  # the supervisor restarting: this data is lost
                log.warning("forwarding %d requests' deltas to the supervisor failed: %s",
                            len(ids), exc)

    async def _until_due(self, wait: float) -> None:
        """Sleep `wait` seconds on the clock, or less if a failure arrives meanwhile."""
        if self._urged.is_set():
            await self._clock.sleep(wait)
            return
        sleep = asyncio.ensure_future(self._clock.sleep(wait))
        urged = asyncio.ensure_future(self._urged.wait())
        try:
            await asyncio.wait((sleep, urged), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            urged.cancel()


    # --- the table, for the node's replicas ---------------------------------------------------

    async def wait_for_table(self, known_version: int, timeout_s: float,
                             known_instance: str | None = None) -> dict[str, Any] | None:
        """As `Supervisor.wait_for_table`, from this node's copy of the supervisor's table:
        at once if it is newer than `known_version` or from another supervisor instance than
        `known_instance`, else when it changes, else None after `timeout_s`."""
        self._ensure_watch()
        if not self._newer(known_version, known_instance):
            waiter = asyncio.ensure_future(self._until_newer(known_version, known_instance))
            timer = asyncio.ensure_future(self._clock.sleep(timeout_s))
            try:
                await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                timer.cancel()
        return self._table if self._newer(known_version, known_instance) else None

    def _newer(self, known_version: int, known_instance: str | None) -> bool:
        table = self._table
        return table is not None and (
            int(table["version"]) > known_version
            or (known_instance is not None and table.get("supervisor") != known_instance))

    async def _until_newer(self, known_version: int, known_instance: str | None) -> None:
        while not self._newer(known_version, known_instance):
            await self._changed.wait()

    def _ensure_watch(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch_table())

    async def _watch_table(self) -> None:
        """The aggregator's own long poll of the supervisor (as `TableWatcher`'s)."""
        known, instance, backoff = -1, None, 0.05
        while True:
            try:
                raw = await self._sup.wait_for_table.remote(known, self._poll_timeout_s,
                                                            instance)
                backoff = 0.05
            except Exception as exc:  # restarting or gone: replicas keep the last table
                log.warning("supervisor unreachable (%s); its table is kept",
                            type(exc).__name__)
                await self._clock.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if raw is None:
                continue
            known, instance = int(raw["version"]), raw.get("supervisor")
            self._table = raw
            self._challenger = _challenger_version(raw)
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()


def _failing(delta: ArmWindow) -> bool:
    """Failures in a row, or nothing but failures (see the module doc)."""
    failures = delta.count(Outcome.SERVER_ERROR) + delta.count(Outcome.TIMEOUT)
    return failures > 0 and (delta.max_failure_run >= 2 or failures == delta.n_judged)


def _challenger_version(table: dict[str, Any]) -> str | None:
    slot = table.get("challenger_slot")
    model = (table.get("slot_models") or {}).get(slot) if slot else None
    return str(model["version"]) if model else None


def aggregator_prefix(supervisor_name: str) -> str:
    return f"{supervisor_name}-aggregator-"


def aggregator_name(supervisor_name: str, node_id: str) -> str:
    return aggregator_prefix(supervisor_name) + node_id[:16]


def get_or_create_aggregator(supervisor_name: str, namespace: str, node_id: str,
                             interval_s: float, urgent_s: float,
                             poll_timeout_s: float = 30.0) -> Any:
    """The aggregator of node `node_id` (a Ray node id), pinned to that node: created if
    missing, else reused. Its supervisor handle is the named actor's, which Ray restarts."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    supervisor = ray.get_actor(supervisor_name, namespace=namespace)
    return ray.remote(DeltaAggregator).options(
        name=aggregator_name(supervisor_name, node_id), namespace=namespace,
        lifetime="detached", get_if_exists=True, num_cpus=0, max_restarts=-1,
        max_concurrency=10_000,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(supervisor, node_id, interval_s, urgent_s, poll_timeout_s)
