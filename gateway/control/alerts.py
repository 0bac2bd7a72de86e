"""Alerts about rollout decisions: notifiers built from config and a dispatcher that never
blocks or fails its caller.

The supervisor calls `AlertDispatcher.dispatch(alert)` from its event loop, after traffic is
already back on the champion: dispatch only enqueues (microseconds). Each notifier has its
own bounded queue and worker thread, so a slow or failing destination delays nothing else,
not even the other notifiers. Payload formats live in gateway/control/notifiers/ (one file each).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.configschema import load
from core.errors import ConfigError
from core.logs import get_logger
from gateway.config import AlertSpec
from gateway.control.notifiers.base import (
    SEVERITIES,
    Alert,
    AlertError,
    Notifier,
    severity_at_least,
)
from gateway.control.notifiers.factory import NOTIFIERS, make_notifier, make_notifiers

__all__ = [
    "NOTIFIERS",
    "SEVERITIES",
    "Alert",
    "AlertDispatcher",
    "AlertError",
    "AlertSpec",
    "Delivery",
    "Notifier",
    "NotifierStats",
    "build_dispatcher",
    "make_notifier",
    "make_notifiers",
    "parse_alert_specs",
    "rollout_alert",
]

log = get_logger(__name__)

DEFAULT_QUEUE_SIZE = 100
DEFAULT_HISTORY = 200


def parse_alert_specs(raw: Any, path: str = "alerts") -> tuple[AlertSpec, ...]:
    """Validate config `alerts:` (a list of mappings); ConfigError names e.g. `alerts[1].url`."""
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{path}: must be a list of notifiers")
    return tuple(load(AlertSpec, item, f"{path}[{i}]") for i, item in enumerate(raw))


def build_dispatcher(specs: Sequence[AlertSpec], path: str = "alerts",
                     queue_size: int = DEFAULT_QUEUE_SIZE) -> AlertDispatcher:
    """Notifiers for every config entry behind one dispatcher (all built first, so a bad
    entry fails at start before any worker thread exists)."""
    return AlertDispatcher(make_notifiers(specs, path), queue_size=queue_size)


_VERBS = {
    "rollback": "rolled back",
    "rollback_and_alert": "rolled back",
    "rollback_and_scale": "rolled back (champion scaled up)",
    "manual_rollback": "rolled back by an operator",
    "promoted": "promoted",
    "load_failed": "failed to load; rollout failed",
    "failed": "rollout failed",
    "pause": "rollout paused",
    "paused": "rollout paused",
    "alert_only": "breached a guard (alert only)",
}
_DEFAULT_SEVERITY = {"promoted": "info", "load_failed": "high", "failed": "high",
                     "manual_rollback": "medium", "pause": "medium", "paused": "medium",
                     "alert_only": "medium"}


def rollout_alert(
    *,
    model: str,
    action: str,
    rollout_id: str | None = None,
    champion_version: str | None = None,
    challenger_version: str | None = None,
    reason: str = "",
    verdict: Mapping[str, Any] | None = None,
    severity: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Alert:
    """A consistently worded Alert for a rollout decision. Severity: `severity`, else the
    verdict's, else a default per action (critical for rollbacks, info for promotions).
    The verdict (per-guard evidence) goes into `details["verdict"]`."""
    who = f"challenger v{challenger_version}" if challenger_version else "challenger"
    title = f"champion-gateway: {model} {who} {_VERBS.get(action, action)}"
    verdict_reasons = tuple(str(r) for r in (verdict or {}).get("reasons") or ())
    reasons = verdict_reasons or ((reason,) if reason else ())
    chosen = severity or (verdict or {}).get("severity") or _DEFAULT_SEVERITY.get(
        action, "critical")
    extra = dict(details or {})
    if verdict is not None:
        extra["verdict"] = dict(verdict)
    return Alert(title=title, severity=str(chosen), summary=reason or "; ".join(reasons) or title,
                 model=model, rollout_id=rollout_id, champion_version=champion_version,
                 challenger_version=challenger_version, action=action, reasons=reasons,
                 details=extra)


@dataclass(frozen=True)
class NotifierStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0  # queue full: the oldest waiting alert was discarded
    filtered: int = 0  # below the notifier's min_severity
    queued: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class Delivery:
    """The outcome of one alert at one notifier (kept for tests and admin views)."""

    notifier: str
    title: str
    ok: bool
    error: str | None
    time: float
    duration_s: float


class AlertDispatcher:
    """Fans alerts out to notifiers without ever blocking or raising in the caller.

    `dispatch` filters by each notifier's `min_severity` and enqueues; one daemon worker
    thread per notifier sends in order. A full queue drops its oldest alert (logged), since
    the newest decision matters most. Failures are logged with the notifier's name and
    counted in `stats()`; nothing propagates to the caller.
    """

    def __init__(self, notifiers: Sequence[Notifier], *, queue_size: int = DEFAULT_QUEUE_SIZE,
                 history: int = DEFAULT_HISTORY) -> None:
        if queue_size < 1:
            raise ConfigError(f"alert queue size must be >= 1, got {queue_size}")
        self._lock = threading.Lock()
        self._stats: dict[str, NotifierStats] = {}
        self._history: deque[Delivery] = deque(maxlen=history)
        self._closed = False
        self._lanes: list[_Lane] = []
        for notifier in notifiers:
            name = _unique(notifier.name, self._stats)
            self._stats[name] = NotifierStats()
            self._lanes.append(_Lane(name, notifier, queue_size, self._record))

    @property
    def notifier_names(self) -> list[str]:
        return [lane.name for lane in self._lanes]

    def dispatch(self, alert: Alert) -> None:
        """Enqueue `alert` for every notifier that wants its severity; returns at once and
        never raises."""
        try:
            self._dispatch(alert)
        except Exception:  # never let alerting break the caller's decision path
            log.exception("alert dispatch failed for %r", getattr(alert, "title", alert))

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queue is empty and no send is in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        return all([lane.wait_idle(deadline) for lane in self._lanes])

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting alerts, give queued ones up to `timeout_s` to go out, then stop
        the workers and close the notifiers whose worker finished."""
        with self._lock:
            self._closed = True
        deadline = time.monotonic() + timeout_s
        for lane in self._lanes:
            lane.close(deadline)

    def stats(self) -> dict[str, NotifierStats]:
        with self._lock:
            return {lane.name: replace(self._stats[lane.name], queued=lane.queued)
                    for lane in self._lanes}

    def deliveries(self) -> list[Delivery]:
        """Recent outcomes, oldest first (bounded)."""
        with self._lock:
            return list(self._history)

    @property
    def sent(self) -> list[Delivery]:
        """Recent successful deliveries, oldest first."""
        return [d for d in self.deliveries() if d.ok]

    def _dispatch(self, alert: Alert) -> None:
        with self._lock:
            closed = self._closed
        if closed:
            log.warning("alert %r not sent: the dispatcher is closed", alert.title)
            return
        for lane in self._lanes:
            if not severity_at_least(alert.severity, lane.notifier.min_severity):
                self._count(lane.name, filtered=1)
                continue
            dropped = lane.put(alert)
            if dropped is not None:
                self._count(lane.name, dropped=1)
                log.warning("alert queue of notifier %s is full: dropped the oldest alert %r",
                             lane.name, dropped.title)

    def _count(self, name: str, **add: int) -> None:
        with self._lock:
            old = self._stats[name]
            self._stats[name] = replace(old, **{k: getattr(old, k) + v for k, v in add.items()})

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            old = self._stats[delivery.notifier]
            if delivery.ok:
                self._stats[delivery.notifier] = replace(old, delivered=old.delivered + 1)
            else:
                self._stats[delivery.notifier] = replace(old, failed=old.failed + 1,
                                                         last_error=delivery.error)
            self._history.append(delivery)


class _Lane:
    """One notifier's bounded queue and the worker thread that drains it."""

    def __init__(self, name: str, notifier: Notifier, capacity: int,
                 record: Callable[[Delivery], None]) -> None:
        self.name = name
        self.notifier = notifier
        self._record = record
        self._capacity = capacity
        self._queue: deque[Alert] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"alerts:{name}", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def put(self, alert: Alert) -> Alert | None:
        """Enqueue; returns the alert dropped to make room, if any."""
        with self._cond:
            dropped = self._queue.popleft() if len(self._queue) >= self._capacity else None
            self._queue.append(alert)
            self._cond.notify_all()
        return dropped

    def wait_idle(self, deadline: float) -> bool:
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, deadline: float) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            log.warning("alert notifier %s still sending at close; abandoning %d queued",
                         self.name, self.queued)
            return
        closer = getattr(self.notifier, "close", None)
        if callable(closer):
            try:
                closer()
            except Exception:
                log.exception("closing alert notifier %s failed", self.name)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return  # closed and drained
                alert = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(alert)
            except Exception:  # keep the worker alive whatever happens
                log.exception("alert notifier %s: unexpected error", self.name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, alert: Alert) -> None:
        start = time.monotonic()
        error: str | None = None
        try:
            self.notifier.send(alert)
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            log.warning("alert %r to notifier %s failed: %s", alert.title, self.name, error)
        self._record(Delivery(self.name, alert.title, error is None, error, time.time(),
                              time.monotonic() - start))


def _unique(name: str, taken: Mapping[str, Any]) -> str:
    if name not in taken:
        return name
    n = 2
    while f"{name}#{n}" in taken:
        n += 1
    return f"{name}#{n}"
