"""What SREs see: the gateway's metrics on Ray's Prometheus endpoint, scraped for real and
parsed with prometheus_client, and the Grafana dashboard's queries checked against them."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway import metrics as gm
from gateway.demo.models import Faults
from gateway.demo.run import register_pyfunc_model
from model_registry.refs import CHALLENGER
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import deployed, gateway_config, linear, wait_for

pytestmark = pytest.mark.slow
DASHBOARD = Path(__file__).resolve().parents[3] / "configs" / "grafana" / "champion-gateway.json"
N_REQUESTS = 120


@pytest.fixture(scope="module")
def scraped(ray_serve: str, registry: ModelRegistry, metrics_port: int) -> dict[str, Any]:
    """Serve N requests on a fresh champion version, then roll back a failing challenger,
    then scrape until every gateway series has been exported."""
    champion = register_pyfunc_model(registry, linear(scale=0.97), "metrics champion")
    bad = register_pyfunc_model(registry, linear(Faults(error_rate=1.0), scale=0.98),
                                "metrics challenger")
    overrides = {"rollout": {"steps": [{"weight": 50.0, "min_requests": 10**9,
                                        "min_duration_s": 10**6}]},
                 "judge": {"price_per_replica_second": 0.002},
                 "supervisor": {"resource_interval_s": 0.5}}
    cfg = replace(gateway_config(overrides, judged=True), app_name="gw-metrics")
    url = gm.metrics_url(metrics_port)
    _llm_traffic(ray_serve, registry)  # TTFT, time per output token, output tokens (counters)
    with deployed(ray_serve, registry, champion, None, cfg) as app:
        statuses = [app.predict().status_code for _ in range(N_REQUESTS)]
        assert statuses == [200] * N_REQUESTS
        counted = gm.scrape_until(url, lambda p: gm.total(
            p, "ray_gateway_requests_total", model_version=champion.version) >= N_REQUESTS)
        registry.set_alias(CHALLENGER, bad.version, actor="test", reason="metrics")
        def rolled_back() -> bool:  # traffic is what reveals the failing challenger
            for _ in range(5):
                assert app.predict().status_code == 200
            return bool(app.status()["phase"] == "rolled_back")

        wait_for(rolled_back, 90, "the rollback")
        for _ in range(20):
            app.predict()
        time.sleep(1.0)
        # Gauges vanish with the processes that set them: scrape while the app runs.
        final = gm.scrape_until(url, lambda p: all(
            gm.select(p, name) for name in _expected_series()), timeout_s=45)
    return {"counted": counted, "final": final, "champion": champion, "bad": bad}


def _llm_traffic(ray_serve: str, registry: ModelRegistry) -> None:
    from gateway.demo.textgen import GroundedLM, load_corpus, register_textgen, train_lm

    lm = register_textgen(registry, GroundedLM(train_lm(load_corpus())), "metrics LLM")
    cfg = replace(gateway_config(), app_name="gw-metrics-llm")
    body = {"messages": [{"role": "system", "content": "The Rhine flows through Basel."},
                         {"role": "user", "content": "Where does the Rhine flow?"}],
            "max_tokens": 12, "stream": True}
    with deployed(ray_serve, registry, lm, None, cfg) as app:
        for _ in range(3):
            resp = app.client.post("/v1/chat/completions", json=body)
            assert resp.status_code == 200 and "[DONE]" in resp.text


def _expected_series() -> list[str]:
    return [spec.exported + ("_count" if spec.kind is gm.Kind.HISTOGRAM else "")
            for spec in gm.SPECS]


def test_request_counts_match_what_was_sent(scraped: dict[str, Any]) -> None:
    version = scraped["champion"].version
    parsed = scraped["counted"]
    assert gm.total(parsed, "ray_gateway_requests_total", model_version=version,
                    arm="champion", outcome="ok") == N_REQUESTS
    assert gm.total(parsed, "ray_gateway_request_latency_seconds_count",
                    model_version=version, arm="champion") == N_REQUESTS


def test_every_gateway_metric_is_exported_with_its_tags(scraped: dict[str, Any]) -> None:
    parsed, bad = scraped["final"], scraped["bad"]
    for name in _expected_series():
        assert gm.select(parsed, name), f"{name} missing from the scrape"
    assert gm.total(parsed, "ray_gateway_requests_total", arm="challenger",
                    model_version=bad.version, outcome="server_error") >= 1
    assert gm.total(parsed, "ray_gateway_failovers_total", model_version=bad.version) >= 1
    rollbacks = gm.select(parsed, "ray_gateway_rollbacks_total")
    assert any(s.labels.get("reason") == "guard" for s in rollbacks), rollbacks
    phases = {s.labels["phase"]: s.value for s in gm.select(parsed, "ray_gateway_rollout_phase")}
    assert phases.get("rolled_back") == 1.0, phases
    states = {s.labels["guard"] for s in gm.select(parsed, "ray_gateway_guard_state")}
    assert {"error_rate", "latency_p95"} <= states
    weights = [s.value for s in gm.select(parsed, "ray_gateway_challenger_weight")]
    assert weights and all(0.0 <= w <= 100.0 for w in weights)
    cost = gm.select(parsed, "ray_gateway_cost_per_inference", arm="champion")
    assert cost and all(0 < s.value < 1 for s in cost)
    memory = gm.select(parsed, "ray_gateway_memory_used_bytes", device="cpu")
    assert memory and all(s.value > 10 * 2**20 for s in memory)  # a replica's real RSS
    assert gm.total(parsed, "ray_gateway_ttft_seconds_count") >= 3
    assert gm.total(parsed, "ray_gateway_output_tokens_total") >= 3


def test_every_dashboard_query_names_a_scraped_metric(scraped: dict[str, Any]) -> None:
    found = set(scraped["final"])
    text = json.dumps(json.loads(DASHBOARD.read_text()))
    used = set(re.findall(r"ray_gateway_[a-z_]+", text))
    assert used, "the dashboard queries no gateway metric"
    missing = sorted(n for n in used if n not in found)
    assert not missing, f"dashboard metrics not in the live scrape: {missing}"
