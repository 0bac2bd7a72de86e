"""A GPU stand-in for the batching benchmark on machines without one (benchmarks only).

`DeviceBound` wraps a real torch model: every call runs the model's real forward pass, then
holds a device for `device_ms`, one call at a time. That is what a GPU forward pass of a
mid-size model looks like from the host: about the same time for 1 row as for 64 (launch-
and memory-bound), calls on one device not overlapping, and the host's CPU idle meanwhile
(the wait is a sleep, not a spin). Replicas unpickle it by importing this module.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch

_DEVICE = threading.Lock()  # one device per process: calls take turns, as kernels on a GPU


class DeviceBound(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, device_ms: float) -> None:
        super().__init__()
        self.inner = inner
        self.device_ms = float(device_ms)

    def forward(self, x: torch.Tensor) -> Any:
        out = self.inner(x)
        with _DEVICE:
            time.sleep(self.device_ms / 1000.0)
        return out
