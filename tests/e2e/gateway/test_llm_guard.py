"""The hallucination guard end to end: an ungrounded LLM challenger is rolled back."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from model_registry.refs import CHALLENGER, ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import deployed, gateway_config, wait_for
from tests.e2e.gateway.llm_helpers import ITEMS, chat_body, register_lms

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lms(registry: ModelRegistry) -> dict[str, ModelRef]:
    return register_lms(registry)


def test_ungrounded_challenger_is_rolled_back_by_the_hallucination_guard(
        ray_serve: str, registry: ModelRegistry, lms: dict[str, ModelRef]) -> None:
    steps = [{"weight": 50.0, "min_requests": 10**9, "min_duration_s": 10**6}]
    overrides = {"rollout": {"steps": steps},
                 "triggers": [{"guard": "error_rate"}, {"guard": "hallucination_rate"}],
                 "hallucination": {"sample_rate": 1.0, "actors": 1, "batch_size": 4,
                                   "flush_interval_s": 0.2}}
    cfg = replace(gateway_config(overrides, judged=True), app_name="gw-llm-halluc")
    with deployed(ray_serve, registry, lms["grounded"], None, cfg) as app:
        registry.set_alias(CHALLENGER, lms["ungrounded"].version, actor="test",
                           reason="ungrounded challenger")
        app.wait_phase("canary")
        statuses = []
        deadline = time.monotonic() + 90
        i = 0
        while time.monotonic() < deadline and app.status()["phase"] == "canary":
            for _ in range(10):
                item = ITEMS[i % len(ITEMS)]
                resp = app.client.post("/v1/chat/completions", json=chat_body(item, seed=i))
                statuses.append(resp.status_code)
                i += 1
        status = wait_for(lambda: (s := app.status())["phase"] != "canary" and s, 30,
                          "the verdict")
    assert status["phase"] == "rolled_back", (
        status["hallucination_scores"],
        [r["detail"] for r in status["verdict"]["results"] if r["guard"] == "hallucination_rate"])
    assert "hallucination_rate" in status["reason"], status["reason"]
    assert set(statuses) == {200}
