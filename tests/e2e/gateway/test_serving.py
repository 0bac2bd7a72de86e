"""The serving core end to end: real MLflow models, real Ray Serve, real HTTP."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from gateway.demo.models import N_FEATURES
from tests.e2e.gateway.harness import Deployed, blast, replica_counts, wait_counts

pytestmark = pytest.mark.slow


def set_weights(app: Deployed, weight: float, mode: str = "split") -> dict[str, Any]:
    resp = app.admin("POST", "/admin/weights", json={"challenger_weight": weight, "mode": mode})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_predict_answers_with_model_and_headers(healthy_app: Deployed) -> None:
    resp = healthy_app.predict([[1.0] * N_FEATURES, [0.0] * N_FEATURES],
                               headers={"x-request-id": "req-42"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["outputs"]) == 2
    assert body["model"]["name"] == healthy_app.registry.model_name
    assert resp.headers["x-gateway-arm"] in ("champion", "challenger")
    assert resp.headers["x-gateway-model-version"] == body["model"]["version"]
    assert resp.headers["x-request-id"] == "req-42"
    assert healthy_app.client.get("/healthz").json()["status"] == "ok"


def test_split_fidelity_within_three_binomial_sd(healthy_app: Deployed) -> None:
    weight = 30.0
    set_weights(healthy_app, weight)
    n = 2000
    responses = blast(healthy_app.url, n)
    assert all(r.status_code == 200 for r in responses)
    share = Counter(r.headers["x-gateway-arm"] for r in responses)["challenger"] / n
    p = weight / 100
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(share - p) <= 3 * sd, f"challenger share {share:.3f}, expected {p} ± {3 * sd:.3f}"


def test_sticky_key_always_lands_on_one_arm(healthy_app: Deployed) -> None:
    set_weights(healthy_app, 50.0)
    arms_by_key = {}
    for key in ("alice", "bob", "carol", "dave", "erin", "frank"):
        arms = {healthy_app.predict(headers={"x-gateway-key": key}).headers["x-gateway-arm"]
                for _ in range(100 if key == "alice" else 10)}
        assert len(arms) == 1, f"key {key} landed on {arms}"
        arms_by_key[key] = arms.pop()
    assert set(arms_by_key.values()) == {"champion", "challenger"}, arms_by_key


def test_shadow_mode_champion_answers_and_challenger_gets_a_copy(healthy_app: Deployed) -> None:
    set_weights(healthy_app, 0.0, "shadow")
    before = replica_counts(healthy_app)
    responses = [healthy_app.predict() for _ in range(40)]
    assert {r.headers["x-gateway-arm"] for r in responses} == {"champion"}
    assert all(r.status_code == 200 for r in responses)
    after = wait_counts(healthy_app, "challenger.ok", before.get("challenger.ok", 0) + 40)
    assert after.get("challenger.ok", 0) - before.get("challenger.ok", 0) == 40
    set_weights(healthy_app, 30.0, "split")


def test_pinned_mode_sends_nothing_to_the_challenger(healthy_app: Deployed) -> None:
    set_weights(healthy_app, 100.0, "pinned")
    assert {healthy_app.predict().headers["x-gateway-arm"] for _ in range(30)} == {"champion"}
    set_weights(healthy_app, 30.0, "split")


BAD_INPUTS = [
    ("invalid json", b"{not json", 400, "invalid JSON"),
    ("not an object", b"[1, 2, 3]", 400, "expected a JSON object"),
    ("missing inputs", b'{"instances": [[1]]}', 422, "inputs: missing"),
    ("wrong shape", b'{"inputs": [[1.0, 2.0, 3.0]]}', 422, "expected shape (N, 8)"),
    ("wrong dtype", b'{"inputs": [["a", "b", "c", "d", "e", "f", "g", "h"]]}', 422,
     "expected numbers"),
    ("ragged rows", b'{"inputs": [[1, 2, 3, 4, 5, 6, 7, 8], [1]]}', 422, "ragged"),
    ("not a list", b'{"inputs": 3}', 422, "expected a list"),
    ("non-finite", b'{"inputs": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}', 422, "NaN"),
]


@pytest.mark.parametrize(("name", "body", "status", "message"), BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_4xx(healthy_app: Deployed, name: str, body: bytes,
                                    status: int, message: str) -> None:
    resp = healthy_app.client.post("/v1/predict", content=body,
                                   headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert message in error["message"], error


def test_oversized_body_gets_413(healthy_app: Deployed) -> None:
    limit = healthy_app.cfg.http.max_body_bytes
    resp = healthy_app.client.post("/v1/predict", content=b"x" * (limit + 1))
    assert resp.status_code == 413
    assert "exceeds the limit" in resp.json()["error"]["message"]


def test_bad_input_never_counts_against_a_model(healthy_app: Deployed) -> None:
    set_weights(healthy_app, 100.0)
    before = replica_counts(healthy_app)
    for _, body, _, _ in BAD_INPUTS:
        healthy_app.client.post("/v1/predict", content=body)
    after = replica_counts(healthy_app)
    for arm in ("champion", "challenger"):
        for outcome in ("server_error", "timeout"):
            key = f"{arm}.{outcome}"
            assert after.get(key, 0) == before.get(key, 0), (key, after)
    set_weights(healthy_app, 30.0)


def test_unknown_route_and_method(healthy_app: Deployed) -> None:
    assert healthy_app.client.get("/nope").status_code == 404
    resp = healthy_app.client.get("/v1/predict")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"


@pytest.mark.parametrize("path", ["/admin/rollout", "/admin/weights"])
def test_admin_requires_the_bearer_token(healthy_app: Deployed, path: str) -> None:
    method = "GET" if path == "/admin/rollout" else "POST"
    body = {"challenger_weight": 30.0}
    none = healthy_app.client.request(method, path, json=body)
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == "Bearer"
    wrong = healthy_app.admin(method, path, token="not-the-token", json=body)
    assert wrong.status_code == 403
    right = healthy_app.admin(method, path, json=body)
    assert right.status_code == 200, right.text


def test_admin_rollout_shows_table_and_both_models(healthy_app: Deployed) -> None:
    view = healthy_app.admin("GET", "/admin/rollout").json()
    assert view["champion"]["version"] != view["challenger"]["version"]
    assert view["table"]["champion_slot"] == "a"
    assert view["table"]["challenger_slot"] == "b"


@pytest.mark.parametrize(("body", "message"), [
    ({"challenger_weight": 101}, "must be in [0, 100]"),
    ({"challenger_weight": "ten"}, "expected a number"),
    ({"mode": "random"}, "mode: must be one of"),
    ({"weight": 3}, "unknown field"),
])
def test_admin_weights_rejects_bad_values(healthy_app: Deployed, body: dict[str, Any],
                                          message: str) -> None:
    resp = healthy_app.admin("POST", "/admin/weights", json=body)
    assert resp.status_code == 422
    assert message in resp.json()["error"]["message"]
