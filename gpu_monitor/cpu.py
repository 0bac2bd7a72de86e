"""CpuSource: resident memory of each process, where no NVIDIA driver is present (Linux /proc)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from gpu_monitor.errors import GpuSourceUnavailable
from gpu_monitor.samples import CPU_DEVICE, DeviceSample, ProcessSample, Snapshot

_KIB = 1024


class CpuSource:
    """GpuSource over /proc: per-process VmRSS, device total = MemTotal, labelled ``"cpu"``.

    Device ``memory_used_bytes`` is MemTotal - MemAvailable (what the kernel cannot hand out
    without swapping). ``utilization_pct`` is the busy share of all CPUs since the previous
    ``sample`` call, so it is None on the first one. Temperature and power are None.
    A pid that has exited (or is a zombie, with no RSS) is skipped.
    """

    name = "cpu"

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self._proc = proc_root
        if not (self._proc / "meminfo").is_file():
            raise GpuSourceUnavailable(f"gpu source 'cpu': {self._proc}/meminfo is not readable")
        self._cpu_name = _cpu_model_name(self._proc / "cpuinfo")
        self._last_cpu_times: tuple[int, int] | None = None

    def sample(self, pids: Sequence[int]) -> Snapshot:
        now = time.time()
        processes = tuple(
            ProcessSample(CPU_DEVICE, pid, rss, now)
            for pid in dict.fromkeys(pids)  # de-duplicated, order kept
            if (rss := self.rss_bytes(pid)) is not None
        )
        return Snapshot(
            devices=(self._device_sample(now),),
            processes=processes,
            source=self.name,
            timestamp=now,
        )

    def close(self) -> None:
        """Nothing to release."""

    def rss_bytes(self, pid: int) -> int | None:
        """Resident memory of ``pid`` in bytes, or None if it is gone or has none (zombie)."""
        try:
            status = (self._proc / str(pid) / "status").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        kib = _field_kib(status, "VmRSS:")
        return kib * _KIB if kib is not None else None

    def _device_sample(self, now: float) -> DeviceSample:
        meminfo = (self._proc / "meminfo").read_text()
        total = _field_kib(meminfo, "MemTotal:")
        available = _field_kib(meminfo, "MemAvailable:")
        return DeviceSample(
            device=CPU_DEVICE,
            index=0,
            name=self._cpu_name,
            memory_used_bytes=(total - available) * _KIB
            if total is not None and available is not None
            else None,
            memory_total_bytes=total * _KIB if total is not None else None,
            utilization_pct=self._cpu_utilization(),
            temperature_c=None,
            power_w=None,
            timestamp=now,
        )

    def _cpu_utilization(self) -> float | None:
        times = _cpu_times(self._proc / "stat")
        previous, self._last_cpu_times = self._last_cpu_times, times
        if times is None or previous is None:
            return None
        busy, total = times[0] - previous[0], times[1] - previous[1]
        return 100.0 * busy / total if total > 0 else None


def _field_kib(text: str, key: str) -> int | None:
    """Value of a ``Key:   1234 kB`` line of /proc/meminfo or /proc/<pid>/status."""
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return None


def _cpu_times(stat_path: Path) -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from the first line of /proc/stat."""
    try:
        first = stat_path.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    values = [int(v) for v in first[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
    # already counted in user/nice, so only the first eight fields add up to the total.
    total = sum(values[:8])
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return total - idle, total


def _cpu_model_name(cpuinfo: Path) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"
