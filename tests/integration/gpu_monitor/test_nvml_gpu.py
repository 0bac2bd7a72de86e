"""Real NVML readings of this process holding a torch CUDA tensor (needs an NVIDIA GPU)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from gpu_monitor import GpuSourceUnavailable, NvmlSource, Sampler, make_gpu_source

GIB = 1 << 30


def _why_no_gpu() -> str | None:
    try:
        NvmlSource().close()
    except GpuSourceUnavailable as exc:
        return f"no usable NVIDIA driver/GPU: {exc}"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} cannot use CUDA here"
    return None


_NO_GPU = _why_no_gpu()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_NO_GPU is not None, reason=str(_NO_GPU))]


@pytest.fixture
def nvml() -> Iterator[NvmlSource]:
    source = NvmlSource()
    yield source
    source.close()


def test_nvml_reads_this_process_holding_one_gib(nvml: NvmlSource) -> None:
    import torch

    tensor = torch.ones(GIB, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    pid = os.getpid()
    held: int | None = None
    deadline = time.monotonic() + 10  # the driver's accounting can lag a moment
    while time.monotonic() < deadline:
        snap = nvml.sample([pid])
        held = snap.process_memory_bytes(pid)
        if held is not None and held >= GIB:
            break
        time.sleep(0.2)
    listed = [(p.pid, p.memory_used_bytes) for p in nvml.list_processes()]
    assert held is not None, f"pid {pid} not among NVML processes {listed} (PID namespace?)"
    assert held >= GIB
    for proc in snap.for_pid(pid):
        device = snap.device(proc.device)
        assert device is not None and device.memory_used_bytes is not None
        assert device.memory_total_bytes is not None
        assert proc.memory_used_bytes is not None
        assert proc.memory_used_bytes <= device.memory_used_bytes <= device.memory_total_bytes
    assert all(d.device.startswith("cuda:") for d in snap.devices)
    del tensor


def test_auto_picks_nvml_and_sampler_runs_on_it() -> None:
    source = make_gpu_source("auto")
    try:
        assert source.name == "nvml"
        with Sampler(source, interval_s=0.05, pids=[os.getpid()]) as sampler:
            deadline = time.monotonic() + 5
            while len(sampler.history()) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
        assert len(sampler.history()) >= 3 and sampler.error_count == 0
    finally:
        source.close()
