"""Serve autoscaling from gateway.yaml, and the champion's capacity kept through a rollback:
the champion slot takes the challenger's replica count before the challenger's replicas are
released, with Serve's own upscale delay far too long to have done it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.control.scaling import ServeScaler
from gateway.demo.models import Faults
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import deployed, wait_for
from tests.e2e.gateway.rollout_helpers import (
    HOLD_50,
    Sink,
    Traffic,
    finished,
    judged_config,
    register,
    start_rollout,
)

pytestmark = pytest.mark.slow

REPLICA_START_S = 240
SLOW_AUTOSCALER = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 50,
                   "upscale_delay_s": 600, "downscale_delay_s": 600}


def _details(app_name: str) -> dict[str, Any]:
    import ray

    from gateway.control.scaling import _controller

    details = ray.get(_controller().get_serve_instance_details.remote(), timeout=10)
    return dict(details["applications"][app_name]["deployments"])


@pytest.mark.timeout(900)
def test_autoscaling_settings_take_effect_and_the_champion_keeps_its_capacity(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef],
        sink: Sink) -> None:
    bad = register(registry, Faults(error_rate=1.0), what="raises, for the capacity test")
    cfg = judged_config("gw-autoscale", sink, HOLD_50, triggers=[{"guard": "error_rate"}],
                        slots={"autoscaling": SLOW_AUTOSCALER,
                               # how long the rollback waits for the champion's new replicas
                               "health_check_timeout_s": REPLICA_START_S},
                        ingress={"autoscaling": {"min_replicas": 1, "max_replicas": 2,
                                                 "target_ongoing_requests": 8}})
    scaler = ServeScaler(cfg.app_name)
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=30) as traffic:
        deployments = _details(cfg.app_name)
        for name, expected in (("slot_a", SLOW_AUTOSCALER), ("slot_b", SLOW_AUTOSCALER),
                               ("ingress", {"max_replicas": 2,
                                            "target_ongoing_requests": 8})):
            applied = deployments[name]["deployment_config"]["autoscaling_config"]
            assert applied is not None, name
            for key, value in expected.items():
                assert applied[key] == value, (name, key, applied)
        # The free slot grows to 2 replicas (as if the challenger had been autoscaled up
        # under its share of the traffic); the champion has 1.
        scaler.scale("b", 2)
        # A replica's start is the machine's speed (a worker process, imports, the model):
        # minutes on a CI machine whose two cores run the other test worker too.
        wait_for(lambda: scaler.count("b").running == 2, REPLICA_START_S,
                 "two replicas in the free slot", detail=lambda: scaler.count("b"))
        # Serve kept our count.
        assert scaler.count("a").running == 1 and scaler.count("b").target == 2

        start_rollout(app, bad)
        status = finished(app, bad.version)
        assert status["phase"] == "rolled_back", status
        # One read of Serve's state per sample (both slots at the same instant), until the
        # freed slot is released.
        samples: list[tuple[int, int]] = []  # (champion replicas running, freed slot's target)
        deadline = time.monotonic() + cfg.slots.health_check_timeout_s + REPLICA_START_S
        while time.monotonic() < deadline:
            deployments = _details(cfg.app_name)
            running_a = sum(1 for r in deployments["slot_a"]["replicas"]
                            if r["state"] == "RUNNING")
            samples.append((running_a, int(deployments["slot_b"]["target_num_replicas"])))
            if samples[-1][1] == 1:
                break
            time.sleep(0.2)
    assert traffic.statuses() == {200: len(traffic.answers)}, traffic.statuses()
    # Released, and not before the champion ran its 1 + 2 replicas.
    assert samples[-1] == (3, 1), samples
