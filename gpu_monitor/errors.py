"""Errors raised on purpose by gpu_monitor."""

from __future__ import annotations

from core.errors import GatewayError


class GpuSourceUnavailable(GatewayError):
    """The requested source cannot run here (e.g. ``nvml`` without pynvml or NVIDIA driver).

    The message says which source and why.
    """
