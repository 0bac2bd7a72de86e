"""NvmlSource logic against a stand-in `pynvml` module.

There is no NVIDIA driver on the CI machine, so the hardware is simulated by a module that
answers like pynvml (same names, same NVMLError behaviour). The real library is exercised
by tests/integration/gpu_monitor/test_nvml_gpu.py and benchmarks/gpu_check.sh on a GPU.
"""

from __future__ import annotations

import logging
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from gpu_monitor import GpuSourceUnavailable, NvmlSource

GIB = 1 << 30


class NVMLError(Exception):
    pass


@dataclass
class _Proc:
    pid: int
    usedGpuMemory: int | None  # pynvml's field name


@dataclass
class _Board:
    name: bytes
    used: int
    total: int
    util: int | None
    temp: int | None
    milliwatts: int | None
    procs: list[_Proc] = field(default_factory=list)
    mig: list[list[_Proc]] = field(default_factory=list)


def _fake_pynvml(boards: list[_Board], init_error: bool = False) -> types.ModuleType:
    """A module that answers like pynvml for `boards`; absent readings raise NVMLError."""
    mod = types.ModuleType("pynvml")
    calls: dict[str, int] = {"init": 0, "shutdown": 0}
    mig_handles = {
        (b, i): procs for b, board in enumerate(boards) for i, procs in enumerate(board.mig)
    }

    def need(value: Any) -> Any:
        if value is None:
            raise NVMLError("Not Supported")
        return value

    def init() -> None:
        calls["init"] += 1
        if init_error:
            raise NVMLError("Driver Not Loaded")

    def procs_of(handle: Any) -> list[_Proc]:
        if isinstance(handle, tuple):
            return mig_handles[handle]
        if boards[handle].mig:  # a MIG parent does not list its instances' processes
            raise NVMLError("Not Supported")
        return boards[handle].procs

    def mig_handle(handle: int, i: int) -> tuple[int, int]:
        if (handle, i) not in mig_handles:
            raise NVMLError("Not Found")
        return (handle, i)

    mod.__dict__.update(
        NVMLError=NVMLError,
        NVML_TEMPERATURE_GPU=0,
        NVML_DEVICE_MIG_ENABLE=1,
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1),
        nvmlDeviceGetCount=lambda: len(boards),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: boards[h].name,
        nvmlDeviceGetUUID=lambda h: f"GPU-{h}",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(
            used=boards[h].used, total=boards[h].total
        ),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(
            gpu=need(boards[h].util), memory=0
        ),
        nvmlDeviceGetTemperature=lambda h, sensor: need(boards[h].temp),
        nvmlDeviceGetPowerUsage=lambda h: need(boards[h].milliwatts),
        nvmlDeviceGetComputeRunningProcesses=procs_of,
        nvmlDeviceGetMigMode=lambda h: [1, 1] if boards[h].mig else [0, 0],
        nvmlDeviceGetMaxMigDeviceCount=lambda h: 7,
        nvmlDeviceGetMigDeviceHandleByIndex=mig_handle,
    )
    return mod


def _install(monkeypatch: pytest.MonkeyPatch, module: types.ModuleType) -> types.ModuleType:
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


def test_reads_every_field_and_converts_milliwatts(monkeypatch: pytest.MonkeyPatch) -> None:
    board = _Board(b"H100", 3 * GIB, 80 * GIB, 42, 55, 123_500, [_Proc(11, 2 * GIB)])
    _install(monkeypatch, _fake_pynvml([board]))
    snap = NvmlSource().sample([11])
    (dev,) = snap.devices
    assert (dev.device, dev.name, dev.uuid) == ("cuda:0", "H100", "GPU-0")
    assert (dev.memory_used_bytes, dev.memory_total_bytes) == (3 * GIB, 80 * GIB)
    assert (dev.utilization_pct, dev.temperature_c) == (42.0, 55.0)
    assert dev.power_w == pytest.approx(123.5)
    assert snap.source == "nvml"
    assert snap.process_memory_bytes(11) == 2 * GIB


def test_one_unreadable_field_is_none_and_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    board = _Board(b"T4", GIB, 16 * GIB, None, 40, None, [_Proc(5, GIB)])
    _install(monkeypatch, _fake_pynvml([board]))
    caplog.set_level(logging.INFO, logger="champion_gateway.gpu_monitor")
    source = NvmlSource()
    for _ in range(3):
        (dev,) = source.sample([5]).devices
        assert dev.power_w is None and dev.utilization_pct is None  # not 0
        assert dev.temperature_c == 40.0 and dev.memory_used_bytes == GIB
    messages = [r.getMessage() for r in caplog.records]
    assert sum("power" in m for m in messages) == 1
    assert sum("utilization" in m for m in messages) == 1


def test_processes_filtered_to_requested_pids_and_unknown_memory_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    boards = [
        _Board(b"a", 0, GIB, 0, 0, 0, [_Proc(1, 100), _Proc(2, None), _Proc(3, 300)]),
        _Board(b"b", 0, GIB, 0, 0, 0, [_Proc(1, 50)]),
    ]
    _install(monkeypatch, _fake_pynvml(boards))
    source = NvmlSource()
    snap = source.sample([1, 2, 99])
    assert sorted((p.device, p.pid, p.memory_used_bytes) for p in snap.processes) == [
        ("cuda:0", 1, 100),
        ("cuda:0", 2, None),
        ("cuda:1", 1, 50),
    ]
    assert snap.process_memory_bytes(1) == 150
    assert source.sample([]).processes == ()
    assert {p.pid for p in source.list_processes()} == {1, 2, 3}


def test_mig_instances_are_queried_for_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    board = _Board(b"H100", 0, GIB, None, 30, 1000, mig=[[_Proc(7, 10)], [_Proc(8, 20)]])
    _install(monkeypatch, _fake_pynvml([board]))
    snap = NvmlSource().sample([7, 8])
    assert sorted((p.pid, p.memory_used_bytes) for p in snap.processes) == [(7, 10), (8, 20)]


def test_init_failure_and_no_device_are_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, _fake_pynvml([_Board(b"x", 0, 1, 0, 0, 0)], init_error=True))
    with pytest.raises(GpuSourceUnavailable, match="nvmlInit failed: Driver Not Loaded"):
        NvmlSource()
    module = _install(monkeypatch, _fake_pynvml([]))
    with pytest.raises(GpuSourceUnavailable, match="no device"):
        NvmlSource()
    assert module.calls["shutdown"] == 1  # what was initialised is shut down again


def test_close_shuts_nvml_down_once(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _install(monkeypatch, _fake_pynvml([_Board(b"x", 0, 1, 0, 0, 0)]))
    source = NvmlSource()
    source.close()
    source.close()
    assert module.calls == {"init": 1, "shutdown": 1}
