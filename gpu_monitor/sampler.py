"""Sampler: polls a GpuSource on a daemon thread, off any request path."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable

from core.errors import ConfigError
from core.logs import get_logger
from gpu_monitor.samples import Snapshot
from gpu_monitor.source import GpuSource

log = get_logger(__name__)


class Sampler:
    """Samples ``source`` every ``interval_s`` seconds for the pids set with ``set_pids``.

    Keeps the latest Snapshot and the last ``history_size`` ones (oldest first), so a guard
    can spot memory that creeps up. A failing sample is logged (at most once per
    ``error_log_interval_s``, with a count of the ones suppressed) and the thread goes on.
    The Sampler does not own the source: whoever made it closes it after ``stop()``.
    """

    def __init__(
        self,
        source: GpuSource,
        interval_s: float = 1.0,
        history_size: int = 300,
        pids: Iterable[int] = (),
        error_log_interval_s: float = 60.0,
    ) -> None:
        if not interval_s > 0:
            raise ConfigError(f"gpu_monitor.interval_s: must be > 0, got {interval_s!r}")
        if history_size < 1:
            raise ConfigError(f"gpu_monitor.history_size: must be >= 1, got {history_size!r}")
        self._source = source
        self._interval_s = interval_s
        self._error_log_interval_s = error_log_interval_s
        self._lock = threading.Lock()
        self._pids: tuple[int, ...] = tuple(pids)
        self._history: deque[Snapshot] = deque(maxlen=history_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = 0
        self._suppressed = 0
        self._last_error_log = -float("inf")

    @property
    def source(self) -> GpuSource:
        return self._source

    @property
    def error_count(self) -> int:
        """Samples that raised since construction."""
        return self._errors

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def set_pids(self, pids: Iterable[int]) -> None:
        """Replace the pids sampled from the next sample on (e.g. after a replica restart)."""
        with self._lock:
            self._pids = tuple(pids)

    def pids(self) -> tuple[int, ...]:
        with self._lock:
            return self._pids

    def latest(self) -> Snapshot | None:
        """The newest Snapshot, or None before the first successful sample."""
        with self._lock:
            return self._history[-1] if self._history else None

    def history(self) -> tuple[Snapshot, ...]:
        """The kept Snapshots, oldest first."""
        with self._lock:
            return tuple(self._history)

    def sample_now(self) -> Snapshot:
        """Take one sample on the calling thread, record it and return it (raises on failure)."""
        snapshot = self._source.sample(self.pids())
        with self._lock:
            self._history.append(snapshot)
        return snapshot

    def start(self) -> None:
        """Start the sampling thread; a no-op if it is already running."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"gpu-sampler-{self._source.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wait up to ``timeout_s`` for it (one in-flight sample at most)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._sample_logged()
            # Fixed-rate schedule; after a slow sample skip the missed ticks, do not burst.
            next_at += self._interval_s
            now = time.monotonic()
            if next_at < now:
                next_at = now
            self._stop.wait(next_at - now)

    def _sample_logged(self) -> None:
        try:
            self.sample_now()
        except Exception:
            self._errors += 1
            now = time.monotonic()
            if now - self._last_error_log < self._error_log_interval_s:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last_error_log = self._suppressed, 0, now
            log.exception(
                "gpu_monitor: sampling %r failed (%d similar failures suppressed since the last "
                "report)",
                self._source.name,
                suppressed,
            )
