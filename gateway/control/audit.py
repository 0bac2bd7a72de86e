"""The record of every rollout decision: an append-only JSONL audit log.

Appending is blocking I/O (an fsync): from an event loop, call it through
`asyncio.to_thread` (`AuditLog.append_async` does). The MLflow run of each rollout lives in
`gateway.control.rollout_run`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import GatewayError
from core.logs import get_logger
from gateway.control.notifiers.base import iso_time, jsonable

__all__ = [
    "AuditError",
    "AuditLog",
    "AuditRecord",
]

log = get_logger(__name__)


class AuditError(GatewayError):
    """The audit log could not be written, or a record is malformed; names the path."""


@dataclass(frozen=True)
class AuditRecord:
    """One decision: what happened (`event`), who or what decided (`actor`), when, the
    phase and routing-table versions before and after, and the verdict with its evidence.

    Events: rollout_started, step_advanced, rolled_back, promoted, paused, resumed,
    load_failed, manual_rollback, ... Actors: supervisor, admin-api, cli.
    """

    time: float
    event: str
    actor: str
    model: str
    rollout_id: str | None = None
    phase_from: str | None = None
    phase_to: str | None = None
    table_version_from: int | None = None
    table_version_to: int | None = None
    champion_version: str | None = None
    challenger_version: str | None = None
    reason: str = ""
    verdict: Mapping[str, Any] | None = None  # Verdict.to_dict(): per-guard evidence
    details: Mapping[str, Any] = field(default_factory=dict)  # e.g. weights, alert targets

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = jsonable({f.name: getattr(self, f.name)
                                        for f in dataclasses.fields(self)})
        out["timestamp"] = iso_time(self.time)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        """The record in `data` (extra keys, such as `timestamp`, are ignored);
        AuditError when a required field is missing or has the wrong type."""
        if not isinstance(data, Mapping):
            raise AuditError(f"audit record must be a JSON object, got {type(data).__name__}")
        for name, kinds in _REQUIRED.items():
            value = data.get(name)
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise AuditError(f"audit record field {name!r}: missing or not a "
                                 f"{kinds[0].__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("table_version_from", "table_version_to"):
            if values.get(name) is not None and not isinstance(values[name], int):
                raise AuditError(f"audit record field {name!r}: not an integer")
        values["time"] = float(values["time"])
        values["reason"] = values.get("reason") or ""
        values["details"] = values.get("details") or {}
        return cls(**values)


_REQUIRED: dict[str, tuple[type, ...]] = {
    "time": (float, int), "event": (str,), "actor": (str,), "model": (str,)}


class AuditLog:
    """Append-only JSONL: one record per line, fsynced before `append` returns.

    Never rewrites: each append is one `write` to a file opened with O_APPEND. A line torn
    by a crash mid-write is skipped by `read`, and the next append starts on a fresh line so
    the torn bytes never corrupt a later record. Thread-safe within a process.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(f"audit log {self.path}: cannot create its directory: {exc}") from exc

    def append(self, record: AuditRecord) -> None:
        """Write `record` as one line and fsync it; AuditError naming the path on failure."""
        line = json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"))
        data = (line + "\n").encode()
        with self._lock:
            try:
                self._write(data)
            except OSError as exc:
                raise AuditError(f"audit log {self.path}: append failed: {exc}") from exc

    async def append_async(self, record: AuditRecord) -> None:
        """`append` on a worker thread, for callers on an event loop."""
        await asyncio.to_thread(self.append, record)

    def read(self, rollout_id: str | None = None) -> list[AuditRecord]:
        """Every intact record, oldest first (only `rollout_id`'s when given). Unreadable
        lines (a torn last line after a crash) are skipped with a warning."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditError(f"audit log {self.path}: cannot read: {exc}") from exc
        records = []
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            record = self._parse(line, number, torn=number == len(lines))
            if record is not None and (rollout_id is None or record.rollout_id == rollout_id):
                records.append(record)
        return records

    def _parse(self, line: bytes, number: int, torn: bool) -> AuditRecord | None:
        try:
            return AuditRecord.from_dict(json.loads(line))
        except (ValueError, TypeError, AuditError) as exc:
            what = "torn last line (interrupted write)" if torn else "unreadable line"
            log.warning("audit log %s: skipping %s %d: %s", self.path, what, number, exc)
            return None

    def _write(self, data: bytes) -> None:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if not created and _ends_torn(fd):
                data = b"\n" + data
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)  # so the new file's entry survives a crash too


def _ends_torn(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the data itself is synced
    finally:
        os.close(fd)
