"""Small HTTP helpers for the ingress: JSON responses, errors, bounded body reads, auth."""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from core.errors import InputError


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
    if not body:
        raise InputError("body: empty; expected a JSON object", status=400)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"body: invalid JSON: {exc}", status=400) from None
    if not isinstance(data, dict):
        raise InputError(f"body: expected a JSON object, got {type(data).__name__}", status=400)
    return data


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
