"""The fail-fast probe against real local sockets and a real HTTP server."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from model_registry.connectivity import FAST_FAIL_ENV, apply_fast_fail_defaults, probe_http
from model_registry.errors import RegistryUnavailableError


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_answering(status: int) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def ok_server() -> Iterator[str]:
    yield from _server_answering(200)


@pytest.fixture
def broken_server() -> Iterator[str]:
    yield from _server_answering(503)


def test_closed_port_is_unavailable_fast() -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as info:
        probe_http(uri, "fraud", timeout_s=2.0)
    assert time.monotonic() - start < 2.5
    assert uri in str(info.value) and "'fraud'" in str(info.value)


def test_silent_server_times_out_at_the_probe_timeout() -> None:
    # A listening socket that never answers: the probe must give up at its timeout.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(RegistryUnavailableError):
            probe_http(uri, "fraud", timeout_s=0.5)
        assert 0.4 < time.monotonic() - start < 2.0


def test_answering_server_passes(ok_server: str) -> None:
    probe_http(ok_server, "fraud")


def test_server_error_is_unavailable(broken_server: str) -> None:
    with pytest.raises(RegistryUnavailableError, match="503"):
        probe_http(broken_server, "fraud")


def test_fast_fail_defaults_never_override_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in FAST_FAIL_ENV:
        monkeypatch.setenv(key, "placeholder")  # so that monkeypatch restores the original
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    applied = apply_fast_fail_defaults()
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in applied
    assert set(applied) == set(FAST_FAIL_ENV) - {"MLFLOW_HTTP_REQUEST_TIMEOUT"}
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == FAST_FAIL_ENV[
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
