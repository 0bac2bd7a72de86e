"""No secret reaches logs, metrics, audit records, MLflow, responses or alert payloads.

A real gateway runs with distinctive secret strings in every place one can be configured:
the admin token (env), an MLflow tracking URI with a password (a real `mlflow server`), a
webhook URL with a token in its query, a webhook header from the environment, a Slack
webhook URL from the environment, a PagerDuty routing key, a hallucination-scorer URL with
an API key, and a client's own `Authorization: Bearer` on /v1/predict. A rollout is driven
to a rollback, admin operations run with the right, a wrong and no token; then every file
of this Ray instance's session directory, the audit log, the Prometheus text, the MLflow
server's store and artifacts, the rollout's MLflow run, the registered model, every HTTP
answer and every alert payload are searched for each secret. Each secret is also checked
to have really been used (the sink got the alert at the secret URL, the right token worked,
the run was written through the credentialed URI), so the search cannot pass by accident.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.procs import mlflow_server as running_mlflow_server
from gateway import metrics as gm
from gateway.demo.models import Faults
from gateway.demo.run import register_pyfunc_model
from model_registry.refs import CHALLENGER
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import Deployed, deployed, gateway_config, linear, wait_for

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_TAG = uuid.uuid4().hex[:12]
SECRETS = {
    "admin token": f"SECRETadmin{_TAG}",
    "wrong admin token": f"SECRETwrong{_TAG}",
    "client bearer": f"SECRETclient{_TAG}",
    "mlflow password": f"SECRETmlflow{_TAG}",
    "webhook query token": f"SECRETquery{_TAG}",
    "webhook header": f"SECRETheader{_TAG}",
    "slack url path": f"SECRETslack{_TAG}",
    "pagerduty key": f"SECRETpd{_TAG}",
    "scorer api key": f"SECRETscorer{_TAG}",
}
SINK_PORT = _free_port()
# Replicas and the supervisor inherit the environment of the process that starts Ray, and
# test modules are imported (collected) before the session's Ray starts: set them here.
ENV = {
    "GW_SECRETS_ADMIN_TOKEN": SECRETS["admin token"],
    "GW_SECRETS_HOOK_HEADER": f"Bearer {SECRETS['webhook header']}",
    "GW_SECRETS_SLACK_URL":
        f"http://127.0.0.1:{SINK_PORT}/slack/T000/B000/{SECRETS['slack url path']}",
    "GW_SECRETS_PD_KEY": SECRETS["pagerduty key"],
}
os.environ.update(ENV)
MAX_BODY = 4096


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Evidence:
    """Everything the gateway produced that the search covers, and what proves use."""

    app: Deployed
    server_root: Path
    rollout_id: str
    responses: list[httpx.Response] = field(default_factory=list)
    alerts: list[Received] = field(default_factory=list)
    metrics_text: str = ""


class Sink:
    """A local HTTP server on SINK_PORT recording every alert with its headers."""

    def __init__(self) -> None:
        received: list[Received] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(Received(self.path, {k.lower(): v for k, v in
                                                     self.headers.items()}, json.loads(body)))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", SINK_PORT), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def mlflow_server() -> Iterator[tuple[str, Path]]:
    """A real `mlflow server` (no auth of its own: it ignores the Basic credentials the
    client derives from the URI); yields (credentialed tracking URI, its data folder)."""
    root = Path(tempfile.mkdtemp(prefix="gw-secrets-mlflow-"))
    with running_mlflow_server(root, f"sqlite:///{root}/db.sqlite", start_timeout_s=120) as uri:
        yield uri.replace("http://", f"http://gw:{SECRETS['mlflow password']}@", 1), root


def _config(app_name: str) -> Any:
    hook = f"http://127.0.0.1:{SINK_PORT}/hook?token={SECRETS['webhook query token']}"
    overrides = {
        "http": {"max_body_bytes": MAX_BODY},
        "admin": {"token_env": "GW_SECRETS_ADMIN_TOKEN"},
        "rollout": {"steps": [{"weight": 50.0, "min_requests": 10**9, "min_duration_s": 10**6}],
                    "auto_promote": False},
        "alerts": [
            # A literal secret in the URL (the case docs/security.md advises against), and
            # one from the environment in a header.
            {"type": "webhook", "url": hook,
             "headers": {"authorization": "${GW_SECRETS_HOOK_HEADER}"}},
            {"type": "slack", "url": "${GW_SECRETS_SLACK_URL}"},
            {"type": "pagerduty", "url": f"http://127.0.0.1:{SINK_PORT}/pagerduty",
             "routing_key_env": "GW_SECRETS_PD_KEY"},
        ],
        "hallucination": {"scorer": "http", "scorer_params": {
            "url": f"http://127.0.0.1:9/score?api_key={SECRETS['scorer api key']}"}},
    }
    return replace(gateway_config(overrides, judged=True), app_name=app_name)


def _admin(ev: Evidence, method: str, path: str, token: str | None,
           **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    resp = ev.app.client.request(method, path, headers={**headers, **kw.pop("headers", {})},
                                 **kw)
    ev.responses.append(resp)
    return resp


def _status(ev: Evidence) -> dict[str, Any]:
    resp = _admin(ev, "GET", "/admin/rollout", SECRETS["admin token"])
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _predict(ev: Evidence) -> httpx.Response:
    resp = ev.app.predict(headers={"authorization": f"Bearer {SECRETS['client bearer']}"})
    ev.responses.append(resp)
    assert resp.status_code == 200, resp.text
    return resp


@pytest.fixture(scope="module")
def evidence(ray_serve: str, metrics_port: int,
             mlflow_server: tuple[str, Path]) -> Iterator[Evidence]:
    uri, root = mlflow_server
    sink = Sink()
    registry = ModelRegistry(f"gw-secrets-{_TAG[:6]}", tracking_uri=uri)
    champion = register_pyfunc_model(registry, linear(), "secrets champion")
    bad = register_pyfunc_model(registry, linear(Faults(error_rate=1.0), scale=0.99),
                                "secrets challenger")
    cfg = _config("gw-secrets")
    try:
        with deployed(ray_serve, registry, champion, None, cfg) as app:
            ev = Evidence(app, root, "")
            for _ in range(5):
                _predict(ev)
            registry.set_alias(CHALLENGER, bad.version, actor="test", reason="secrets")
            wait_for(lambda: _status(ev)["phase"] == "canary", 90, "the canary")
            _admin_ops(ev)

            def rolled_back() -> bool:
                for _ in range(5):
                    _predict(ev)
                return bool(_status(ev)["phase"] == "rolled_back")

            wait_for(rolled_back, 90, "the rollback")
            ev.rollout_id = str(_status(ev)["rollout_id"])
            wait_for(lambda: {a.path.split("?")[0] for a in sink.received}
                     >= {"/hook", f"/slack/T000/B000/{SECRETS['slack url path']}",
                         "/pagerduty"}, 30, "the alerts")
            ev.alerts = list(sink.received)
            ev.metrics_text = gm.scrape(gm.metrics_url(metrics_port))
            gm.scrape_until(gm.metrics_url(metrics_port), lambda p: gm.total(
                p, "ray_gateway_rollbacks_total") >= 1, timeout_s=45)
            ev.metrics_text = gm.scrape(gm.metrics_url(metrics_port))
            _wait_run_finished(registry, cfg, ev.rollout_id)
            time.sleep(1.0)  # let the workers' last log lines reach their files
            yield ev
    finally:
        sink.close()


def _admin_ops(ev: Evidence) -> None:
    """Refused without and with a wrong token; then a pause and a resume that work."""
    wrong = SECRETS["wrong admin token"]
    assert _admin(ev, "GET", "/admin/rollout", None).status_code == 401
    assert _admin(ev, "GET", "/admin/rollout", wrong).status_code == 403
    assert _admin(ev, "POST", "/admin/rollout/pause", wrong,
                  json={"reason": "should be refused"}).status_code == 403
    assert _status(ev)["phase"] == "canary"
    for op in ("pause", "resume"):
        resp = _admin(ev, "POST", f"/admin/rollout/{op}", SECRETS["admin token"],
                      json={"reason": f"secrets test {op}"})
        assert resp.status_code == 200, resp.text


def _wait_run_finished(registry: ModelRegistry, cfg: Any, rollout_id: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry.tracking_uri)

    def done() -> bool:
        exp = client.get_experiment_by_name(cfg.supervisor.rollout_experiment)
        runs = [] if exp is None else client.search_runs(
            [exp.experiment_id], f"tags.`gateway.rollout_id` = '{rollout_id}'")
        return bool(runs) and runs[0].data.tags.get("gateway.outcome") == "rolled_back"

    wait_for(done, 30, "the MLflow rollout run")


def _leaks(blob: bytes | str) -> list[str]:
    data = blob.encode(errors="replace") if isinstance(blob, str) else blob
    # The wrong token is a secret too: a client that mistyped one may have sent a real one.
    return [name for name, value in SECRETS.items() if value.encode() in data]


def _scan_tree(root: Path) -> dict[str, list[str]]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            try:
                leaks = _leaks(path.read_bytes())
            except OSError:
                continue
            if leaks:
                found[str(path)] = leaks
    return found


def test_the_secrets_were_really_used(evidence: Evidence) -> None:
    """The search below means something only if each secret was configured and used."""
    hooks = [a for a in evidence.alerts if a.path.startswith("/hook")]
    assert hooks and all(SECRETS["webhook query token"] in a.path for a in hooks)
    assert all(a.headers.get("authorization") == f"Bearer {SECRETS['webhook header']}"
               for a in hooks)
    assert any(SECRETS["slack url path"] in a.path for a in evidence.alerts)
    pd = [a for a in evidence.alerts if a.path == "/pagerduty"]
    assert pd and all(a.body["routing_key"] == SECRETS["pagerduty key"] for a in pd)
    assert SECRETS["mlflow password"] in evidence.app.registry.tracking_uri
    codes = [r.status_code for r in evidence.responses if r.request.url.path.startswith("/admin")]
    assert {200, 401, 403} <= set(codes)


def test_no_secret_in_any_ray_log_file(evidence: Evidence) -> None:
    import ray

    node = ray._private.worker._global_node  # this test session's Ray instance
    assert node is not None
    session = Path(node.get_session_dir_path())
    logs = list((session / "logs").rglob("*"))
    # The search reads the files the gateway's processes write: the app appears there.
    assert any(p.is_file() and b"gw-secrets" in p.read_bytes() for p in logs), session
    assert _scan_tree(session) == {}


def test_no_secret_in_the_audit_log(evidence: Evidence) -> None:
    audit = Path(evidence.app.cfg.supervisor.audit_path)
    text = audit.read_text()
    assert '"event":"rolled_back"' in text and '"event":"paused"' in text
    assert _leaks(text) == []


def test_no_secret_in_the_metrics(evidence: Evidence) -> None:
    assert "ray_gateway_requests_total" in evidence.metrics_text
    assert _leaks(evidence.metrics_text) == []


def test_no_secret_in_mlflow(evidence: Evidence) -> None:
    from mlflow import MlflowClient

    registry = evidence.app.registry
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    exp = client.get_experiment_by_name(evidence.app.cfg.supervisor.rollout_experiment)
    assert exp is not None
    run = client.search_runs([exp.experiment_id],
                             f"tags.`gateway.rollout_id` = '{evidence.rollout_id}'")[0]
    recorded: list[Any] = [run.data.params, run.data.tags, run.data.metrics, exp.tags,
                           exp.artifact_location]
    with tempfile.TemporaryDirectory() as tmp:
        client.download_artifacts(run.info.run_id, "", tmp)
        assert (Path(tmp) / "verdict.json").is_file()
        assert _scan_tree(Path(tmp)) == {}
    model = client.get_registered_model(registry.model_name)
    recorded += [model.tags, model.description, model.aliases]
    for mv in client.search_model_versions(f"name = '{registry.model_name}'"):
        recorded += [mv.tags, mv.source, mv.description, mv.run_link]
    assert any(k.startswith("gateway.") for mv in client.search_model_versions(
        f"name = '{registry.model_name}'") for k in mv.tags)
    assert _leaks(json.dumps(recorded, default=str)) == []
    # Everything MLflow stored, whatever the API shows: the server's database and artifacts.
    store = {p: v for p, v in _scan_tree(evidence.server_root).items()
             if not p.endswith("server.log")}
    assert store == {}


def test_no_secret_in_any_http_answer(evidence: Evidence) -> None:
    for resp in evidence.responses:
        head = json.dumps(dict(resp.headers))
        assert _leaks(resp.content) == [] and _leaks(head) == [], resp.request.url


def test_alert_payloads_carry_no_secret(evidence: Evidence) -> None:
    for alert in evidence.alerts:
        body = dict(alert.body)
        if alert.path == "/pagerduty":  # the routing key is how PagerDuty routes: only there
            assert body.pop("routing_key") == SECRETS["pagerduty key"]
        assert _leaks(json.dumps(body)) == [], alert.path


def test_admin_bodies_are_bounded_and_auth_comes_first(evidence: Evidence) -> None:
    big = b"{" + b" " * (MAX_BODY + 10) + b"}"
    refused = _admin(evidence, "POST", "/admin/weights", SECRETS["wrong admin token"],
                     content=big)
    assert refused.status_code == 403, refused.text
    too_big = _admin(evidence, "POST", "/admin/weights", SECRETS["admin token"], content=big)
    assert too_big.status_code == 413, too_big.text
    assert "limit" in too_big.json()["error"]["message"]


def test_oversized_headers_are_refused_on_admin_routes_too(evidence: Evidence) -> None:
    from gateway.serving.http import MAX_HEADER_BYTES

    big = {"x-padding": "a" * (MAX_HEADER_BYTES + 1)}
    for token in (None, SECRETS["admin token"]):
        resp = _admin(evidence, "GET", "/admin/rollout", token, headers=big)
        assert resp.status_code == 431, resp.text
    assert _status(evidence)["phase"] == "rolled_back"  # still serving
