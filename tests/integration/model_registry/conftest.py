"""Real MLflow for the registry tests: a SQLite store in tmp, and a real `mlflow server`.

Module-scoped where it is slow (logging models, starting the server); each test gets its own
registered-model name, so tests sharing one store stay independent.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.procs import mlflow_server as running_mlflow_server
from model_registry.connectivity import FAST_FAIL_ENV
from model_registry.registry import ModelRegistry
from model_registry.testing import LoggedModelInfo, log_linear_model

SERVER_START_TIMEOUT_S = 120.0


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


@pytest.fixture(scope="module")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, restore_mlflow_http_env: None
) -> Iterator[tuple[str, Path]]:
    """A real `mlflow server` on a free local port: (tracking URI, its artifacts directory)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with running_mlflow_server(root, f"sqlite:///{root}/db.sqlite",
                          start_timeout_s=SERVER_START_TIMEOUT_S) as uri:
        yield uri, root / "artifacts"
