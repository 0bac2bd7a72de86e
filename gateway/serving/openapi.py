"""The OpenAPI 3.0 document of the ingress (`GET /openapi.json`): pure, no Ray.

`ROUTES` is the one list of what the ingress serves; the ingress builds its routing table
from it and `openapi_document` describes each entry, so neither can drift from the other.
Request schemas follow the parsers (`parse_feedback`, `parse_weight_update`,
`llm.openai_parse`) closely enough for a fuzzer to make valid and invalid requests; error
responses are `http.error_response`'s shape, or OpenAI's on the OpenAI endpoints.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.config import GatewayConfig
from gateway.serving.http import (
    MAX_ACTOR,
    MAX_REQUEST_ID,
    MAX_STICKY_KEY,
    REQUEST_ID_HEADER,
    REQUEST_ID_PATTERN,
)
from gateway.serving.llm.generation import MAX_STOP_SEQUENCES

ADMIN_OPS = ("promote", "rollback", "pause", "resume")
MAX_REASON = 1024  # an admin operation's `reason`, written to the audit trail
MAX_ROLLOUT_ID = 300
# A rollout id as the supervisor makes them (model name, version, a random suffix); the
# report's `?rollout=` must look like one.
ROLLOUT_ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_ROLLOUT_ID - 1}}}$"
ROLLOUT_ID = re.compile(ROLLOUT_ID_PATTERN[1:-1])
ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/predict"),
    ("POST", "/v1/feedback"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/admin/rollout"),
    ("GET", "/admin/rollout/report"),
    ("POST", "/admin/weights"),
    *(("POST", f"/admin/rollout/{op}") for op in ADMIN_OPS),
)
_REF = "#/components/schemas/"
_STR = {"type": "string"}
_NUM = {"type": "number"}
_NULLABLE_STR = {"type": "string", "nullable": True}


def openapi_document(cfg: GatewayConfig) -> dict[str, Any]:
    """The document for a gateway run with `cfg` (body limit, sticky header, model name)."""
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": f"champion-gateway: {cfg.model.name}", "version": "1",
                 "description": "Champion/challenger model gateway. Bodies over "
                                f"{cfg.http.max_body_bytes} bytes get 413; headers over the "
                                "limits get 431."},
        "paths": {},
        "components": {"schemas": _schemas(cfg), "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
    }
    for method, path in ROUTES:
        doc["paths"].setdefault(path, {})[method.lower()] = _operation(cfg, method, path)
    return doc


def _operation(cfg: GatewayConfig, method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": _operation_id(method, path),
                          "parameters": _headers(cfg, path)}
    body, ok, errors = _contract(path)
    if body is not None:
        op["requestBody"] = body
    op["responses"] = {**ok, **{str(s): _error(s, path) for s in sorted({*errors, 400, 431})}}
    if path.startswith("/admin/"):
        op["security"] = [{"bearer": []}]
    return op


def _contract(path: str) -> tuple[dict[str, Any] | None, dict[str, Any], tuple[int, ...]]:
    """(request body, success responses, error statuses) of one route."""
    admin_errors = (401, 403, 409, 413, 422, 503)
    if path == "/v1/predict":
        return _body("PredictRequest"), _ok(200, "PredictAnswer"), (413, 422, 502)
    if path == "/v1/feedback":
        return _body("Feedback"), _ok(202, "FeedbackRecorded"), (404, 410, 413, 422, 503)
    if path in ("/v1/completions", "/v1/chat/completions"):
        name = "Completion" if path == "/v1/completions" else "ChatCompletion"
        ok = {"200": {"description": "the answer, or a server-sent event stream when "
                                     "`stream` is true",
                      "content": {"application/json": {"schema": {"$ref": _REF + name}},
                                  "text/event-stream": {"schema": _STR}}}}
        return _body(f"{name}Request"), ok, (413, 422, 502)
    if path == "/healthz":
        return None, _ok(200, "Health"), ()
    if path == "/openapi.json":
        return None, _ok(200, "Document"), ()
    if path == "/admin/rollout":
        return None, _ok(200, "RolloutView"), (401, 403)
    if path == "/admin/rollout/report":
        ok = {"200": {"description": "the rollout report: one self-contained HTML page",
                      "content": {"text/html": {"schema": _STR}}}}
        return None, ok, (401, 403, 404, 422, 503)
    if path == "/admin/weights":
        return _body("WeightUpdate"), _ok(200, "LocalView"), admin_errors
    return _body("Operation", required=False), _ok(200, "RolloutView"), admin_errors


def _operation_id(method: str, path: str) -> str:
    return method.lower() + "".join(p.title() for p in path.replace(".", "/").replace(
        "-", "/").split("/") if p)


def _headers(cfg: GatewayConfig, path: str) -> list[dict[str, Any]]:
    params = [{"name": REQUEST_ID_HEADER, "in": "header", "required": False,
               "description": "the client's request id; an invalid one is replaced by a "
                              "generated id (the response's x-request-id says which)",
               "schema": {"type": "string", "maxLength": MAX_REQUEST_ID,
                          "pattern": REQUEST_ID_PATTERN}},
              {"name": cfg.routing.sticky_header, "in": "header", "required": False,
               "description": "sticky routing key: one key always lands on one arm",
               "schema": {"type": "string", "minLength": 1, "maxLength": MAX_STICKY_KEY}}]
    if path == "/admin/rollout/report":
        params.append({"name": "rollout", "in": "query", "required": False,
                       "description": "a rollout id (default: the current or last rollout)",
                       "schema": {"type": "string", "maxLength": MAX_ROLLOUT_ID,
                                  "pattern": ROLLOUT_ID_PATTERN}})
        return params
    if path.startswith("/admin/rollout/"):
        params.append({"name": "x-gateway-actor", "in": "header", "required": False,
                       "description": "who acts, for the audit trail (control characters "
                                      f"dropped, cut at {MAX_ACTOR} characters)",
                       "schema": {"type": "string", "maxLength": MAX_ACTOR}})
    return params


def _body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required,
            "content": {"application/json": {"schema": {"$ref": _REF + schema}}}}


def _ok(status: int, schema: str) -> dict[str, Any]:
    return {str(status): {"description": "success", "content": {
        "application/json": {"schema": {"$ref": _REF + schema}}}}}


_MEANING = {400: "malformed request (body not JSON, bad header)", 401: "no bearer token",
            403: "wrong bearer token", 404: "unknown request id", 409: "conflict with the "
            "rollout's state", 410: "request id too old for feedback", 413: "body too large",
            422: "a field is invalid (named in the error)", 431: "headers too large",
            502: "the champion model could not answer", 503: "supervisor unreachable"}


def _error(status: int, path: str) -> dict[str, Any]:
    if path in ("/v1/completions", "/v1/chat/completions"):
        # Header checks and route errors come before the OpenAI handler: the gateway's shape.
        schema: dict[str, Any] = ({"$ref": _REF + "OpenAIError"} if status not in (400, 431)
                                  else {"oneOf": [{"$ref": _REF + "OpenAIError"},
                                                  {"$ref": _REF + "Error"}]})
    else:
        schema = {"$ref": _REF + "Error"}
    return {"description": _MEANING[status], "content": {"application/json": {"schema": schema}}}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = (),
         closed: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


def _schemas(cfg: GatewayConfig) -> dict[str, Any]:
    model = _obj({"name": _STR, "version": _STR}, ("name", "version"))
    table = _obj({"version": {"type": "integer"}, "champion_slot": _STR,
                  "challenger_slot": _NULLABLE_STR, "challenger_weight": _NUM,
                  "mode": {"type": "string", "enum": ["split", "shadow", "pinned"]},
                  "slot_models": {"type": "object"}}, ("version", "champion_slot", "mode"),
                 closed=False)
    return {
        "Error": _obj({"error": _obj({"type": _STR, "message": _STR, "field": _STR},
                                     ("type", "message")),
                       "request_id": _STR}, ("error",)),
        "OpenAIError": _obj({"error": _obj({"message": _STR, "type": _STR,
                                            "param": _NULLABLE_STR, "code": _NULLABLE_STR},
                                           ("message", "type", "param", "code"))}, ("error",)),
        "Model": model,
        "Table": table,
        "PredictRequest": _obj({"inputs": {"description": "the model's input: a batch "
                                                          "(list of rows) or records"}},
                               ("inputs",), closed=False),
        "PredictAnswer": _obj({"outputs": {}, "model": {"$ref": _REF + "Model"}},
                              ("outputs", "model")),
        "Feedback": {"oneOf": [
            _obj({"request_id": _request_id(), "outcome": {"type": "boolean"}},
                 ("request_id", "outcome")),
            _obj({"request_id": _request_id(), "value": _NUM}, ("request_id", "value"))]},
        "FeedbackRecorded": _obj({"status": {"type": "string", "enum": ["recorded"]},
                                  "request_id": _STR}, ("status", "request_id")),
        "CompletionRequest": _obj({**_sampling(cfg), "prompt": {"oneOf": [
            _STR, {"type": "array", "items": _STR, "minItems": 1, "maxItems": 1}]},
            "echo": {"type": "boolean", "enum": [False]},
            "best_of": {"type": "integer", "enum": [1]},
            "suffix": {"type": "string", "enum": [""]},
            "logprobs": {"type": "integer", "enum": [0]}}, ("prompt",)),
        "ChatCompletionRequest": _obj({**_sampling(cfg), "messages": {
            "type": "array", "minItems": 1, "items": _obj(
                {"role": {"type": "string",
                          "enum": ["system", "developer", "user", "assistant"]},
                 "content": {"oneOf": [_STR, {"type": "array", "items": _obj(
                     {"type": {"type": "string", "enum": ["text"]}, "text": _STR},
                     ("type", "text"))}]}}, ("role", "content"), closed=False)},
            "max_completion_tokens": _max_tokens(cfg),
            "logprobs": {"type": "boolean", "enum": [False]}}, ("messages",)),
        "Completion": _generation("text_completion"),
        "ChatCompletion": _generation("chat.completion"),
        "Health": _obj({"status": {"type": "string", "enum": ["ok"]}, "replica": _STR,
                        "table_version": {"type": "integer"}, "challenger_weight": _NUM,
                        "mode": _STR}, ("status", "replica", "table_version")),
        "Document": _obj({"openapi": _STR, "paths": {"type": "object"}},
                         ("openapi", "paths"), closed=False),
        "RolloutView": _obj({"table": {"$ref": _REF + "Table"}, "phase": _STR},
                            ("table",), closed=False),
        # A registry ModelRef: name and version, and its run, source and tags.
        "LocalView": _obj({"table": {"$ref": _REF + "Table"},
                           "champion": {**model, "additionalProperties": True,
                                        "nullable": True},
                           "challenger": {**model, "additionalProperties": True,
                                          "nullable": True}},
                          ("table", "champion", "challenger")),
        "WeightUpdate": _obj({"challenger_weight": {"type": "number", "minimum": 0,
                                                    "maximum": 100},
                              "mode": {"type": "string", "enum": ["split", "shadow", "pinned"]}}),
        "Operation": _obj({"reason": {"type": "string", "maxLength": MAX_REASON}},
                          closed=False),
    }


def _request_id() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": MAX_REQUEST_ID}


def _max_tokens(cfg: GatewayConfig) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": cfg.llm.max_tokens_limit}


def _sampling(cfg: GatewayConfig) -> dict[str, Any]:
    """The fields both OpenAI endpoints share (`openai_parse._COMMON`), as accepted here."""
    stop = {"type": "string", "minLength": 1}
    return {"model": _STR, "max_tokens": _max_tokens(cfg),
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "stop": {"oneOf": [stop, {"type": "array", "items": stop,
                                      "maxItems": MAX_STOP_SEQUENCES}]},
            "stream": {"type": "boolean"},
            "stream_options": _obj({"include_usage": {"type": "boolean"}}, closed=False),
            "n": {"type": "integer", "enum": [1]},
            "seed": {"type": "integer", "minimum": -(2**63), "maximum": 2**64 - 1},
            "user": _STR, "context": _STR,
            "frequency_penalty": {"type": "number", "enum": [0]},
            "presence_penalty": {"type": "number", "enum": [0]},
            "logit_bias": _obj({}, closed=True)}


def _generation(kind: str) -> dict[str, Any]:
    usage = _obj({k: {"type": "integer", "minimum": 0}
                  for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
                 ("prompt_tokens", "completion_tokens", "total_tokens"))
    return _obj({"id": _STR, "object": {"type": "string", "enum": [kind]},
                 "created": {"type": "integer"}, "model": _STR,
                 "choices": {"type": "array", "items": {"type": "object"}}, "usage": usage},
                ("id", "object", "created", "model", "choices", "usage"))
