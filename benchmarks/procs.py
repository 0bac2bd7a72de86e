"""Child processes that lead their own process group, for benchmarks and tests: stopping a
whole group (never by a process-name pattern), and a real `mlflow server`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import free_port

__all__ = ["group_alive", "mlflow_server", "stop_process_group"]


def group_alive(pgid: int) -> bool:
    """Whether a non-zombie process is left in process group `pgid` (Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False


def stop_process_group(proc: subprocess.Popen[bytes], first: signal.Signals = signal.SIGTERM,
                       grace_s: float = 15.0) -> bool:
    """`first` to the group `proc` leads (started with `start_new_session=True`), SIGKILL to
    whatever outlives `grace_s`; returns whether none of its processes is left."""
    pgid = proc.pid
    for sig in dict.fromkeys((first, signal.SIGKILL)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (proc.poll() is None or group_alive(pgid)):
            time.sleep(0.1)
        if proc.poll() is not None and not group_alive(pgid):
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    return proc.poll() is not None and not group_alive(pgid)


@contextlib.contextmanager
def mlflow_server(root: Path, backend_uri: str, workers: int = 1,
                  start_timeout_s: float = 180.0) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port, artifacts served from
    `root/artifacts`, its log in `root/mlflow-server.log`; yields its URI. Its whole process
    group is stopped on exit (an AssertionError if any of it is left)."""
    import httpx

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--backend-store-uri", backend_uri, "--serve-artifacts",
           "--artifacts-destination", str(root / "artifacts")]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # GenAI job runner: starts faster
    log_path = root / "mlflow-server.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=root, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not come up (rc {proc.returncode}):\n"
                                   f"{log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{uri}/health", timeout=1.0, trust_env=False).status_code == 200:
                    break
            time.sleep(0.2)
        yield uri
    finally:
        assert stop_process_group(proc), f"mlflow server processes left in group {proc.pid}"
