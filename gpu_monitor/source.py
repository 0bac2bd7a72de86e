"""The GpuSource extension point: where device and per-process memory readings come from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from gpu_monitor.samples import Snapshot


@runtime_checkable
class GpuSource(Protocol):
    """A reader of device and per-process memory.

    Contract:
    - ``name`` is a short stable identifier (``"nvml"``, ``"cpu"``) copied into every Snapshot.
    - ``sample(pids)`` returns one Snapshot: every device the source sees, and one
      ProcessSample per (requested pid, device) where that pid holds memory. It never blocks
      for long (a few milliseconds; no sleeping, no network), so it is safe to call from a
      sampling thread at sub-second intervals, but it is not meant for a request path.
    - It never reports a made-up number: a field it cannot read is ``None``, never 0, and a
      pid it cannot see (exited, other PID namespace) is simply absent.
    - A failure to read one field or one pid does not fail the whole sample; ``sample`` raises
      only when the source as a whole is broken.
    - ``close()`` releases what the source holds; it is idempotent. ``sample`` after
      ``close`` is not supported.
    - Implementations are safe to call from one thread at a time (the Sampler's).
    """

    name: str

    def sample(self, pids: Sequence[int]) -> Snapshot: ...

    def close(self) -> None: ...
