from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from core.errors import ConfigError
from gpu_monitor import CpuSource, Sampler, Snapshot


def _wait_for(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class FlakySource:
    """A GpuSource (real CPU readings) whose every other sample raises."""

    name = "flaky"

    def __init__(self) -> None:
        self._inner = CpuSource()
        self.calls = 0

    def sample(self, pids: Sequence[int]) -> Snapshot:
        self.calls += 1
        if self.calls % 2 == 0:
            raise RuntimeError(f"broken sample {self.calls}")
        return self._inner.sample(pids)

    def close(self) -> None:
        self._inner.close()


def test_bad_settings_are_config_errors_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="interval_s"):
        Sampler(CpuSource(), interval_s=0)
    with pytest.raises(ConfigError, match="history_size"):
        Sampler(CpuSource(), history_size=0)


def test_samples_on_a_daemon_thread_with_bounded_history() -> None:
    sampler = Sampler(CpuSource(), interval_s=0.01, history_size=4, pids=[os.getpid()])
    assert sampler.latest() is None
    sampler.start()
    sampler.start()  # idempotent
    try:
        assert sampler.running
        worker = next(t for t in threading.enumerate() if t.name == "gpu-sampler-cpu")
        assert worker.daemon and worker is not threading.current_thread()
        _wait_for(lambda: len(sampler.history()) == 4 and sampler.history()[-1].timestamp > 0)
        first = sampler.history()[0].timestamp
        _wait_for(lambda: sampler.history()[0].timestamp > first)  # oldest ones drop out
    finally:
        sampler.stop()
    assert not sampler.running
    history = sampler.history()
    assert len(history) == 4
    assert [s.timestamp for s in history] == sorted(s.timestamp for s in history)
    latest = sampler.latest()
    assert latest is history[-1] and latest.process_memory_bytes(os.getpid()) is not None
    count = len(history)
    time.sleep(0.05)
    assert sampler.history()[-1] is latest and len(sampler.history()) == count  # really stopped


def test_set_pids_applies_to_the_next_sample() -> None:
    sampler = Sampler(CpuSource())
    assert sampler.sample_now().processes == ()
    sampler.set_pids([os.getpid()])
    assert [p.pid for p in sampler.sample_now().processes] == [os.getpid()]


def test_failing_samples_do_not_kill_the_thread_and_are_logged_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="champion_gateway.gpu_monitor")
    source = FlakySource()
    with Sampler(source, interval_s=0.005, pids=[os.getpid()]) as sampler:
        _wait_for(lambda: sampler.error_count >= 5 and len(sampler.history()) >= 5)
        assert sampler.running
    errors = [r for r in caplog.records if r.name == "champion_gateway.gpu_monitor.sampler"]
    assert len(errors) == 1  # rate limited to one per minute
    assert "flaky" in errors[0].getMessage() and errors[0].exc_info is not None


def test_stop_then_start_again_resumes_sampling() -> None:
    sampler = Sampler(CpuSource(), interval_s=0.01)
    sampler.start()
    _wait_for(lambda: sampler.latest() is not None)
    sampler.stop()
    before = len(sampler.history())
    sampler.start()
    try:
        _wait_for(lambda: len(sampler.history()) > before)
    finally:
        sampler.stop()
