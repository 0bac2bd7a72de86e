"""make_gpu_source: the one factory for GpuSource implementations."""

from __future__ import annotations

import threading

from core.errors import ConfigError
from core.logs import get_logger
from gpu_monitor.cpu import CpuSource
from gpu_monitor.errors import GpuSourceUnavailable
from gpu_monitor.nvml import NvmlSource
from gpu_monitor.source import GpuSource

log = get_logger(__name__)

SOURCE_KINDS = ("auto", "nvml", "cpu")

# The CPU fallback is announced once per process, not per source or per sample.
_fallback_lock = threading.Lock()
_fallback_announced = False


def make_gpu_source(kind: str = "auto") -> GpuSource:
    """Build a GpuSource by name.

    - ``"nvml"``: NvmlSource; raises GpuSourceUnavailable saying why if it cannot start.
    - ``"cpu"``: CpuSource (per-process resident memory, ``device="cpu"``).
    - ``"auto"``: NvmlSource when pynvml imports, nvmlInit succeeds and a device is visible;
      otherwise CpuSource, and one log line (once per process) says why.
    Any other name raises ConfigError naming it.
    """
    if kind == "nvml":
        return NvmlSource()
    if kind == "cpu":
        return CpuSource()
    if kind == "auto":
        try:
            return NvmlSource()
        except GpuSourceUnavailable as exc:
            _announce_fallback(str(exc))
            return CpuSource()
    raise ConfigError(
        f"gpu_monitor.source: unknown source {kind!r}; expected one of {SOURCE_KINDS}"
    )


def _announce_fallback(reason: str) -> None:
    global _fallback_announced
    with _fallback_lock:
        if _fallback_announced:
            return
        _fallback_announced = True
    log.warning(
        "gpu_monitor: no NVIDIA GPU readings (%s); using the CPU source: per-process resident "
        "memory labelled device='cpu'",
        reason,
    )
