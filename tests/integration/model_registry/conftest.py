"""Real MLflow for the registry tests: a SQLite store in tmp, and a real `mlflow server`.

Module-scoped where it is slow (logging models, starting the server); each test gets its own
registered-model name, so tests sharing one store stay independent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model_registry.connectivity import FAST_FAIL_ENV
from model_registry.registry import ModelRegistry
from model_registry.testing import LoggedModelInfo, log_linear_model

SERVER_START_TIMEOUT_S = 120.0
SERVER_STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A port nothing listens on right now (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unused_local_uri() -> str:
    """An http URI of a local port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture(scope="module")
def logged_models(sqlite_uri: str) -> tuple[LoggedModelInfo, LoggedModelInfo]:
    """Two real pyfunc models: y = 2x + 1 and y = 3x."""
    return log_linear_model(sqlite_uri, 2.0, 1.0), log_linear_model(sqlite_uri, 3.0, 0.0)


@pytest.fixture
def model_name() -> str:
    return f"model-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def registry(sqlite_uri: str, model_name: str) -> ModelRegistry:
    return ModelRegistry(model_name, sqlite_uri)


@pytest.fixture(scope="module")
def restore_mlflow_http_env() -> Iterator[None]:
    """ModelRegistry sets MLflow's HTTP retry defaults process-wide; undo that afterwards."""
    saved = {key: os.environ.get(key) for key in FAST_FAIL_ENV}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group `pgid` (Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole group the server leads, SIGKILL what outlives the grace period."""
    pgid = proc.pid  # start_new_session=True: the server leads its own group
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + SERVER_STOP_TIMEOUT_S
        while time.monotonic() < deadline and (proc.poll() is None or _group_alive(pgid)):
            time.sleep(0.1)
        if proc.poll() is not None and not _group_alive(pgid):
            break
    proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
    assert not _group_alive(pgid), f"mlflow server processes left in group {pgid}"


def _wait_healthy(uri: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n"
                               f"{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{uri}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"mlflow server not healthy after {SERVER_START_TIMEOUT_S} s:\n"
                       f"{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, restore_mlflow_http_env: None
) -> Iterator[tuple[str, Path]]:
    """A real `mlflow server` on a free local port: (tracking URI, its artifacts directory)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    artifacts = root / "artifacts"
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/db.sqlite",
           "--serve-artifacts", "--artifacts-destination", str(artifacts)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # The job runner (huey workers) is for GenAI jobs; without it the server starts faster.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=root, env=env,
                                start_new_session=True)
    try:
        _wait_healthy(uri, proc, log)
        yield uri, artifacts
    finally:
        stop_process_group(proc)
