from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_monitor import CpuSource, GpuSourceUnavailable


def _fake_proc(root: Path, pids: dict[int, str]) -> Path:
    (root / "meminfo").write_text("MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:  250 kB\n")
    (root / "stat").write_text("cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 10 0 10 80 0 0 0 0 0 0\n")
    for pid, status in pids.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "status").write_text(status)
    return root


def test_reads_vmrss_and_meminfo_and_skips_zombies_and_gone_pids(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        {
            10: "Name:\tworker\nVmPeak:\t 9000 kB\nVmRSS:\t  2048 kB\n",
            11: "Name:\tzombie\nState:\tZ (zombie)\n",  # no VmRSS line
        },
    )
    snap = CpuSource(proc_root=proc).sample([10, 11, 12, 10])
    assert [(p.device, p.pid, p.memory_used_bytes) for p in snap.processes] == [
        ("cpu", 10, 2048 * 1024)
    ]
    (dev,) = snap.devices
    assert (dev.device, dev.memory_total_bytes, dev.memory_used_bytes) == (
        "cpu",
        1000 * 1024,
        750 * 1024,
    )
    assert dev.temperature_c is None and dev.power_w is None


def test_cpu_utilization_is_none_first_then_from_the_delta(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, {})
    source = CpuSource(proc_root=proc)
    assert source.sample([]).devices[0].utilization_pct is None
    # +30 busy (user 20, system 10), +70 idle: 30 % busy.
    (proc / "stat").write_text("cpu  30 0 20 150 0 0 0 0 0 0\n")
    assert source.sample([]).devices[0].utilization_pct == pytest.approx(30.0)


def test_missing_proc_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(GpuSourceUnavailable, match="meminfo"):
        CpuSource(proc_root=tmp_path)


def test_real_proc_total_matches_physical_pages_and_own_rss_is_plausible() -> None:
    snap = CpuSource().sample([os.getpid()])
    (dev,) = snap.devices
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert dev.memory_total_bytes == pytest.approx(physical, rel=0.01)
    assert dev.memory_used_bytes is not None and 0 < dev.memory_used_bytes < physical
    rss = snap.process_memory_bytes(os.getpid())
    assert rss is not None and 10 << 20 < rss < physical


def test_exited_pid_is_skipped() -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = int(child.stdout)
    assert CpuSource().sample([gone]).processes == ()
