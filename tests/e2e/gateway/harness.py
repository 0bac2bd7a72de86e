"""Helpers to deploy the real gateway app (real MLflow models, Serve, HTTP) in e2e tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx

from gateway.config import GatewayConfig, parse_config
from gateway.demo.models import N_FEATURES, Faults, LinearModel, demo_weights
from model_registry.refs import CHALLENGER, CHAMPION, ModelRef
from model_registry.registry import ModelRegistry

ModelFactory = Callable[..., ModelRef]


def linear(faults: Faults | None = None, scale: float = 1.0) -> LinearModel:
    return LinearModel([w * scale for w in demo_weights()], 0.1, faults)


def gateway_config(overrides: dict[str, Any] | None = None) -> GatewayConfig:
    base: dict[str, Any] = {
        "ingress": {"num_cpus": 0.1},
        "slots": {"num_cpus": 0.1, "health_check_timeout_s": 60},
        "control": {"supervisor_name": f"sup-{uuid.uuid4().hex[:8]}",
                    "long_poll_timeout_s": 5.0},
    }
    for key, value in (overrides or {}).items():
        base[key] = {**base.get(key, {}), **value}
    return parse_config(base)


class Deployed:
    """A running gateway app and an HTTP client pointed at it."""

    def __init__(self, url: str, cfg: GatewayConfig, registry: ModelRegistry) -> None:
        self.url, self.cfg, self.registry = url, cfg, registry
        self.client = httpx.Client(base_url=url, timeout=30.0)

    def predict(self, rows: Any = None, **kwargs: Any) -> httpx.Response:
        body = {"inputs": rows if rows is not None else [[0.5] * 8]}
        return self.client.post("/v1/predict", json=body, **kwargs)

    def admin(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        given = token or os.environ["GATEWAY_ADMIN_TOKEN"]
        headers = {"authorization": f"Bearer {given}"}
        return self.client.request(method, path, headers=headers, **kw)


@contextlib.contextmanager
def deployed(ray_serve: str, registry: ModelRegistry, champion: ModelRef,
             challenger: ModelRef | None, cfg: GatewayConfig) -> Iterator[Deployed]:
    from ray import serve

    from gateway.app import build_app, teardown

    cfg = replace(cfg, model=replace(cfg.model, name=registry.model_name))
    registry.set_alias(CHAMPION, champion.version)
    if challenger is not None:
        registry.set_alias(CHALLENGER, challenger.version)
    else:
        with contextlib.suppress(Exception):
            registry.delete_alias(CHALLENGER)
    serve.run(build_app(cfg, registry.tracking_uri), name=cfg.app_name, route_prefix="/")
    app = Deployed(ray_serve, cfg, registry)
    try:
        yield app
    finally:
        app.client.close()
        teardown(cfg)




async def _blast(url: str, n: int, concurrency: int,
                 headers: dict[str, str] | None = None) -> list[httpx.Response]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        async def one(i: int) -> httpx.Response:
            async with sem:
                row = [[(i % 7) / 7.0] * N_FEATURES]
                return await client.post("/v1/predict", json={"inputs": row}, headers=headers)

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def blast(url: str, n: int, concurrency: int = 16) -> list[httpx.Response]:
    return asyncio.run(_blast(url, n, concurrency))


def replica_counts(app: Deployed) -> dict[str, int]:
    return dict(app.admin("GET", "/admin/rollout").json()["replica_counts"])


def wait_counts(app: Deployed, key: str, at_least: int, timeout_s: float = 10.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    counts = replica_counts(app)
    while counts.get(key, 0) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
        counts = replica_counts(app)
    return counts
