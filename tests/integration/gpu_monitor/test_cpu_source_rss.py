"""CpuSource reads the real resident memory of a real child process."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gpu_monitor import CpuSource, Sampler

MIB = 1 << 20

# The child allocates `step` MiB, writes one byte per page so the pages are resident (an
# untouched bytearray may stay unbacked), answers "ok", and repeats for each line on stdin.
# It says "ready" once it runs, so no reading sees the pre-exec copy of the parent.
_CHILD = """
import sys
held = []
step = int(sys.argv[1]) << 20
print("ready", flush=True)
for _ in sys.stdin:
    block = bytearray(step)
    block[::4096] = b"\\x01" * len(range(0, step, 4096))
    held.append(block)
    print("ok", flush=True)
"""


class Child:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.pid = proc.pid

    def grow(self) -> None:
        """Allocate and touch one more step; return once it is resident."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("grow\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@contextmanager
def memory_child(step_mib: int) -> Iterator[Child]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(step_mib)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    child = Child(proc)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield child
    finally:
        child.kill()


def _wait_for_samples(sampler: Sampler, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(sampler.history()) < count:
        assert time.monotonic() < deadline, "sampler took too few samples"
        time.sleep(0.005)


def test_rss_of_a_child_holding_200_mib_then_gone_after_kill() -> None:
    source = CpuSource()
    with memory_child(step_mib=200) as child:
        idle = source.sample([child.pid]).process_memory_bytes(child.pid)
        child.grow()
        snap = source.sample([child.pid])
        rss = snap.process_memory_bytes(child.pid)
        assert idle is not None and rss is not None
        assert 150 * MIB <= rss < 2048 * MIB, rss / MIB
        assert rss - idle >= 150 * MIB  # the growth is the allocation, not interpreter noise
        assert snap.processes[0].device == "cpu"
        total = snap.devices[0].memory_total_bytes
        assert total is not None and rss < total
        child.kill()
        assert source.sample([child.pid, os.getpid()]).for_pid(child.pid) == ()


def test_sampler_history_shows_creeping_memory() -> None:
    with memory_child(step_mib=60) as child:
        sampler = Sampler(CpuSource(), interval_s=0.02, history_size=1000, pids=[child.pid])
        with sampler:
            for _ in range(4):
                child.grow()
                # Let the thread take at least two samples after each growth step.
                _wait_for_samples(sampler, len(sampler.history()) + 2)
        readings = [s.process_memory_bytes(child.pid) for s in sampler.history()]
        values = [r for r in readings if r is not None]
        assert len(values) == len(readings) >= 8
        assert values[-1] - values[0] >= 200 * MIB
        # Memory only grows in this child, so the series never drops by more than noise.
        assert all(b >= a - 8 * MIB for a, b in itertools.pairwise(values))
        assert values[-1] == pytest.approx(max(values), abs=8 * MIB)
