"""Small HTTP helpers for the ingress: JSON responses, errors, bounded body reads, auth,
and the bounds on request headers (`HeaderGuard`, also installed in Serve's proxy)."""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import InputError

# JSON bodies: nesting deeper than this is refused. Far below Python's recursion limit
# (json.loads raises RecursionError near 1000 levels), so no deeper structure ever reaches
# code that recurses over it (pickling to a replica, numpy, json.dumps of an answer).
MAX_JSON_DEPTH = 64
# Integer literals longer than this are refused: 20 digits hold any 64-bit integer, and a
# longer one would overflow `float()` in validation (Python refuses > 4300 digits anyway).
MAX_INT_DIGITS = 20
_LONG_DIGITS = re.compile(rb"\d{%d}" % (MAX_INT_DIGITS + 1))
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")

# Headers. uvicorn's default parser (httptools) has no limit on a header's size, so the
# gateway sets its own, as nginx (8 kB per line) and Envoy (60 kB, 100 headers) do.
MAX_HEADER_BYTES = 8192  # one header, name and value
MAX_HEADERS_BYTES = 32768  # all headers together
MAX_HEADER_COUNT = 100
# x-request-id: echoed in every response and written to logs, so only short ids of URL-safe
# characters are kept. An invalid one is replaced by a generated id (as Envoy does), not
# refused: a request id is the client's hint for tracing, never a reason to fail the call.
REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID = 128
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._~:/+=@-]{1,128}$"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
MAX_STICKY_KEY = 256  # the sticky routing key (routing.sticky_header)
MAX_ACTOR = 64  # x-gateway-actor (admin), written to the audit trail


def app_path(request: Request) -> str:
    """The request's path within the app: Serve mounts an app under its route prefix (the
    ASGI `root_path`), so a gateway deployed at `/fraud` serves `/fraud/v1/predict` as
    `/v1/predict`."""
    path = request.url.path
    root = (request.scope.get("root_path") or "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root):] or "/"
    return path


def json_response(payload: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_response(status: int, kind: str, message: str, request_id: str | None = None,
                   field: str | None = None, headers: dict[str, str] | None = None) -> Response:
    err: dict[str, Any] = {"type": kind, "message": message}
    if field:
        err["field"] = field
    payload: dict[str, Any] = {"error": err}
    if request_id:
        payload["request_id"] = request_id
    return json_response(payload, status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing (413) as soon as it exceeds `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InputError("content-length: not an integer", status=400) from None
        if size > limit:
            raise InputError(f"body: {size} bytes exceeds the limit of {limit} bytes", status=413)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise InputError(f"body: exceeds the limit of {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A request body -> its JSON object; InputError (400) names what is wrong: not UTF-8,
    invalid JSON, a duplicate key, nesting deeper than MAX_JSON_DEPTH, an integer longer
    than MAX_INT_DIGITS digits, a lone surrogate escape, or not an object."""
    if not body.strip():
        raise InputError("body: empty; expected a JSON object", status=400)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"body: not UTF-8 ({exc.reason} at byte {exc.start})",
                         status=400) from None
    # The costlier checks run only when cheap scans of the raw bytes say they may matter.
    deep = body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH
    long_ints = _LONG_DIGITS.search(body) is not None
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys,
                          parse_int=_bounded_int if long_ints else None)
    except RecursionError:
        raise InputError(f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels",
                         status=400) from None
    except InputError:
        raise
    except ValueError as exc:  # JSONDecodeError, and int() of > 4300 digits
        raise InputError(f"body: invalid JSON: {exc}", status=400) from None
    if not isinstance(data, dict):
        raise InputError(f"body: expected a JSON object, got {type(data).__name__}", status=400)
    if deep or _SURROGATE_ESCAPE.search(body):
        _check_tree(data)
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Refused, not last-one-wins: two parsers reading one body differently is how checks
    # are bypassed (a proxy validates the first value, the model sees the second).
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InputError(f"body: duplicate key {json.dumps(key)[:80]}", status=400)
            seen.add(key)
    return out


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise InputError(f"body: integer of {len(literal.lstrip('-'))} digits; at most "
                         f"{MAX_INT_DIGITS} are accepted", status=400)
    return int(literal)


def _check_tree(data: Any) -> None:
    """Depth and strings of a parsed body, without recursion."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InputError(f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels",
                             status=400)
        items: Iterable[Any] = node.items() if isinstance(node, dict) else node
        for item in items:
            for value in (item if isinstance(node, dict) else (item,)):
                if isinstance(value, dict | list):
                    stack.append((value, depth + 1))
                elif isinstance(value, str):
                    _check_text(value)


def _check_text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("body: a string holds an unpaired UTF-16 surrogate escape "
                         "(\\ud800-\\udfff)", status=400) from None


# --- headers ---------------------------------------------------------------------------

def valid_request_id(value: str | None) -> bool:
    return value is not None and _REQUEST_ID.match(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def header_problem(raw: Iterable[tuple[bytes, bytes]]) -> tuple[int, str, str] | None:
    """(status, header name, message) when the request's headers exceed the bounds: 431
    (Request Header Fields Too Large, RFC 6585) naming the header at fault; else None."""
    count = total = 0
    for name, value in raw:
        count += 1
        size = len(name) + len(value)
        total += size
        if size > MAX_HEADER_BYTES:
            header = name.decode("latin-1")[:64]
            return 431, header, (f"{header}: {size} bytes exceeds the limit of "
                                 f"{MAX_HEADER_BYTES} bytes per header")
    if count > MAX_HEADER_COUNT:
        return 431, "", f"headers: {count} exceed the limit of {MAX_HEADER_COUNT}"
    if total > MAX_HEADERS_BYTES:
        return 431, "", f"headers: {total} bytes exceed the limit of {MAX_HEADERS_BYTES}"
    return None


def check_sticky_key(value: str | None, header: str) -> None:
    """The sticky routing key, if given: bounded and printable, else InputError (400)."""
    if value is None:
        return
    if not value or len(value) > MAX_STICKY_KEY or not value.isprintable():
        raise InputError(f"{header}: expected 1 to {MAX_STICKY_KEY} printable characters",
                         status=400, field=header)


def clean_actor(value: str | None, default: str) -> str:
    """An admin's self-declared name for the audit trail: printable, at most MAX_ACTOR."""
    cleaned = "".join(c for c in (value or "") if c.isprintable()).strip()[:MAX_ACTOR]
    return cleaned or default


class HeaderGuard:
    """ASGI middleware for Serve's HTTP proxy (`proxy_middlewares`). Serve's own
    RequestIdMiddleware echoes the client's raw x-request-id in every response; wrapped
    around it, this one answers 431 to oversized headers before anything is echoed, and
    replaces an invalid x-request-id with a generated one, which is then what the proxy
    echoes, logs and passes to the ingress."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        problem = header_problem(headers)
        if problem is not None:
            status, header, message = problem
            await error_response(status, "header_too_large", message,
                                 field=header or None)(scope, receive, send)
            return
        ids = [v for k, v in headers if k.lower() == REQUEST_ID_HEADER.encode()]
        if ids and (len(ids) > 1 or not valid_request_id(ids[0].decode("latin-1"))):
            kept = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER.encode()]
            kept.append((REQUEST_ID_HEADER.encode(), new_request_id().encode()))
            scope = {**scope, "headers": kept}
        await self._app(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """Serve's proxy callback: set RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH to
    `gateway.serving.http.proxy_middlewares` in the environment Ray starts with."""
    return [Middleware(HeaderGuard)]


def check_bearer(request: Request, token: str | None) -> Response | None:
    """None if authorised; else a 401 (no credentials) or 403 (wrong token) response.

    With no token configured (admin.allow_unauthenticated), everything is allowed.
    """
    if token is None:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return error_response(401, "unauthorized", "admin API requires "
                              "'Authorization: Bearer <token>'",
                              headers={"www-authenticate": "Bearer"})
    # Constant-time comparison: the time taken must not reveal how much of the token matched.
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return error_response(403, "forbidden", "admin token is not valid")
    return None
