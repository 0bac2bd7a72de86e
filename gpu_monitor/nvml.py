"""NvmlSource: per-device and per-process GPU readings through NVML (pynvml).

pynvml is imported lazily so that importing gpu_monitor never needs an NVIDIA stack.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from core.logs import get_logger
from gpu_monitor.errors import GpuSourceUnavailable
from gpu_monitor.samples import DeviceSample, ProcessSample, Snapshot, cuda_device_label

log = get_logger(__name__)

_MILLIWATTS_PER_WATT = 1000.0


def load_pynvml() -> ModuleType:
    """Import pynvml (the module shipped by ``nvidia-ml-py``) or raise GpuSourceUnavailable."""
    try:
        with warnings.catch_warnings():
            # The `pynvml` 13.x package is a shim whose import hook warns once per process.
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml
    except ImportError as exc:
        raise GpuSourceUnavailable(
            "gpu source 'nvml': the pynvml module (package nvidia-ml-py) is not installed"
        ) from exc
    return pynvml


@dataclass(frozen=True)
class _Device:
    index: int
    handle: Any
    name: str
    uuid: str | None
    # Handles to query for processes: the device itself, then its MIG instances if any,
    # because with MIG enabled the parent may not list the processes of its instances.
    process_handles: tuple[Any, ...]


class NvmlSource:
    """GpuSource over NVML. Construct it to initialise NVML once; ``close()`` shuts it down.

    Raises GpuSourceUnavailable when pynvml is missing, nvmlInit fails (no driver) or no
    device is visible. PIDs are the ones NVML reports: inside a container with its own PID
    namespace, some drivers report host PIDs, and then a requested pid is simply absent.
    """

    name = "nvml"

    def __init__(self) -> None:
        self._nvml = load_pynvml()
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:
            raise GpuSourceUnavailable(f"gpu source 'nvml': nvmlInit failed: {exc}") from exc
        self._closed = False
        self._warned: set[str] = set()
        try:
            self._devices = self._discover()
        except self._nvml.NVMLError as exc:
            self.close()
            raise GpuSourceUnavailable(f"gpu source 'nvml': listing devices failed: {exc}") from exc
        if not self._devices:
            self.close()
            raise GpuSourceUnavailable("gpu source 'nvml': NVML sees no device")

    @property
    def device_count(self) -> int:
        return len(self._devices)

    def sample(self, pids: Sequence[int]) -> Snapshot:
        now = time.time()
        wanted = set(pids)
        devices = tuple(self._device_sample(d, now) for d in self._devices)
        processes = tuple(p for d in self._devices for p in self._process_samples(d, now, wanted))
        return Snapshot(devices=devices, processes=processes, source=self.name, timestamp=now)

    def list_processes(self) -> tuple[ProcessSample, ...]:
        """Every compute process NVML lists, whatever its pid (diagnostics, e.g. pid namespaces)."""
        now = time.time()
        return tuple(p for d in self._devices for p in self._process_samples(d, now, None))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            log.debug("nvmlShutdown failed: %s", exc)

    # -- discovery -------------------------------------------------------------------------

    def _discover(self) -> tuple[_Device, ...]:
        nvml = self._nvml
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = self._read(f"name:{index}", nvml.nvmlDeviceGetName, handle)
            uuid = self._read(f"uuid:{index}", nvml.nvmlDeviceGetUUID, handle)
            devices.append(
                _Device(
                    index=index,
                    handle=handle,
                    name=_text(name) if name is not None else f"nvidia:{index}",
                    uuid=_text(uuid) if uuid is not None else None,
                    process_handles=(handle, *self._mig_handles(handle)),
                )
            )
        return tuple(devices)

    def _mig_handles(self, handle: Any) -> list[Any]:
        nvml = self._nvml
        if not hasattr(nvml, "nvmlDeviceGetMigMode"):
            return []
        modes = self._read("mig_mode", nvml.nvmlDeviceGetMigMode, handle, quiet=True)
        if not modes or modes[0] != nvml.NVML_DEVICE_MIG_ENABLE:
            return []
        count = self._read("mig_count", nvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0
        found = (
            self._read(
                "mig_handle", nvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, i, quiet=True
            )
            for i in range(count)
        )
        return [h for h in found if h is not None]

    # -- readings --------------------------------------------------------------------------

    def _device_sample(self, dev: _Device, now: float) -> DeviceSample:
        nvml, h, label = self._nvml, dev.handle, cuda_device_label(dev.index)
        memory = self._read(f"memory:{label}", nvml.nvmlDeviceGetMemoryInfo, h)
        util = self._read(f"utilization:{label}", nvml.nvmlDeviceGetUtilizationRates, h)
        temperature = self._read(
            f"temperature:{label}", nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU
        )
        milliwatts = self._read(f"power:{label}", nvml.nvmlDeviceGetPowerUsage, h)
        return DeviceSample(
            device=label,
            index=dev.index,
            name=dev.name,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            utilization_pct=float(util.gpu) if util is not None else None,
            temperature_c=float(temperature) if temperature is not None else None,
            power_w=milliwatts / _MILLIWATTS_PER_WATT if milliwatts is not None else None,
            timestamp=now,
            uuid=dev.uuid,
        )

    def _process_samples(
        self, dev: _Device, now: float, wanted: set[int] | None
    ) -> Iterable[ProcessSample]:
        label = cuda_device_label(dev.index)
        seen: dict[int, int | None] = {}
        for handle in dev.process_handles:
            procs = self._read(
                f"processes:{label}", self._nvml.nvmlDeviceGetComputeRunningProcesses, handle
            )
            for proc in procs or ():
                pid = int(proc.pid)
                if (wanted is None or pid in wanted) and pid not in seen:
                    used = proc.usedGpuMemory  # None where the driver cannot tell (WDDM)
                    seen[pid] = int(used) if used is not None else None
        return (ProcessSample(label, pid, used, now) for pid, used in seen.items())

    def _read(
        self, what: str, fn: Callable[..., Any], *args: Any, quiet: bool = False
    ) -> Any | None:
        """One NVML call; an NVMLError for one field yields None, not a failed sample."""
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            # Log once per field: an unsupported field (e.g. power on some boards) fails
            # every time and must not flood the log.
            if not quiet and what not in self._warned:
                self._warned.add(what)
                log.info("gpu_monitor: NVML cannot read %s (%s); reporting None", what, exc)
            return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
