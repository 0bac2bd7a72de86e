"""GPU (and CPU fallback) memory readings per device and per process, sampled off the request
path. A library: it may import `core` and nothing else of the project. Importing this
package needs neither pynvml nor an NVIDIA driver.
"""

from gpu_monitor.cpu import CpuSource
from gpu_monitor.errors import GpuSourceUnavailable
from gpu_monitor.factory import SOURCE_KINDS, make_gpu_source
from gpu_monitor.nvml import NvmlSource
from gpu_monitor.sampler import Sampler
from gpu_monitor.samples import (
    CPU_DEVICE,
    DeviceSample,
    ProcessSample,
    Snapshot,
    cuda_device_label,
)
from gpu_monitor.source import GpuSource

__all__ = [
    "CPU_DEVICE",
    "SOURCE_KINDS",
    "CpuSource",
    "DeviceSample",
    "GpuSource",
    "GpuSourceUnavailable",
    "NvmlSource",
    "ProcessSample",
    "Sampler",
    "Snapshot",
    "cuda_device_label",
    "make_gpu_source",
]
