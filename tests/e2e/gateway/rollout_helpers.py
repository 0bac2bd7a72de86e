"""Shared pieces of the rollout e2e tests: an alert sink, live traffic (`Traffic`, the shared
generator of gateway.demo.traffic: `with Traffic(app.url, rate=40) as traffic:`), policies."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gateway.demo.models import Faults
from gateway.demo.run import register_pyfunc_model
from gateway.demo.traffic import Traffic
from model_registry.refs import CHALLENGER, ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import Deployed, gateway_config, linear, wait_for

__all__ = ["HOLD_50", "TERMINAL", "Sink", "Traffic", "check_alerts", "check_mlflow_run",
           "finished", "judged_config", "register", "start_rollout"]

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


def check_alerts(sink: Sink, version: str) -> None:
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


def check_mlflow_run(registry: ModelRegistry, cfg: Any, rollout_id: str, outcome: str) -> None:
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
    # The report and its data, beside the verdict (stored after the outcome tag).
    names = wait_for(lambda: (n := {a.path for a in client.list_artifacts(found.info.run_id)})
                     >= {"verdict.json", "report.html", "timeline.json"} and n, 30,
                     "the run's verdict and report artifacts",
                     detail=lambda: [a.path for a in client.list_artifacts(found.info.run_id)])
    assert "verdict.json" in names


def check_report(app: Deployed, rollout_id: str, outcome: str, tmp: Path) -> str:
    """The rollout's report from the admin API: HTML naming the rollout and its outcome,
    every chart drawn in a real browser (where Chromium is installed); and the route's
    refusals. Returns the page."""
    from tests.browser import CHROMIUM, rendered_charts

    resp = app.admin("GET", f"/admin/rollout/report?rollout={rollout_id}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    page = resp.text
    assert rollout_id in page and outcome in page
    assert "http://" not in page and "https://" not in page  # self-contained
    charts = page.count('<svg class="chart"')
    assert charts >= 4, charts
    if CHROMIUM is not None:
        path = tmp / f"{rollout_id}.html"
        path.write_text(page, encoding="utf-8")
        assert rendered_charts(tmp, path) == charts
    assert app.client.get("/admin/rollout/report").status_code == 401  # no token
    bad = app.admin("GET", "/admin/rollout/report?rollout=../../etc")
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "rollout", bad.text
    unknown = app.admin("GET", "/admin/rollout/report?rollout=no-such-rollout-v1-0")
    assert unknown.status_code == 404, unknown.text
    return page


