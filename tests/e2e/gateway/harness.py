"""Helpers to deploy the real gateway app (real MLflow models, Serve, HTTP) in e2e tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from gateway.config import GatewayConfig, parse_config
from gateway.control.store import VERDICT_TAG
from gateway.demo.models import N_FEATURES, Faults, LinearModel, demo_weights
from gateway.demo.traffic import Answer, Traffic
from model_registry.refs import CHALLENGER, CHAMPION, ModelRef
from model_registry.registry import ModelRegistry


def linear(faults: Faults | None = None, scale: float = 1.0) -> LinearModel:
    return LinearModel([w * scale for w in demo_weights()], 0.1, faults)


def holding_policy(weight: float) -> dict[str, Any]:
    """A rollout that loads the challenger, gives it `weight`% and stays there."""
    return {"steps": [{"weight": weight, "min_requests": 10**9, "min_duration_s": 10**6}],
            "auto_promote": False}


def gateway_config(overrides: dict[str, Any] | None = None, *, weight: float = 30.0,
                   judged: bool = False) -> GatewayConfig:
    """Small replicas, a private supervisor and audit log; by default a holding rollout with
    no guards (serving-core tests), or the default guards with `judged=True`."""
    base: dict[str, Any] = {
        "ingress": {"num_cpus": 0.1},
        "slots": {"num_cpus": 0.1, "health_check_timeout_s": 60},
        "control": {"supervisor_name": f"sup-{uuid.uuid4().hex[:8]}",
                    "long_poll_timeout_s": 5.0, "flush_interval_s": 0.05},
        "rollout": holding_policy(weight),
        "supervisor": {"tick_s": 0.1, "registry_poll_s": 0.2,
                       "audit_path": str(Path(tempfile.mkdtemp()) / "audit.jsonl")},
    }
    if not judged:
        base["triggers"] = []
    for key, value in (overrides or {}).items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(base)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60.0, what: str = "",
             detail: Callable[[], Any] | None = None) -> Any:
    """`predicate()`'s first truthy value; on timeout, fail naming `what` and, if given,
    what `detail()` says of the state it ended in."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    found = ""
    if detail is not None:
        try:
            found = f"; found {detail()!r}"
        except Exception as exc:  # the detail is a courtesy; the timeout is the failure
            found = f"; (detail unavailable: {exc!r})"
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}{found}")


class Deployed:
    """A running gateway app and an HTTP client pointed at it."""

    def __init__(self, url: str, cfg: GatewayConfig, registry: ModelRegistry) -> None:
        self.url, self.cfg, self.registry = url, cfg, registry
        self.client = httpx.Client(base_url=url, timeout=30.0)
        self.ingress_handle: Any = None  # made on first use, on `_HandleLoop`'s loop

    def predict(self, rows: Any = None, **kwargs: Any) -> httpx.Response:
        body = {"inputs": rows if rows is not None else [[0.5] * 8]}
        return self.client.post("/v1/predict", json=body, **kwargs)

    def admin(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        given = token or os.environ["GATEWAY_ADMIN_TOKEN"]
        headers = {"authorization": f"Bearer {given}"}
        return self.client.request(method, path, headers=headers, **kw)

    def status(self) -> dict[str, Any]:
        resp = self.admin("GET", "/admin/rollout")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def wait_phase(self, phase: str, timeout_s: float = 90.0) -> dict[str, Any]:
        return dict(wait_for(lambda: (s := self.status())["phase"] == phase and s,
                             timeout_s, f"phase {phase}"))


@contextlib.contextmanager
def deployed(ray_serve: str, registry: ModelRegistry, champion: ModelRef,
             challenger: ModelRef | None, cfg: GatewayConfig,
             wait_phase: str | None = "canary") -> Iterator[Deployed]:
    from ray import serve

    from gateway.app import build_app, teardown

    cfg = replace(cfg, model=replace(cfg.model, name=registry.model_name))
    registry.set_alias(CHAMPION, champion.version)
    if challenger is not None:
        # A judged version is never rolled out again: say so now, not after a phase timeout.
        verdict = registry.get_version_tags(challenger.version).get(VERDICT_TAG)
        assert verdict is None, (f"challenger v{challenger.version} was already judged "
                                 f"({verdict}) by an earlier test: register a fresh version")
        registry.set_alias(CHALLENGER, challenger.version)
    else:
        with contextlib.suppress(Exception):
            registry.delete_alias(CHALLENGER)
    serve.run(build_app(cfg, registry.tracking_uri), name=cfg.app_name, route_prefix="/",
              external_scaler_enabled=True)
    app = Deployed(ray_serve, cfg, registry)
    try:
        if challenger is not None and wait_phase:
            app.wait_phase(wait_phase)
        yield app
    finally:
        app.client.close()
        teardown(cfg)


def blast(url: str, n: int, concurrency: int = 16) -> list[httpx.Response]:
    """`n` requests, `concurrency` at a time (closed loop); every response, in answer order."""
    responses: list[httpx.Response] = []

    def keep(_answer: Answer, resp: httpx.Response | None, _latency_s: float) -> None:
        assert resp is not None, "a request failed without an HTTP answer"
        responses.append(resp)

    asyncio.run(Traffic(url, concurrency=concurrency, count=n, on_answer=keep,
                        payload=lambda i: {"inputs": [[(i % 7) / 7.0] * N_FEATURES]}).run())
    assert len(responses) == n, f"{len(responses)} of {n} requests answered"
    return responses


def replica_counts(app: Deployed) -> dict[str, int]:
    return dict(app.admin("GET", "/admin/rollout").json()["replica_counts"])


class _HandleLoop:
    """One event loop on a daemon thread for the tests' Serve handle calls: with
    RAY_SERVE_THROUGHPUT_OPTIMIZED a handle's router runs on (and stays bound to) the loop of
    its first caller, so handles cannot be used from plain synchronous test code."""

    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, Any], timeout_s: float = 30.0) -> Any:
        if cls._loop is None:
            cls._loop = asyncio.new_event_loop()
            threading.Thread(target=cls._loop.run_forever, daemon=True,
                             name="serve-handles").start()
        return asyncio.run_coroutine_threadsafe(coro, cls._loop).result(timeout_s)


def describe_replicas(app: Deployed) -> list[dict[str, Any]]:
    """Every ingress replica's `describe()` (through `DeploymentHandle.broadcast`)."""

    async def ask() -> list[dict[str, Any]]:
        if app.ingress_handle is None:
            from ray import serve

            app.ingress_handle = serve.get_deployment_handle("ingress", app.cfg.app_name)
        return list(await app.ingress_handle.broadcast("describe").results_async(
            timeout_s=10.0))

    return list(_HandleLoop.run(ask()))


def replica_windows(app: Deployed, flushed_only: bool = False) -> dict[str, Counter[str]]:
    """Per model version, by outcome, summed over the ingress replicas (their `describe`):
    the observations recorded into the comparison windows, or only those already sent to
    the supervisor."""
    total: dict[str, Counter[str]] = defaultdict(Counter)
    for view in describe_replicas(app):
        for version, window in view["windows"].items():
            total[version].update(window["flushed"])
            if not flushed_only:
                total[version].update(window["pending"])
    return dict(total)


def wait_counts(app: Deployed, key: str, at_least: int, timeout_s: float = 10.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    counts = replica_counts(app)
    while counts.get(key, 0) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
        counts = replica_counts(app)
    return counts
