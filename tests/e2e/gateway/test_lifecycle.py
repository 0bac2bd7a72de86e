"""The rollout lifecycle end to end: promotion and restore, a supervisor restart, feedback,
load failures and operator errors."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.control.audit import AuditLog
from gateway.control.store import JUDGE_TAG, decode_judge_state
from gateway.demo.models import Faults
from model_registry.refs import CHAMPION, PREVIOUS_CHAMPION, ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import deployed, wait_for
from tests.e2e.gateway.rollout_helpers import (
    HOLD_50,
    Sink,
    Traffic,
    check_report,
    finished,
    judged_config,
    register,
    start_rollout,
)

pytestmark = pytest.mark.slow


def test_healthy_challenger_walks_every_step_is_promoted_and_can_be_rolled_back(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink,
        tmp_path: Path) -> None:
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
        page = check_report(app, status["rollout_id"], "promoted", tmp_path)
        assert "step_advanced" in page  # the step timeline
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
        time.sleep(6.0)  # the judge's evidence is saved every 5 s
        saved = decode_judge_state(registry.get_version_tags(good.version)[
            f"{JUDGE_TAG}.{cfg.app_name}"])["looks"]["n"]
        sup = ray.get_actor(cfg.control.supervisor_name, namespace=cfg.control.namespace)
        ray.kill(sup, no_restart=False)  # Ray restarts it; it must resume from the registry
        time.sleep(2.0)
        after = dict(wait_for(lambda: (s := app.status()).get("rollout_id") and s, 60,
                              "the restarted supervisor"))
        time.sleep(1.0)
    assert after["rollout_id"] == before["rollout_id"]
    assert (after["phase"], after["step"]) == ("canary", 1)
    # the judge resumed its evidence instead of starting afresh (no reset, no new alpha)
    assert saved >= 20 and after["judge"]["looks_judged"] >= saved
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


