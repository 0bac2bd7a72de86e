"""ModelRegistry through a real `mlflow server` over HTTP, and failing fast without one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest

from model_registry.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    RegistryUnavailableError,
    VersionNotFoundError,
)
from model_registry.refs import CHALLENGER, CHAMPION
from model_registry.registry import ModelRegistry
from model_registry.testing import log_linear_model, use_tracking_uri

FAIL_FAST_S = 5.0


@pytest.fixture(autouse=True)
def _restore_env(restore_mlflow_http_env: None) -> None:
    """Every test here builds HTTP registries; put MLflow's HTTP env back after the module."""


def test_register_resolve_and_load_through_the_server(
    mlflow_server: tuple[str, Path], model_name: str
) -> None:
    uri, artifacts = mlflow_server
    champion = log_linear_model(uri, 2.0, 1.0)
    challenger = log_linear_model(uri, 3.0, 0.0)
    registry = ModelRegistry(model_name, uri)
    v1 = registry.register(champion.model_uri, tags={"stage": "champion"})
    v2 = registry.register(challenger.runs_uri)
    assert (v1.version, v1.run_id, v2.version, v2.run_id) == (
        "1", champion.run_id, "2", challenger.run_id)
    assert v1.source.startswith("mlflow-artifacts:/")  # stored through the server's proxy
    assert any(artifacts.rglob("MLmodel"))

    registry.set_alias(CHAMPION, v1.version, actor="test", reason="first")
    registry.set_alias(CHALLENGER, v2.version, actor="test", reason="candidate")
    assert registry.resolve(CHAMPION) == v1 and registry.resolve(CHALLENGER) == v2
    assert registry.alias_version(CHALLENGER) == "2"
    registry.set_version_tag(v2.version, "gateway.verdict", "pending")
    assert registry.get_version_tags(v2.version) == {"gateway.verdict": "pending"}
    registry.delete_alias(CHALLENGER, actor="test", reason="done")
    assert registry.alias_version(CHALLENGER) is None
    assert [(e.alias, e.version) for e in registry.alias_history()] == [
        (CHAMPION, "1"), (CHALLENGER, "2"), (CHALLENGER, None)]

    # What a slot does: load the immutable version URI through the server.
    with use_tracking_uri(uri):
        model = mlflow.pyfunc.load_model(registry.resolve(CHAMPION).uri)
    np.testing.assert_allclose(model.predict(np.array([1.0, 2.0])), [3.0, 5.0])


def test_errors_through_the_server_name_what_is_missing(
    mlflow_server: tuple[str, Path], model_name: str
) -> None:
    uri, _ = mlflow_server
    registry = ModelRegistry(model_name, uri)
    with pytest.raises(ModelNotFoundError, match=model_name):
        registry.resolve(CHAMPION)
    registry.ensure_registered_model()
    with pytest.raises(AliasNotFoundError, match=f"'{CHAMPION}'"):
        registry.resolve(CHAMPION)
    assert registry.alias_version(CHAMPION) is None
    with pytest.raises(VersionNotFoundError, match="'7'") as info:
        registry.get_version("7")
    assert uri in str(info.value)


def test_an_unreachable_server_fails_fast_at_construction(unused_local_uri: str) -> None:
    uri = unused_local_uri
    start = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as info:
        ModelRegistry("fraud", uri)
    assert time.monotonic() - start < FAIL_FAST_S
    assert uri in str(info.value) and "'fraud'" in str(info.value)


@pytest.fixture
def vanishing_server() -> Iterator[tuple[str, ThreadingHTTPServer]]:
    """A server that answers /health (so a registry can be built), to be shut down by the test."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_server_that_goes_away_fails_fast_on_the_next_call(
    vanishing_server: tuple[str, ThreadingHTTPServer],
) -> None:
    uri, server = vanishing_server
    registry = ModelRegistry("fraud", uri)
    server.shutdown()
    server.server_close()
    start = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as info:
        registry.alias_version(CHALLENGER)
    assert time.monotonic() - start < FAIL_FAST_S
    assert "'fraud'" in str(info.value) and f"'{CHALLENGER}'" in str(info.value)
