"""make_gpu_source: explicit names, and the auto fallback when NVML is absent or failing."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from core.errors import ConfigError, GatewayError
from gpu_monitor import (
    CpuSource,
    GpuSource,
    GpuSourceUnavailable,
    NvmlSource,
    factory,
    make_gpu_source,
)


def _nvml_initialises() -> bool:
    try:
        NvmlSource().close()
    except GpuSourceUnavailable:
        return False
    return True


@pytest.fixture
def fresh_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget an earlier test's once-per-process fallback notice."""
    monkeypatch.setattr(factory, "_fallback_announced", False)


def _fallback_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == factory.log.name]


def test_unknown_kind_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="'rocm'"):
        make_gpu_source("rocm")


def test_cpu_kind_gives_cpu_source() -> None:
    source = make_gpu_source("cpu")
    assert isinstance(source, CpuSource) and isinstance(source, GpuSource)
    assert source.name == "cpu"


@pytest.mark.usefixtures("fresh_notice")
def test_pynvml_missing_forced_nvml_raises_a_gateway_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # the import now fails: library absent
    with pytest.raises(GpuSourceUnavailable, match=r"pynvml .* not installed") as info:
        make_gpu_source("nvml")
    assert isinstance(info.value, GatewayError)


@pytest.mark.usefixtures("fresh_notice")
def test_pynvml_missing_auto_falls_back_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    caplog.set_level(logging.INFO, logger="champion_gateway.gpu_monitor")
    sources = [make_gpu_source("auto") for _ in range(3)]
    for source in sources:
        snap = source.sample([os.getpid()])
        assert snap.source == "cpu" and snap.processes[0].device == "cpu"
    lines = _fallback_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "not installed" in lines[0].getMessage()
    assert "device='cpu'" in lines[0].getMessage()
    assert lines[0].levelno >= logging.INFO


@pytest.mark.skipif(_nvml_initialises(), reason="NVML works on this machine")
@pytest.mark.usefixtures("fresh_notice")
def test_nvml_init_failing_forced_raises_and_auto_falls_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Real failure: pynvml is installed but there is no NVIDIA driver here.
    with pytest.raises(GpuSourceUnavailable, match="nvml"):
        make_gpu_source("nvml")
    caplog.set_level(logging.INFO, logger="champion_gateway.gpu_monitor")
    first, second = make_gpu_source(), make_gpu_source("auto")
    assert isinstance(first, CpuSource) and isinstance(second, CpuSource)
    lines = _fallback_lines(caplog)
    assert len(lines) == 1
    assert "nvml" in lines[0].getMessage().lower()
