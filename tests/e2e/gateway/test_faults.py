"""Faults end to end: a failing, slow, dead or broken model behind the real gateway."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from gateway.demo.models import Faults
from gateway.demo.run import register_pyfunc_model
from gateway.wire.routing import sticky_bucket
from tests.e2e.gateway.harness import (
    blast,
    deployed,
    gateway_config,
    linear,
    replica_counts,
    replica_windows,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_failover_serves_every_request_while_the_challenger_raises(
        ray_serve: str, registry: Any, models: dict[str, Any]) -> None:
    # No judge at all (not even the catastrophic fast path): failover alone is under test.
    cfg = replace(gateway_config({"judge": {"catastrophic_run": 10**9}}, weight=50.0),
                  app_name="gw-faulty")
    with deployed(ray_serve, registry, models["v1"], models["raises"], cfg) as app:
        responses = blast(app.url, 300, concurrency=8)
        assert Counter(r.status_code for r in responses) == {200: 300}
        assert {r.headers["x-gateway-arm"] for r in responses} == {"champion"}
        counts = replica_counts(app)
        assert counts.get("challenger.server_error", 0) > 100, counts
        assert counts.get("challenger.failover", 0) == counts["challenger.server_error"]
        # The retries are counted, but only the requests routed to the champion are evidence
        # for it: the retries would land as champion successes next to each challenger error.
        windows = replica_windows(app)
        assert counts["champion.ok"] == 300
        direct = 300 - counts["challenger.failover"]
        assert windows[models["v1"].version] == {"ok": direct}, windows
        assert windows[models["raises"].version] == {
            "server_error": counts["challenger.server_error"]}, windows


def test_challenger_timeout_fails_over_to_the_champion(
        ray_serve: str, registry: Any, models: dict[str, Any]) -> None:
    cfg = replace(gateway_config({"timeouts": {"challenger_s": 0.2},
                                 "judge": {"catastrophic_run": 10**9}}, weight=100.0),
                  app_name="gw-slow")
    with deployed(ray_serve, registry, models["v1"], models["slow"], cfg) as app:
        responses = [app.predict() for _ in range(5)]
        assert [r.status_code for r in responses] == [200] * 5
        assert {r.headers["x-gateway-arm"] for r in responses} == {"champion"}
        assert replica_counts(app).get("challenger.timeout", 0) == 5
        windows = replica_windows(app)
        assert windows[models["slow"].version] == {"timeout": 5}, windows
        assert models["v1"].version not in windows, windows  # five retries, none compared


def test_slow_champion_is_censored_at_the_challenger_deadline(
        ray_serve: str, registry: Any, models: dict[str, Any]) -> None:
    """A champion slower than the challenger's deadline: the client gets its answer, while
    the comparison records a timeout at the deadline, sent to the supervisor at once."""
    deadline = 0.2
    very_slow = register_pyfunc_model(registry, linear(Faults(delay_s=1.5)), "very slow")
    cfg = replace(gateway_config({"timeouts": {"challenger_s": deadline}}, weight=50.0),
                  app_name="gw-slowchamp")
    with deployed(ray_serve, registry, very_slow, models["v2"], cfg) as app:
        champion, challenger = very_slow.version, models["v2"].version
        # One request on the champion (a sticky key below the weight goes to the challenger):
        # its timeout reaches the supervisor's side while the call is still running.
        key = next(k for k in (f"user-{i}" for i in range(1000)) if sticky_bucket(k) >= 5000)
        assert replica_windows(app) == {}  # nothing yet (and the handle is ready)
        with ThreadPoolExecutor(1) as pool:
            slow_call = pool.submit(app.predict, headers={"x-gateway-key": key})
            wait_for(lambda: replica_windows(app, flushed_only=True).get(champion), 5.0,
                     "the censored timeout to be flushed")
            assert not slow_call.done(), "flushed only after the champion answered"
            answer = slow_call.result(30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-gateway-arm"] == "champion"
        assert answer.headers["x-gateway-model-version"] == champion

        responses = blast(app.url, 10, concurrency=5)
        assert Counter(r.status_code for r in responses) == {200: 10}
        arms = Counter(r.headers["x-gateway-arm"] for r in responses)
        n_champion = arms["champion"] + 1
        windows = replica_windows(app)
        # A challenger call slower than the 0.2 s deadline on a busy machine fails over: the
        # champion answers it, but that retry is no sample of the champion (kept out of its
        # window), and the challenger's window holds the timeout.
        failovers = windows.get(challenger, Counter()).get("timeout", 0)
        assert windows[champion] == {"timeout": n_champion - failovers}, windows
        assert windows.get(challenger, Counter()) == Counter(
            ok=arms["challenger"], timeout=failovers), windows
        counts = replica_counts(app)  # the real outcome is still counted
        assert counts["champion.ok"] == n_champion and "champion.timeout" not in counts, counts
        wait_for(lambda: app.status()["requests"]["champion"] == n_champion - failovers, 10,
                 "the supervisor to hold every champion observation")


def test_champion_failure_is_a_clear_502(
        ray_serve: str, registry: Any, models: dict[str, Any]) -> None:
    cfg = replace(gateway_config(), app_name="gw-badchamp")
    with deployed(ray_serve, registry, models["raises"], None, cfg) as app:
        resp = app.predict()
        assert resp.status_code == 502
        assert "champion model could not answer" in resp.json()["error"]["message"]
        assert "injected model failure" in resp.json()["error"]["message"]


def test_dead_challenger_replica_fails_over(
        ray_serve: str, registry: Any, models: dict[str, Any]) -> None:
    import ray

    cfg = replace(gateway_config(weight=100.0), app_name="gw-dead")
    with deployed(ray_serve, registry, models["v1"], models["v2"], cfg) as app:
        assert app.predict().headers["x-gateway-arm"] == "challenger"
        victims = [a for a in ray.util.list_named_actors(all_namespaces=True)
                   if "gw-dead" in a["name"] and "slot_b" in a["name"]]
        assert victims, "challenger replica actor not found"
        for actor in victims:
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
        statuses = [app.predict().status_code for _ in range(20)]
        assert statuses == [200] * 20




@pytest.mark.parametrize("logged", ["input example", "nothing"])
def test_a_challenger_without_a_signature_that_always_fails_never_gets_traffic(
        ray_serve: str, registry: Any, models: dict[str, Any], logged: str) -> None:
    """Logged with an input example, MLflow's signature inference calls the model, which
    raises, so the version has no signature: the health check runs on the example. Logged
    with neither, there is nothing to check it with: the version is refused. Either way the
    rollout fails at loading, with the reason in its status and audit record."""
    import numpy as np

    from gateway.control.audit import AuditLog
    from model_registry.testing import log_pyfunc_model
    from tests.e2e.gateway.rollout_helpers import Traffic, finished, start_rollout

    example = np.full((2, 8), 0.5, dtype=np.float32) if logged == "input example" else None
    info = log_pyfunc_model(registry.tracking_uri, linear(Faults(error_rate=1.0, fail_after=0)),
                            input_example=example)
    broken = registry.register(info.runs_uri, tags={"description": f"unsigned, {logged}"})
    reason = (f"version {broken.version}: health check on its logged input example failed: "
              "RuntimeError: injected model failure" if example is not None else
              f"version {broken.version} has neither a signature nor an input example to "
              "health-check it; log one, or set slots.health_check: allow_unchecked "
              "(gateway.yaml) to serve it unchecked")
    cfg = replace(gateway_config(weight=50.0), app_name=f"gw-unsigned-{logged.split()[0]}")
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=20) as traffic:
        start_rollout(app, broken)
        status = finished(app, broken.version)
        assert status["phase"] == "failed", status
        assert reason in status["reason"], status["reason"]
        assert status["requests"]["challenger"] == 0, status["requests"]
        counts = replica_counts(app)
    assert traffic.answers and traffic.statuses() == {200: len(traffic.answers)}
    assert {a.arm for a in traffic.answers} == {"champion"}
    assert not [k for k in counts if k.startswith("challenger.")], counts
    audit = AuditLog(cfg.supervisor.audit_path)
    failed = wait_for(lambda: [r for r in audit.read(status["rollout_id"])
                               if r.event == "load_failed"], 20, "the load_failed record")
    assert reason in failed[0].reason, failed[0]
    assert failed[0].challenger_version == broken.version
