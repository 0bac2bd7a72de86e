"""Session-wide real infrastructure: one local Ray instance with Serve, one MLflow store.

Ray starts once per session (starting it costs seconds), with a metrics export port so the
observability tests can scrape it. Every app a test deploys is deleted, and every process
started here is stopped, by the fixtures that started it.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

ADMIN_TOKEN = "test-admin-token-0123456789"
# Replicas inherit the environment of the process that starts Ray: set it before Ray starts.
os.environ["GATEWAY_ADMIN_TOKEN"] = ADMIN_TOKEN
os.environ["GATEWAY_TEST_PD_KEY"] = "pd-routing-key"  # read by the supervisor's PagerDuty notifier
os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The proxy's header guard, as `gateway.runtime` sets it (Serve reads it when Ray starts).
os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH",
                      "gateway.serving.http.proxy_middlewares")


def _own_direct_ingress_ports() -> None:
    """A port range of its own for each test process's Ray instance. Each Serve controller
    hands its replicas' direct-ingress HTTP and gRPC ports out of the same default ranges
    (30000-31000, 40000-41000) knowing nothing of another instance on the host: one
    instance's replica took a port the other had just freed while the other's routers still
    called it there, and requests crossed between two test workers' apps (404s, the wrong
    model's answers). The workers of one run get adjacent blocks; another run on the same
    host (a second pytest) lands on other blocks but for a 1-in-40 chance."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"{os.getpid():x}"
    blocks, width = 80, 100
    block = (int(hashlib.sha256(run_id.encode()).hexdigest(), 16) % (blocks // 2) * 2
             + index) % blocks
    for protocol, base in (("HTTP", 20000), ("GRPC", 41000)):
        low = base + block * width
        # Assigned, not defaulted: xdist's workers inherit the environment of the
        # controller process, which imported this file first (as "gw0").
        os.environ[f"RAY_SERVE_DIRECT_INGRESS_MIN_{protocol}_PORT"] = str(low)
        os.environ[f"RAY_SERVE_DIRECT_INGRESS_MAX_{protocol}_PORT"] = str(low + width - 1)


_own_direct_ingress_ports()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU tests with a clear reason where no NVIDIA GPU is usable."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    from gpu_monitor import make_gpu_source

    try:
        make_gpu_source("nvml").close()
        return
    except Exception as exc:
        skip = pytest.mark.skip(reason=f"no usable NVIDIA GPU: {exc}")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def http_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def ray_serve(metrics_port: int, http_port: int) -> Iterator[str]:
    """A local Ray instance with Serve's proxy on a free loopback port; yields its base URL."""
    import ray
    from ray import serve

    ray.init(address="local", num_cpus=4, include_dashboard=False,
             _metrics_export_port=metrics_port, logging_level="WARNING",
             _system_config={"metrics_report_interval_ms": 1000})
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    try:
        yield f"http://127.0.0.1:{http_port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{path}"
