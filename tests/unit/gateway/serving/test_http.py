"""The ingress's HTTP helpers: JSON bodies, body and header bounds, request ids, auth."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from core.errors import InputError
from gateway.serving.http import (
    MAX_HEADER_BYTES,
    MAX_HEADER_COUNT,
    MAX_JSON_DEPTH,
    HeaderGuard,
    app_path,
    check_bearer,
    check_sticky_key,
    clean_actor,
    header_problem,
    parse_json_object,
    proxy_middlewares,
    read_body,
    valid_request_id,
)

BAD_BODIES = [
    ("empty", b"", "empty"),
    ("whitespace", b" \n ", "empty"),
    ("not json", b"{oops", "invalid JSON"),
    ("not an object", b"[1, 2]", "expected a JSON object, got list"),
    ("deep lists", b"[" * 5000 + b"]" * 5000, f"deeper than {MAX_JSON_DEPTH}"),
    ("deep objects", b'{"a":' * 10000 + b"1" + b"}" * 10000, f"deeper than {MAX_JSON_DEPTH}"),
    ("just over the cap", b'{"a":' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}",
     f"deeper than {MAX_JSON_DEPTH}"),
    ("duplicate key", b'{"inputs": 1, "inputs": 2}', 'duplicate key "inputs"'),
    ("nested duplicate", b'{"a": [{"b": 1, "b": 1}]}', 'duplicate key "b"'),
    ("21-digit integer", b'{"a": 123456789012345678901}', "21 digits"),
    ("5000-digit integer", b'{"a": ' + b"9" * 5000 + b"}", "5000 digits"),
    ("not utf-8", b'{"a": "\xff\xfe"}', "not UTF-8"),
    ("latin-1", '{"a": "caf\u00e9"}'.encode("latin-1"), "not UTF-8"),
    ("lone surrogate", b'{"a": "\\ud800"}', "surrogate"),
    ("lone surrogate in a key", b'{"\\udfff": 1}', "surrogate"),
]


@pytest.mark.parametrize(("name", "body", "message"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_are_a_400_naming_the_problem(name: str, body: bytes, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_json_object(body)
    assert caught.value.status == 400
    assert message in str(caught.value)


def test_good_bodies_parse_as_before() -> None:
    depth_ok = b'{"a":' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    assert parse_json_object(depth_ok)["a"]
    rows = {"inputs": [[0.1234567890123456789012, 1, -2] for _ in range(500)]}
    assert parse_json_object(json.dumps(rows).encode()) == json.loads(json.dumps(rows))
    assert parse_json_object(b'{"seed": 18446744073709551615}') == {"seed": 2**64 - 1}
    assert parse_json_object(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}  # a pair
    # NaN is left to the fields' own checks (a 422 naming the field), as before.
    assert parse_json_object(b'{"value": NaN}')["value"] != 0


def _request(body: bytes, headers: dict[str, str] | None = None) -> Request:
    chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    raw = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw}, receive)


def test_read_body_refuses_past_the_limit_declared_or_not() -> None:
    assert asyncio.run(read_body(_request(b"x" * 100), 100)) == b"x" * 100
    with pytest.raises(InputError) as streamed:
        asyncio.run(read_body(_request(b"x" * 5000), 4096))
    assert streamed.value.status == 413
    with pytest.raises(InputError) as declared:
        asyncio.run(read_body(_request(b"", {"content-length": "5000"}), 4096))
    assert declared.value.status == 413 and "5000 bytes" in str(declared.value)
    with pytest.raises(InputError) as bad:
        asyncio.run(read_body(_request(b"", {"content-length": "lots"}), 4096))
    assert bad.value.status == 400 and "content-length" in str(bad.value)


@pytest.mark.parametrize(("value", "ok"), [
    ("req-42", True), ("0f8fad5b-d9cb-469f-a165-70867728950e", True),
    ("trace:abc/def+ghi=", True), ("a" * 128, True), ("a" * 129, False), ("", False),
    ("has space", False), ("tab\there", False), ("caf\u00e9", False), ("a\x00b", False),
    ("<script>", False), (None, False)])
def test_request_ids(value: str | None, ok: bool) -> None:
    assert valid_request_id(value) is ok


def test_header_bounds_name_the_header() -> None:
    assert header_problem([(b"x-request-id", b"abc")]) is None
    status, header, message = header_problem(
        [(b"host", b"h"), (b"x-request-id", b"a" * 10_000)]) or (0, "", "")
    assert (status, header) == (431, "x-request-id") and "10012 bytes" in message
    many = [(f"x-h{i}".encode(), b"v") for i in range(MAX_HEADER_COUNT + 1)]
    assert (header_problem(many) or (0,))[0] == 431
    big = [(f"x-h{i}".encode(), b"v" * (MAX_HEADER_BYTES - 10)) for i in range(5)]
    assert header_problem(big) == (431, "", "headers: 40930 bytes exceed the limit of 32768")


def test_sticky_key_and_actor_are_bounded() -> None:
    check_sticky_key(None, "x-gateway-key")
    check_sticky_key("user-123", "x-gateway-key")
    for bad in ("", "k" * 257, "a\x01b"):
        with pytest.raises(InputError) as caught:
            check_sticky_key(bad, "x-gateway-key")
        assert caught.value.status == 400 and caught.value.field == "x-gateway-key"
    assert clean_actor("alice\x1b[31m\x00", "admin-api") == "alice[31m"
    assert clean_actor("\x00\x01", "admin-api") == "admin-api"
    assert clean_actor(None, "admin-api") == "admin-api"
    assert len(clean_actor("a" * 1000, "admin-api")) == 64


def test_bearer_check() -> None:
    def resp(headers: dict[str, str]) -> Response | None:
        return check_bearer(_request(b"", headers), "s3cret")

    assert resp({"authorization": "Bearer s3cret"}) is None
    assert getattr(resp({}), "status_code", None) == 401
    assert getattr(resp({"authorization": "Basic s3cret"}), "status_code", None) == 401
    assert getattr(resp({"authorization": "Bearer " + "x" * 5000}), "status_code", None) == 403
    assert check_bearer(_request(b""), None) is None


def _through_serve_middlewares(headers: list[tuple[str, str]]) -> httpx.Response:
    """A request through Serve's RequestIdMiddleware wrapped in the gateway's, in the order
    Serve's proxy applies them (its own first, then the callback's)."""
    from ray.serve._private.http_util import _apply_middlewares

    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["ids"] = [v for k, v in scope["headers"] if k == b"x-request-id"]
        await Response(b"ok")(scope, receive, send)

    wrapped = _apply_middlewares(app, list(proxy_middlewares()))  # type: ignore[arg-type]

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            resp = await client.get("/v1/predict", headers=headers)
            resp.extensions["seen"] = seen
            return resp

    return asyncio.run(call())


def test_proxy_guard_replaces_invalid_request_ids_before_serve_echoes_them() -> None:
    good = _through_serve_middlewares([("x-request-id", "req-42")])
    assert good.headers.get_list("x-request-id") == ["req-42"]
    bad = _through_serve_middlewares([("x-request-id", "a b\x01" * 30)])
    echoed = bad.headers.get_list("x-request-id")
    assert len(echoed) == 1 and valid_request_id(echoed[0]) and "a b" not in echoed[0]
    assert bad.extensions["seen"]["ids"] == [echoed[0].encode()]  # what the ingress sees
    twice = _through_serve_middlewares([("x-request-id", "one"), ("x-request-id", "two")])
    assert len(twice.headers.get_list("x-request-id")) == 1


def test_proxy_guard_refuses_huge_headers_with_431_and_echoes_nothing() -> None:
    resp = _through_serve_middlewares([("x-request-id", "a" * 10_000)])
    assert resp.status_code == 431
    assert resp.json()["error"]["field"] == "x-request-id"
    assert "x-request-id" not in resp.headers


def test_guard_passes_other_scopes_through() -> None:
    calls = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    asyncio.run(HeaderGuard(app)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert calls == ["lifespan"]


@pytest.mark.parametrize(("root", "path", "expected"), [
    ("", "/v1/predict", "/v1/predict"),
    ("/fraud", "/fraud/v1/predict", "/v1/predict"),
    ("/fraud/", "/fraud/v1/predict", "/v1/predict"),
    ("/fraud", "/fraud", "/"),
    ("/fraud", "/frauds/v1/predict", "/frauds/v1/predict"),  # not under the prefix
    ("/", "/v1/predict", "/v1/predict"),
])
def test_app_path_is_relative_to_the_route_prefix(root: str, path: str, expected: str) -> None:
    scope = {"type": "http", "method": "POST", "path": path, "root_path": root,
             "headers": [], "query_string": b""}
    assert app_path(Request(scope)) == expected
