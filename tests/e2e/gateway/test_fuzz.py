"""Bad input, systematically: schemathesis against the gateway's own OpenAPI document, through
the real Serve proxy, plus hand-written nasty requests. No answer may be a 5xx, every answer
must match the document, no replica may restart, and nothing may count against a model."""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from gateway.demo.run import register_pyfunc_model
from gateway.serving.openapi import ROUTES
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import (
    Deployed,
    deployed,
    describe_replicas,
    gateway_config,
    linear,
    replica_windows,
)

# The proxy's header guard (gateway.serving.http.HeaderGuard) is on: tests/conftest.py sets
# RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH before the session's Ray starts.

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "30"))  # per operation and mode
ADMIN = ("/admin/",)


@pytest.fixture(scope="module")
def fuzz_app(ray_serve: str, registry: ModelRegistry,
             models: dict[str, ModelRef]) -> Iterator[Deployed]:
    cfg = replace(gateway_config(weight=50.0), app_name="gw-fuzz")
    # A challenger of its own: the generated admin calls may promote and roll it back, and a
    # judged version is never rolled out again (the shared `v2` must stay unjudged).
    challenger = register_pyfunc_model(registry, linear(scale=1.01), "fuzz challenger")
    with deployed(ray_serve, registry, models["v1"], challenger, cfg) as app:
        yield app


def _token() -> str:
    return os.environ["GATEWAY_ADMIN_TOKEN"]


def _snapshot(app: Deployed) -> dict[str, Any]:
    views = describe_replicas(app)
    return {"ingress": sorted((v["replica"], v["pid"]) for v in views)}


def _assert_nothing_counted_against_a_model(app: Deployed) -> None:
    time.sleep(0.5)  # one flush interval and more: what is pending reaches the windows view
    for version, outcomes in replica_windows(app).items():
        for outcome in ("server_error", "timeout"):
            assert outcomes.get(outcome, 0) == 0, (version, dict(outcomes))
    counts = app.admin("GET", "/admin/rollout").json()["replica_counts"]
    bad = {k: n for k, n in counts.items() if k.endswith((".server_error", ".timeout"))}
    assert not any(bad.values()), bad


def test_generated_requests_match_the_document(fuzz_app: Deployed) -> None:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        response_schema_conformance,
        status_code_conformance,
    )

    before = _snapshot(fuzz_app)
    schema = schemathesis.openapi.from_url(f"{fuzz_app.url}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    ran: Counter[str] = Counter()
    operations = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]
    # State-changing admin operations last, so the rest runs against a live canary.
    operations.sort(key=lambda op: op.path.startswith("/admin/rollout/"))
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    # schemathesis leaves out the document's own URL; it is fetched above, and below.
    assert labels == {f"{m} {p}" for m, p in ROUTES} - {"GET /openapi.json"}, labels
    for op in operations:
        auths = ([{"authorization": f"Bearer {_token()}"}, {}] if op.path.startswith(ADMIN)
                 else [{}])
        for headers in auths:
            for mode in (schemathesis.GenerationMode.POSITIVE,
                         schemathesis.GenerationMode.NEGATIVE):
                label = f"{op.method.upper()} {op.path} {mode.value}" + (
                    " +token" if headers else "")

                _fuzz(op, mode, url=fuzz_app.url, headers=headers, checks=checks,
                      ran=ran, label=label)
    print("\ngenerated requests per operation:", dict(sorted(ran.items())))
    assert sum(ran.values()) >= len(operations) * EXAMPLES
    assert _snapshot(fuzz_app) == before, "an ingress replica restarted"
    _assert_nothing_counted_against_a_model(fuzz_app)


def _fuzz(op: Any, mode: Any, *, url: str, headers: dict[str, str], checks: list[Any],
          ran: Counter[str], label: str) -> None:
    """EXAMPLES generated requests for one operation: each is sent, then checked."""
    from hypothesis import HealthCheck, Phase, given, settings

    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(mode))
    def run(case: Any) -> None:
        ran[label] += 1
        resp = case.call(base_url=url, headers=headers, timeout=30)
        case.validate_response(resp, checks=checks)

    run()


NESTED = b"[" * 5000 + b"]" * 5000
NASTY = [
    ("deep nesting", NESTED, {}, 400, "deeper than 64"),
    ("deep object", b'{"inputs":' * 3000 + b"1" + b"}" * 3000, {}, 400, "deeper than 64"),
    ("huge integer", b'{"inputs": [' + b"9" * 5000 + b"]}", {}, 400, "5000 digits"),
    ("21-digit integer", b'{"challenger_weight": 100000000000000000000}', {}, 400, "digits"),
    ("non-UTF-8", b'{"inputs": "\xc3\x28"}', {}, 400, "not UTF-8"),
    ("lone surrogate", b'{"inputs": "\\udc00"}', {}, 400, "surrogate"),
    ("duplicate keys", b'{"inputs": [[1]], "inputs": [[2]]}', {}, 400, "duplicate key"),
    ("empty body", b"", {}, 400, "empty"),
    ("form body", b"a=1&b=2", {"content-type": "application/x-www-form-urlencoded"}, 400,
     "invalid JSON"),
]
POSTS = ["/v1/predict", "/v1/feedback", "/v1/completions", "/v1/chat/completions",
         "/admin/weights"]


def _validate(schema: Any, method: str, path: str, resp: httpx.Response) -> None:
    schema[path][method].validate_response(resp)


@pytest.fixture(scope="module")
def document(fuzz_app: Deployed) -> Any:
    import schemathesis

    return schemathesis.openapi.from_url(f"{fuzz_app.url}/openapi.json")


@pytest.mark.parametrize(("name", "body", "headers", "status", "message"), NASTY,
                         ids=[n[0] for n in NASTY])
def test_nasty_bodies_get_a_400_naming_the_problem(
        fuzz_app: Deployed, document: Any, name: str, body: bytes, headers: dict[str, str],
        status: int, message: str) -> None:
    auth = {"authorization": f"Bearer {_token()}"}
    for path in POSTS:
        resp = fuzz_app.client.post(path, content=body, headers={
            **headers, **(auth if path.startswith(ADMIN) else {})})
        assert resp.status_code == status, (path, resp.text)
        assert message in resp.json()["error"]["message"], (path, resp.text)
        _validate(document, "POST", path, resp)


def test_non_finite_numbers_are_refused_by_the_field(fuzz_app: Deployed, document: Any) -> None:
    for path, body, field in [
            ("/v1/predict", b'{"inputs": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}', "inputs"),
            ("/v1/feedback", b'{"request_id": "r", "value": Infinity}', "value"),
            ("/v1/completions", b'{"prompt": "x", "temperature": NaN}', "temperature"),
            ("/v1/feedback", b'{"request_id": "r", "value": 1e999}', "value")]:
        resp = fuzz_app.client.post(path, content=body)
        assert resp.status_code == 422, (path, resp.text)
        error = resp.json()["error"]
        assert error.get("field", error.get("param")) == field
        _validate(document, "POST", path, resp)
    weights = fuzz_app.admin("POST", "/admin/weights", content=b'{"challenger_weight": NaN}')
    assert weights.status_code == 422 and "challenger_weight" in weights.text


def test_json_with_another_content_type_is_read_as_json(fuzz_app: Deployed) -> None:
    """A documented leniency: the body is read as JSON whatever content-type says, as the
    README's `curl -d` (form-encoded by default) relies on."""
    resp = fuzz_app.client.post("/v1/predict", content=b'{"inputs": [[0.5, 0.5, 0.5, 0.5, '
                                b'0.5, 0.5, 0.5, 0.5]]}', headers={"content-type": "text/plain"})
    assert resp.status_code == 200, resp.text


def test_request_ids_are_bounded_through_the_real_proxy(fuzz_app: Deployed,
                                                        document: Any) -> None:
    ok = fuzz_app.predict(headers={"x-request-id": "req-42"})
    assert ok.headers.get_list("x-request-id") == ["req-42"]
    for bad in ("has space", "<script>alert(1)</script>", "a" * 129, "caf\u00e9".encode()):
        resp = fuzz_app.predict(headers={"x-request-id": bad})
        assert resp.status_code == 200, resp.text
        echoed = resp.headers.get_list("x-request-id")
        assert len(echoed) == 1 and len(echoed[0]) == 32 and echoed[0].isalnum(), echoed
        _validate(document, "POST", "/v1/predict", resp)
    huge = fuzz_app.predict(headers={"x-request-id": "a" * 10_000})
    assert huge.status_code == 431, huge.text
    assert huge.json()["error"]["field"] == "x-request-id"
    assert len(huge.headers.get("x-request-id", "")) <= 128  # the 10 kB id is not echoed
    _validate(document, "POST", "/v1/predict", huge)


@pytest.mark.parametrize(("path", "method"), [("/v1/predict", "POST"), ("/healthz", "GET"),
                                              ("/admin/rollout", "GET"), ("/nope", "GET")])
def test_oversized_and_too_many_headers_get_431(fuzz_app: Deployed, path: str,
                                                method: str) -> None:
    for headers in ({"x-gateway-actor": "a" * 9000}, {"authorization": "Bearer " + "t" * 9000},
                    {f"x-h{i}": "v" for i in range(120)},
                    {f"x-h{i}": "v" * 8000 for i in range(6)}):
        resp = fuzz_app.client.request(method, path, headers=headers, content=b"{}")
        assert resp.status_code == 431, (path, resp.status_code, resp.text[:200])
        assert resp.json()["error"]["type"] == "header_too_large"


def test_a_one_megabyte_header_is_refused_not_parsed(fuzz_app: Deployed) -> None:
    """Serve's proxy runs uvicorn with httptools, which sets no header size limit: the
    gateway's guard is what answers. Raw socket: the answer must come, and be a 431."""
    host, port = fuzz_app.url.removeprefix("http://").split(":")
    request = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: " + b"a" * 1_000_000
               + b"\r\nConnection: close\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 431"), head[:200]


def test_bad_sticky_keys_and_actors(fuzz_app: Deployed, document: Any) -> None:
    resp = fuzz_app.predict(headers={"x-gateway-key": "k" * 300})
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "x-gateway-key"
    _validate(document, "POST", "/v1/predict", resp)
    reason = fuzz_app.admin("POST", "/admin/rollout/pause", json={"reason": "r" * 2000})
    assert reason.status_code == 422 and reason.json()["error"]["field"] == "reason"


def test_after_all_of_it_nothing_restarted_or_counted(fuzz_app: Deployed) -> None:
    assert fuzz_app.client.get("/healthz").json()["status"] == "ok"
    _assert_nothing_counted_against_a_model(fuzz_app)
