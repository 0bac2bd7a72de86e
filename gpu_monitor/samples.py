"""Readings that leave gpu_monitor: frozen values, safe to share across threads and actors.

A field the source could not read is ``None``, never 0: a guard must be able to tell
"nothing measured" from "measured zero".
"""

from __future__ import annotations

from dataclasses import dataclass

CPU_DEVICE = "cpu"


def cuda_device_label(index: int) -> str:
    """Label of an NVIDIA device by its NVML index (``cuda:0``...).

    NVML numbers devices in PCI bus order and ignores CUDA_VISIBLE_DEVICES, so this index can
    differ from a process's own ``torch.device("cuda", i)``; match on ``uuid`` when it matters.
    """
    return f"cuda:{index}"


@dataclass(frozen=True, slots=True)
class DeviceSample:
    """One device at one moment. ``device`` is ``"cuda:<nvml index>"`` or ``"cpu"``."""

    device: str
    index: int
    name: str
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    timestamp: float
    uuid: str | None = None

    @property
    def memory_fraction(self) -> float | None:
        """Used / total in [0, 1], or None when either is unknown."""
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return self.memory_used_bytes / self.memory_total_bytes


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """Memory one process holds on one device (GPU memory, or resident memory for ``"cpu"``).

    ``memory_used_bytes`` is None where the driver does not expose it (e.g. Windows WDDM).
    """

    device: str
    pid: int
    memory_used_bytes: int | None
    timestamp: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one ``GpuSource.sample`` call saw; ``source`` is the source's ``name``."""

    devices: tuple[DeviceSample, ...]
    processes: tuple[ProcessSample, ...]
    source: str
    timestamp: float

    def device(self, label: str) -> DeviceSample | None:
        """The sample of the device labelled ``label`` (``"cuda:0"``, ``"cpu"``), if any."""
        return next((d for d in self.devices if d.device == label), None)

    def for_pid(self, pid: int) -> tuple[ProcessSample, ...]:
        """Every per-device sample of ``pid`` (a process may use several GPUs)."""
        return tuple(p for p in self.processes if p.pid == pid)

    def process_memory_bytes(self, pid: int) -> int | None:
        """Memory ``pid`` holds summed over devices; None if it was not seen or not readable."""
        values = [p.memory_used_bytes for p in self.for_pid(pid)]
        if not values or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)
