"""Starting the local Ray instance and telling the user where to look."""

from __future__ import annotations

import os
from typing import Any

from gateway.config import GatewayConfig

# Lower per-request overhead in Serve (fewer threads and log hops); set before Ray starts.
os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
# Bound and sanitise headers in Serve's proxy, before it echoes x-request-id or buffers a
# huge header (gateway.serving.http.HeaderGuard). On a cluster, set it where Ray starts.
PROXY_CALLBACK = ("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH",
                  "gateway.serving.http.proxy_middlewares")
os.environ.setdefault(*PROXY_CALLBACK)


def init_ray(cfg: GatewayConfig, address: str | None = None, **kwargs: Any) -> Any:
    """Connect to `address` (or RAY_ADDRESS), else start a local instance with the
    dashboard and Prometheus metrics export on loopback."""
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    addr = address or os.environ.get("RAY_ADDRESS")
    if addr:
        return ray.init(address=addr, **kwargs)
    kwargs.setdefault("include_dashboard", True)
    kwargs.setdefault("dashboard_host", "127.0.0.1")
    kwargs.setdefault("_metrics_export_port", cfg.observability.metrics_export_port)
    return ray.init(**kwargs)


def dashboard_url() -> str | None:
    import ray

    try:
        url = ray.get_runtime_context().dashboard_url  # type: ignore[attr-defined]
    except AttributeError:
        url = None
    if not url:
        ctx = getattr(ray, "_private", None)
        url = getattr(getattr(ctx, "worker", None), "_global_node", None)
        url = getattr(url, "webui_url", None) if url else None
    if url and not str(url).startswith("http"):
        url = f"http://{url}"
    return str(url) if url else None


def print_urls(cfg: GatewayConfig) -> None:
    base = f"http://{cfg.http.host}:{cfg.http.port}"
    print(f"gateway:        {base}/v1/predict   (health: {base}/healthz)")
    print(f"admin:          {base}/admin/rollout  (token from ${cfg.admin.token_env})")
    url = dashboard_url()
    if url:
        print(f"ray dashboard:  {url}   (Serve and metrics views)")
    port = cfg.observability.metrics_export_port
    print(f"prometheus:     http://127.0.0.1:{port}/metrics   (ray_gateway_* series; "
          "Grafana dashboard: configs/grafana/champion-gateway.json)")
