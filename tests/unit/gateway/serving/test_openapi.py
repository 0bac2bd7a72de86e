"""The OpenAPI document of the ingress: valid OpenAPI 3.0, one entry per served route."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.config import parse_config
from gateway.serving.openapi import ADMIN_OPS, ROUTES, openapi_document

INGRESS = Path(__file__).resolve().parents[4] / "gateway" / "serving" / "ingress.py"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    cfg = parse_config({"http": {"max_body_bytes": 4096},
                        "routing": {"sticky_header": "X-Tenant"},
                        "model": {"name": "fraud"}, "llm": {"max_tokens_limit": 77}})
    return openapi_document(cfg)


def test_the_document_is_valid_openapi_3_0(doc: dict[str, Any]) -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_30

    jsonschema.Draft4Validator(OPENAPI_30).validate(doc)
    json.dumps(doc)  # served as JSON: nothing that does not serialise
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft4Validator.check_schema(schema)


def test_every_route_is_documented_and_nothing_else(doc: dict[str, Any]) -> None:
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert documented == set(ROUTES)
    assert len(ROUTES) == len(set(ROUTES)) == 9 + len(ADMIN_OPS)


def test_the_ingress_serves_exactly_the_routes_listed() -> None:
    """The ingress's handler table (read from its source, without Ray) has one handler per
    entry of ROUTES, and builds its routing table from ROUTES."""
    tree = ast.parse(INGRESS.read_text())
    literal = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Tuple) and all(isinstance(e, ast.Constant)
                                                       for e in key.elts):
                    literal.add(tuple(e.value for e in key.elts))  # type: ignore[attr-defined]
    admin = {("POST", f"/admin/rollout/{op}") for op in ADMIN_OPS}
    assert literal | admin == set(ROUTES)
    assert "self._routes = {route: handlers[route] for route in ROUTES}" in INGRESS.read_text()


def test_the_document_follows_the_config(doc: dict[str, Any]) -> None:
    predict = doc["paths"]["/v1/predict"]["post"]
    assert {p["name"] for p in predict["parameters"]} == {"x-request-id", "X-Tenant"}
    assert "4096 bytes" in doc["info"]["description"] and "fraud" in doc["info"]["title"]
    schemas = doc["components"]["schemas"]
    assert schemas["CompletionRequest"]["properties"]["max_tokens"]["maximum"] == 77


def test_admin_routes_need_the_bearer_token_and_others_do_not(doc: dict[str, Any]) -> None:
    for method, path in ROUTES:
        op = doc["paths"][path][method.lower()]
        if path.startswith("/admin/"):
            assert op["security"] == [{"bearer": []}]
            assert {"401", "403"} <= set(op["responses"])
        else:
            assert "security" not in op
        assert {"400", "431"} <= set(op["responses"]), path  # header checks, on every route
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.mark.parametrize(("name", "body", "ok"), [
    ("Feedback", {"request_id": "r1", "outcome": True}, True),
    ("Feedback", {"request_id": "r1", "value": 0.5}, True),
    ("Feedback", {"request_id": "r1", "outcome": True, "value": 1}, False),
    ("Feedback", {"request_id": "", "outcome": True}, False),
    ("WeightUpdate", {"challenger_weight": 25, "mode": "split"}, True),
    ("WeightUpdate", {"challenger_weight": 101}, False),
    ("WeightUpdate", {"weight": 3}, False),
    ("ChatCompletionRequest", {"messages": [{"role": "user", "content": "hi"}],
                               "max_tokens": 5}, True),
    ("ChatCompletionRequest", {"messages": []}, False),
    ("ChatCompletionRequest", {"messages": [{"role": "user", "content": "hi"}], "n": 2},
     False),
    ("CompletionRequest", {"prompt": "hi", "stop": ["a", "b"]}, True),
    ("CompletionRequest", {"prompt": "hi", "max_tokens": 78}, False),
    ("CompletionRequest", {"prompt": "hi", "tools": []}, False),
    ("PredictRequest", {"inputs": [[1.0]]}, True),
    ("PredictRequest", {}, False),
])
def test_request_schemas_agree_with_the_parsers(doc: dict[str, Any], name: str,
                                                body: dict[str, Any], ok: bool) -> None:
    """Each example is checked against the schema here and against the real parser, so the
    document and the parsers cannot disagree on it."""
    schema = {**doc["components"]["schemas"][name], "components": doc["components"]}
    assert jsonschema.Draft4Validator(schema).is_valid(body) is ok
    assert _parser_accepts(name, body) is ok


def _parser_accepts(name: str, body: dict[str, Any]) -> bool:
    from core.errors import InputError
    from gateway.serving.feedback import parse_feedback
    from gateway.serving.llm.openai_parse import parse_chat, parse_completion
    from gateway.wire.routing import Mode, RoutingTable, parse_weight_update

    table = RoutingTable(version=1, champion_slot="a", challenger_slot="b",
                         challenger_weight=10.0, mode=Mode.SPLIT)

    def predict(b: dict[str, Any]) -> None:  # the ingress's own check of /v1/predict
        if "inputs" not in b:
            raise InputError("inputs: missing required field", field="inputs")

    parsers = {"Feedback": parse_feedback,
               "WeightUpdate": lambda b: parse_weight_update(b, table),
               "ChatCompletionRequest": lambda b: parse_chat(b, 77),
               "CompletionRequest": lambda b: parse_completion(b, 77),
               "PredictRequest": predict}
    try:
        parsers[name](body)
    except InputError:
        return False
    return True
