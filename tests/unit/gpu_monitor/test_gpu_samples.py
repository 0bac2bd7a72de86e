from __future__ import annotations

import dataclasses

import pytest

from gpu_monitor import DeviceSample, ProcessSample, Snapshot, cuda_device_label


def _device(used: int | None, total: int | None) -> DeviceSample:
    return DeviceSample("cuda:0", 0, "gpu", used, total, None, None, None, 1.0)


def test_memory_fraction_is_none_when_a_side_is_unknown() -> None:
    assert _device(None, 100).memory_fraction is None
    assert _device(10, None).memory_fraction is None
    assert _device(10, 0).memory_fraction is None
    assert _device(25, 100).memory_fraction == pytest.approx(0.25)


def test_samples_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _device(1, 2).memory_used_bytes = 3  # type: ignore[misc]


def test_process_memory_sums_devices_and_never_invents_a_number() -> None:
    snap = Snapshot(
        devices=(_device(1, 2),),
        processes=(
            ProcessSample("cuda:0", 7, 100, 1.0),
            ProcessSample("cuda:1", 7, 50, 1.0),
            ProcessSample("cuda:0", 8, None, 1.0),
        ),
        source="nvml",
        timestamp=1.0,
    )
    assert snap.process_memory_bytes(7) == 150
    assert snap.process_memory_bytes(8) is None  # unreadable stays unknown, not 0
    assert snap.process_memory_bytes(9) is None  # not seen
    assert len(snap.for_pid(7)) == 2
    assert snap.device("cuda:0") is not None and snap.device("cpu") is None
    assert cuda_device_label(3) == "cuda:3"
