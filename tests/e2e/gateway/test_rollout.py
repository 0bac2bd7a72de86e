"""Rollouts end to end: the supervisor judges real traffic through the Serve proxy, rolls back
bad challengers at once with zero client errors, promotes good ones step by step, survives
its own death, and records every decision (registry, audit log, MLflow run, alerts)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.audit import AuditLog
from gateway.demo.models import N_FEATURES, Faults
from gateway.demo.run import register_pyfunc_model
from model_registry.refs import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import Deployed, deployed, gateway_config, linear, wait_for

pytestmark = pytest.mark.slow
TERMINAL = ("rolled_back", "promoted", "failed")


class Sink:
    """A real local HTTP server that records every alert posted to it."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, Any]]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append((self.path, json.loads(body)))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [b for p, b in self.received if p == path]


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.server.shutdown()
    s.server.server_close()


class Traffic:
    """Live client traffic at a fixed rate on a background thread, recording every answer."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate = url, rate
        self.answers: list[tuple[float, int, str]] = []  # (time, status, arm)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    async def _run(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0) as client:
            next_at, deadline = time.monotonic(), time.monotonic() + 240  # bounded
            i = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                task = asyncio.ensure_future(self._one(client, i))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
                next_at += 1.0 / self.rate
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*pending, return_exceptions=True)

    async def _one(self, client: httpx.AsyncClient, i: int) -> None:
        row = np.random.default_rng(i).normal(size=(1, N_FEATURES)).round(4).tolist()
        try:
            resp = await client.post("/v1/predict", json={"inputs": row})
            self.answers.append((time.time(), resp.status_code,
                                 resp.headers.get("x-gateway-arm", "")))
        except httpx.HTTPError:
            self.answers.append((time.time(), 599, ""))

    def statuses(self) -> Counter[int]:
        return Counter(status for _, status, _ in self.answers)


def judged_config(app: str, sink: Sink, steps: list[dict[str, Any]], **extra: Any) -> Any:
    overrides: dict[str, Any] = {
        "rollout": {"steps": steps, "auto_promote": True, "rollback_window_s": 120},
        "alerts": [{"type": "webhook", "url": f"{sink.url}/webhook"},
                   {"type": "slack", "url": f"{sink.url}/slack"},
                   {"type": "pagerduty", "url": f"{sink.url}/pagerduty",
                    "routing_key_env": "GATEWAY_TEST_PD_KEY"}],
        **extra,
    }
    return replace(gateway_config(overrides, judged=True), app_name=app)


HOLD_50 = [{"weight": 50.0, "min_requests": 10**9, "min_duration_s": 10**6}]


def register(registry: ModelRegistry, faults: Faults | None = None, scale: float = 1.0,
             what: str = "model") -> ModelRef:
    return register_pyfunc_model(registry, linear(faults, scale), what)


def start_rollout(app: Deployed, ref: ModelRef) -> None:
    app.registry.set_alias(CHALLENGER, ref.version, actor="test", reason="start a rollout")


def finished(app: Deployed, version: str, timeout_s: float = 90.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        s = app.status()
        ours = f"-v{version}-" in (s.get("rollout_id") or "")
        return s if ours and s["phase"] in TERMINAL else None

    return dict(wait_for(done, timeout_s, f"rollout of v{version} to finish"))


def test_raising_challenger_is_rolled_back_within_a_second_with_zero_client_errors(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink) -> None:
    bad = register(registry, Faults(error_rate=1.0), what="raises on every request")
    cfg = judged_config("gw-rb-errors", sink, HOLD_50)
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=60) as traffic:
        start_rollout(app, bad)
        status = finished(app, bad.version)
        time.sleep(1.0)  # traffic keeps flowing after the rollback
    assert status["phase"] == "rolled_back"
    assert "error_rate" in status["reason"] or "consecutive" in status["reason"]
    assert traffic.statuses() == {200: len(traffic.answers)}, traffic.statuses()
    assert {arm for _, _, arm in traffic.answers} == {"champion"}  # failover hid every error
    audit = AuditLog(cfg.supervisor.audit_path)
    records = wait_for(lambda: (rs := audit.read(status["rollout_id"]))
                       and any(r.event == "rolled_back" for r in rs) and rs, 20, "the audit")
    rolled = next(r for r in records if r.event == "rolled_back")
    canary = next(r for r in records if r.event == "loaded")
    # Table versions are wall-clock milliseconds: from the table that gave the challenger
    # traffic to the one that took it away.
    assert canary.table_version_to is not None and rolled.table_version_to is not None
    elapsed_ms = rolled.table_version_to - canary.table_version_to
    assert 0 < elapsed_ms <= 1000, f"rolled back {elapsed_ms} ms after its first traffic"
    assert rolled.verdict and rolled.verdict["state"] == "fail"
    assert any(r["guard"] == "error_rate" for r in rolled.verdict["results"])
    wait_for(lambda: registry.get_version_tags(bad.version).get("gateway.verdict")
             == "rolled_back", 20, "the verdict tag")
    assert registry.alias_version(CHALLENGER) is None
    _check_alerts(sink, bad.version)
    _check_mlflow_run(registry, cfg, status["rollout_id"], "rolled_back")


def _check_alerts(sink: Sink, version: str) -> None:
    def arrived() -> bool:
        return all(any(version in json.dumps(b) for b in sink.bodies(p))
                   for p in ("/webhook", "/slack", "/pagerduty"))

    wait_for(arrived, 20, "alerts in every format")
    hook = [b for b in sink.bodies("/webhook") if b.get("challenger_version") == version][-1]
    assert hook["action"] in ("rollback", "rollback_and_alert") and hook["reasons"]
    slack = [b for b in sink.bodies("/slack") if version in json.dumps(b)][-1]
    assert slack["text"] and slack["blocks"][0]["type"] == "header"
    pd = [b for b in sink.bodies("/pagerduty") if version in json.dumps(b)][-1]
    assert pd["routing_key"] == "pd-routing-key" and pd["event_action"] == "trigger"
    assert pd["payload"]["severity"] in ("critical", "error", "warning", "info")


def _check_mlflow_run(registry: ModelRegistry, cfg: Any, rollout_id: str, outcome: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry.tracking_uri)

    def run() -> Any:
        exp = client.get_experiment_by_name(cfg.supervisor.rollout_experiment)
        if exp is None:
            return None
        runs = client.search_runs([exp.experiment_id],
                                  f"tags.`gateway.rollout_id` = '{rollout_id}'")
        done = runs and runs[0].data.tags.get("gateway.outcome") not in (None, "running")
        return runs[0] if done else None

    found = wait_for(run, 30, "the MLflow rollout run")
    assert found.data.tags["gateway.outcome"] == outcome
    assert found.data.params, "the policy is logged as params"
    names = [a.path for a in client.list_artifacts(found.info.run_id)]
    assert "verdict.json" in names


def test_slow_challenger_is_rolled_back_by_the_latency_guard(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink) -> None:
    slow = register(registry, Faults(delay_s=0.02), what="20 ms slower")
    # Only the latency guard (and error rate) here: with every default trigger the
    # throughput guard catches the same slowness first (busy time per request grows too).
    cfg = judged_config("gw-rb-latency", sink, HOLD_50,
                        triggers=[{"guard": "error_rate"}, {"guard": "latency_p95"}])
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=40) as traffic:
        start_rollout(app, slow)
        status = finished(app, slow.version)
    assert status["phase"] == "rolled_back", status
    assert "latency_p95" in status["reason"], status["reason"]
    latency = next(r for r in status["verdict"]["results"] if r["guard"] == "latency_p95")
    assert latency["state"] == "fail" and latency["value"] >= 0.5, latency
    assert traffic.statuses() == {200: len(traffic.answers)}


def test_drifting_challenger_is_rolled_back_by_the_output_drift_guard(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink) -> None:
    drifting = register(registry, Faults(output_shift=1.5), what="outputs shifted")
    cfg = judged_config("gw-rb-drift", sink, HOLD_50,
                        triggers=[{"guard": "error_rate"}, {"guard": "output_drift"}])
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=40) as traffic:
        start_rollout(app, drifting)
        status = finished(app, drifting.version)
    assert status["phase"] == "rolled_back", status
    assert "output_drift" in status["reason"], status["reason"]
    drift = next(r for r in status["verdict"]["results"] if r["guard"] == "output_drift")
    assert drift["value"] > 0.3
    assert traffic.statuses() == {200: len(traffic.answers)}


def test_healthy_challenger_walks_every_step_is_promoted_and_can_be_rolled_back(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink) -> None:
    good = register(registry, scale=1.01, what="healthy challenger")
    steps = [{"weight": 20.0, "min_requests": 100, "min_duration_s": 1.0},
             {"weight": 50.0, "min_requests": 100, "min_duration_s": 1.0}]
    cfg = judged_config("gw-promote", sink, steps)
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=50) as traffic:
        start_rollout(app, good)
        status = finished(app, good.version, timeout_s=150)
        assert status["phase"] == "promoted", status
        # Registry updates follow the routing change (they never delay it).
        wait_for(lambda: registry.alias_version(CHAMPION) == good.version, 20, "the alias")
        assert registry.alias_version(PREVIOUS_CHAMPION) == models["v1"].version
        audit = AuditLog(cfg.supervisor.audit_path)
        wait_for(lambda: any(r.event == "promoted" for r in audit.read()), 20, "the audit")
        events = [r.event for r in audit.read(status["rollout_id"])]
        assert events[:2] == ["rollout_started", "loaded"]
        assert events.count("step_advanced") == 1 and "promoted" in events
        served = wait_for(lambda: app.predict().headers["x-gateway-model-version"]
                          == good.version, 10, "the new champion answering")
        assert served
        resp = app.admin("POST", "/admin/rollout/rollback", json={"reason": "KPI dip"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["phase"] == "rolled_back"
        wait_for(lambda: app.predict().headers["x-gateway-model-version"]
                 == models["v1"].version, 10, "the old champion answering again")
    wait_for(lambda: registry.alias_version(CHAMPION) == models["v1"].version, 20, "restore")
    assert registry.alias_version(PREVIOUS_CHAMPION) == good.version
    assert traffic.statuses() == {200: len(traffic.answers)}, traffic.statuses()


def test_killing_the_supervisor_mid_rollout_loses_nothing(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink) -> None:
    import ray

    good = register(registry, scale=1.02, what="healthy, for the restart test")
    steps = [{"weight": 20.0, "min_requests": 20, "min_duration_s": 0.0},
             {"weight": 40.0, "min_requests": 10**9, "min_duration_s": 10**6}]
    cfg = replace(judged_config("gw-restart", sink, steps), triggers=())
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=40) as traffic:
        start_rollout(app, good)
        before = dict(wait_for(lambda: (s := app.status())["step"] == 1 and s, 60, "step 2"))
        sup = ray.get_actor(cfg.control.supervisor_name, namespace=cfg.control.namespace)
        ray.kill(sup, no_restart=False)  # Ray restarts it; it must resume from the registry
        time.sleep(2.0)
        after = dict(wait_for(lambda: (s := app.status()).get("rollout_id") and s, 60,
                              "the restarted supervisor"))
        time.sleep(1.0)
    assert after["rollout_id"] == before["rollout_id"]
    assert (after["phase"], after["step"]) == ("canary", 1)
    assert after["table"]["challenger_weight"] == 40.0
    assert traffic.statuses() == {200: len(traffic.answers)}, traffic.statuses()
    events = [r.event for r in AuditLog(cfg.supervisor.audit_path).read(after["rollout_id"])]
    assert events[:2] == ["rollout_started", "loaded"]
    assert events.count("rollout_started") == 1 and events.count("step_advanced") == 1


@pytest.mark.parametrize("failure", ["missing artifact", "failing health check"])
def test_a_challenger_that_cannot_load_never_gets_traffic(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink,
        failure: str) -> None:
    if failure == "missing artifact":
        broken = register(registry, what="artifact deleted")
        shutil.rmtree(Path(broken.source))
    else:
        broken = register(registry, Faults(error_rate=1.0, fail_after=0), what="unhealthy")
    cfg = judged_config(f"gw-load-{failure.split()[0]}", sink, HOLD_50)
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=20) as traffic:
        start_rollout(app, broken)
        status = finished(app, broken.version)
    assert status["phase"] == "failed", status
    assert {arm for _, _, arm in traffic.answers} == {"champion"}
    assert traffic.statuses() == {200: len(traffic.answers)}
    wait_for(lambda: registry.get_version_tags(broken.version).get("gateway.verdict")
             == "load_failed", 20, "the verdict tag")
    wait_for(lambda: any(b.get("challenger_version") == broken.version
                         and b.get("action") == "load_failed"
                         for b in sink.bodies("/webhook")), 20, "the load-failure alert")


def test_feedback_is_attributed_to_the_serving_arm(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink) -> None:
    cfg = judged_config("gw-feedback", sink, HOLD_50, feedback={"ttl_s": 3.0})
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app:
        resp = app.predict(headers={"x-request-id": "order-1"})
        assert resp.status_code == 200
        time.sleep(0.5)  # the request id reaches the supervisor with the next flush
        ok = app.client.post("/v1/feedback", json={"request_id": "order-1", "outcome": True})
        assert ok.status_code == 202, ok.text
        value = app.client.post("/v1/feedback", json={"request_id": "order-1", "value": 12.5})
        assert value.status_code == 202
        unknown = app.client.post("/v1/feedback", json={"request_id": "nope", "outcome": True})
        assert unknown.status_code == 404 and "unknown" in unknown.json()["error"]["message"]
        for bad in ({"request_id": "order-1"}, {"request_id": "order-1", "outcome": "yes"},
                    {"request_id": 5, "outcome": True},
                    {"request_id": "order-1", "value": 1, "outcome": True}):
            assert app.client.post("/v1/feedback", json=bad).status_code == 422, bad
        time.sleep(3.5)
        expired = app.client.post("/v1/feedback", json={"request_id": "order-1",
                                                        "outcome": False})
        assert expired.status_code == 410


def test_operator_errors_are_409_not_500(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink) -> None:
    cfg = judged_config("gw-ops", sink, HOLD_50)
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app:
        for op in ("promote", "pause", "resume", "rollback"):
            resp = app.admin("POST", f"/admin/rollout/{op}")
            assert resp.status_code == 409, (op, resp.text)
        assert app.client.post("/admin/rollout/promote").status_code == 401


def test_rollback_and_scale_adds_a_champion_replica(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink) -> None:
    from ray import serve

    bad = register(registry, Faults(error_rate=1.0), what="raises, for rollback_and_scale")
    cfg = judged_config("gw-scale", sink, HOLD_50, triggers=[
        {"guard": "error_rate", "action": "rollback_and_scale"}],
        judge={"catastrophic_run": 10**9})

    def champion_replicas() -> int:
        deployment = serve.status().applications[cfg.app_name].deployments["slot_a"]
        return int(deployment.replica_states.get("RUNNING", 0))

    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=40) as traffic:
        assert champion_replicas() == 1
        start_rollout(app, bad)
        status = finished(app, bad.version)
        assert status["phase"] == "rolled_back", status
        wait_for(lambda: champion_replicas() == 2, 60, "a second champion replica")
    assert traffic.statuses() == {200: len(traffic.answers)}
