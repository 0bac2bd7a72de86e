"""Faults end to end: a failing, slow, dead or broken model behind the real gateway."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from tests.e2e.gateway.harness import blast, deployed, gateway_config, replica_counts

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


