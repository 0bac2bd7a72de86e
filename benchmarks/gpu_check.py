"""Prove that gpu_monitor's NvmlSource reads real per-process GPU memory.

A child process (standing in for a model replica) holds a torch tensor of known size on the
GPU; the check reads it through NvmlSource, through a Sampler thread, and through the "auto"
factory, and compares with the device's memory before and after. Prints one JSON object.
Exit 0: pass, or skipped because no NVIDIA GPU/driver is usable. Exit 1: a check failed.
Run through benchmarks/gpu_check.sh, which prepares torch and pynvml.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from gpu_monitor import (
    DeviceSample,
    GpuSourceUnavailable,
    NvmlSource,
    Sampler,
    Snapshot,
    make_gpu_source,
)
from gpu_monitor.nvml import load_pynvml

GIB = 1 << 30

# The stand-in replica: holds `nbytes` on cuda:<index>, reports itself, waits for stdin EOF.
_CHILD = """
import json, os, sys, torch
nbytes, index = int(sys.argv[1]), int(sys.argv[2])
x = torch.empty(nbytes, dtype=torch.uint8, device=f"cuda:{index}")
x.fill_(1)
torch.cuda.synchronize()
props = torch.cuda.get_device_properties(index)
print(json.dumps({
    "pid": os.getpid(), "uuid": str(getattr(props, "uuid", "")), "name": props.name,
    "tensor_bytes": x.numel() * x.element_size(), "torch": torch.__version__,
    "cuda": torch.version.cuda, "reserved_bytes": torch.cuda.memory_reserved(index),
}), flush=True)
sys.stdin.read()
"""


def main() -> int:
    args = _parse_args()
    started = time.monotonic()
    try:
        nvml = NvmlSource()
    except GpuSourceUnavailable as exc:
        if args.require_gpu:  # the caller saw a GPU, so NVML failing is a finding, not a skip
            _emit({"status": "fail", "reason": f"GPU present but NVML unusable: {exc}"})
            return 1
        _emit({"status": "skipped", "reason": f"no usable NVIDIA GPU: {exc}"})
        return 0
    result: dict[str, Any] = {"driver": _driver_version(), "nvml_devices": nvml.device_count}
    try:
        checks = _run(nvml, args, result)
    finally:
        nvml.close()
    result["checks"] = checks
    result["status"] = "pass" if checks and all(checks.values()) else "fail"
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    _emit(result)
    return 0 if result["status"] == "pass" else 1


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="tensor size held by the child")
    parser.add_argument("--cuda-index", type=int, default=0, help="torch device index")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="child start, s")
    parser.add_argument(
        "--require-gpu", action="store_true", help="fail (not skip) when NVML cannot start"
    )
    return parser.parse_args()


def _run(nvml: NvmlSource, args: argparse.Namespace, result: dict[str, Any]) -> dict[str, bool]:
    nbytes = int(args.gib * GIB)
    baseline = nvml.sample([])
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(nbytes), str(args.cuda_index)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = _read_ready(child, args.ready_timeout)
        result["child"] = info
        return _checks_while_held(nvml, baseline, info, result) | _checks_after_kill(
            nvml, child, info["pid"], result
        )
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        return {"ran_to_completion": False}
    finally:
        _kill(child)


def _checks_while_held(
    nvml: NvmlSource, baseline: Snapshot, info: dict[str, Any], result: dict[str, Any]
) -> dict[str, bool]:
    pid, nbytes = int(info["pid"]), int(info["tensor_bytes"])
    snap = _poll(nvml, pid, lambda s: (s.process_memory_bytes(pid) or 0) >= nbytes, 15.0)
    held = snap.process_memory_bytes(pid)
    device = _child_device(snap, pid, str(info.get("uuid", "")))
    before = baseline.device(device.device) if device else None
    delta = _delta(before, device)
    result.update(
        process_memory_bytes=held,
        process_samples=[dataclasses.asdict(p) for p in snap.for_pid(pid)],
        device=dataclasses.asdict(device) if device else None,
        device_used_before_bytes=before.memory_used_bytes if before else None,
        device_used_delta_bytes=delta,
        nvml_processes=[dataclasses.asdict(p) for p in nvml.list_processes()],
    )
    if held is None:
        result["hint"] = _pid_namespace_hint(nvml)
    return {
        "process_memory_at_least_tensor": held is not None and held >= nbytes,
        "device_found_for_child": device is not None,
        "device_used_grew_by_tensor": delta is not None and delta >= 0.9 * nbytes,
        "device_used_within_total": _within_total(device),
        "process_within_device_used": bool(
            held and device and device.memory_used_bytes and held <= device.memory_used_bytes
        ),
        "device_fields_read": bool(device and device.name and device.memory_total_bytes),
        "sampler_thread_sees_child": _sampler_sees(nvml, pid, nbytes, result),
        "auto_factory_picks_nvml": _auto_is_nvml(),
    }


def _checks_after_kill(
    nvml: NvmlSource, child: subprocess.Popen[str], pid: int, result: dict[str, Any]
) -> dict[str, bool]:
    _kill(child)
    if result.get("process_memory_bytes") is None:
        result["released_after_kill"] = None  # never seen, so nothing to release
        return {}
    snap = _poll(nvml, pid, lambda s: not s.for_pid(pid), 10.0)
    result["released_after_kill"] = not snap.for_pid(pid)  # informative: the driver may lag
    return {}


def _read_ready(child: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout_s)
    if not ready:
        raise RuntimeError(f"child did not report within {timeout_s}s")
    line = child.stdout.readline()
    if not line:
        rc = child.wait(timeout=30)
        raise RuntimeError(f"child exited with rc={rc} before reporting (its stderr is above)")
    info: dict[str, Any] = json.loads(line)
    if int(info["pid"]) != child.pid:
        raise RuntimeError(f"child pid {info['pid']} != Popen pid {child.pid}")
    return info


def _poll(
    nvml: NvmlSource, pid: int, done: Callable[[Snapshot], bool], timeout_s: float
) -> Snapshot:
    """Sample until `done(snapshot)`; NVML's per-process accounting can lag a moment."""
    deadline = time.monotonic() + timeout_s
    snap = nvml.sample([pid])
    while not done(snap) and time.monotonic() < deadline:
        time.sleep(0.2)
        snap = nvml.sample([pid])
    return snap


def _child_device(snap: Snapshot, pid: int, uuid: str) -> DeviceSample | None:
    """The NVML device the child uses: by torch's uuid, else where NVML lists the child."""
    by_uuid = [d for d in snap.devices if uuid and d.uuid and d.uuid.endswith(uuid)]
    if by_uuid:
        return by_uuid[0]
    procs = snap.for_pid(pid)
    return snap.device(procs[0].device) if procs else None


def _delta(before: DeviceSample | None, after: DeviceSample | None) -> int | None:
    if before is None or after is None:
        return None
    if before.memory_used_bytes is None or after.memory_used_bytes is None:
        return None
    return after.memory_used_bytes - before.memory_used_bytes


def _within_total(device: DeviceSample | None) -> bool:
    if device is None or device.memory_used_bytes is None or device.memory_total_bytes is None:
        return False
    return 0 < device.memory_used_bytes <= device.memory_total_bytes


def _sampler_sees(nvml: NvmlSource, pid: int, nbytes: int, result: dict[str, Any]) -> bool:
    with Sampler(nvml, interval_s=0.1, pids=[pid]) as sampler:
        deadline = time.monotonic() + 5.0
        while len(sampler.history()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    readings = [s.process_memory_bytes(pid) for s in sampler.history()]
    result["sampler"] = {"samples": len(readings), "errors": sampler.error_count}
    return bool(readings) and all(r is not None and r >= nbytes for r in readings)


def _auto_is_nvml() -> bool:
    source = make_gpu_source("auto")
    try:
        return source.name == "nvml"
    finally:
        source.close()


def _pid_namespace_hint(nvml: NvmlSource) -> str:
    foreign = [p.pid for p in nvml.list_processes() if not os.path.exists(f"/proc/{p.pid}")]
    if foreign:
        return (
            f"NVML lists pids {foreign} that do not exist in this PID namespace: the driver "
            "reports host PIDs (container without --pid=host), so per-pid attribution fails"
        )
    return "NVML lists no process for the child's pid"


def _driver_version() -> str | None:
    try:
        pynvml = load_pynvml()
        version = pynvml.nvmlSystemGetDriverVersion()
    except Exception:
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def _kill(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps({"check": "gpu_monitor_nvml", **result}, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
