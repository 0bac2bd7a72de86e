"""Validation of business-outcome feedback (`POST /v1/feedback`)."""

from __future__ import annotations

import math
from typing import Any

from core.errors import InputError


def parse_feedback(body: dict[str, Any]) -> tuple[str, float]:
    """`{"request_id", "outcome": bool}` or `{"request_id", "value": number}` -> (id, value)."""
    unknown = sorted(set(body) - {"request_id", "outcome", "value"})
    if unknown:
        raise InputError(f"{unknown[0]}: unknown field", field=unknown[0])
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
        raise InputError("request_id: expected the x-request-id of a served request",
                         field="request_id")
    if ("outcome" in body) == ("value" in body):
        raise InputError("outcome/value: give exactly one of outcome (true/false) or value "
                         "(a number)", field="outcome")
    if "outcome" in body:
        if not isinstance(body["outcome"], bool):
            raise InputError("outcome: expected true or false", field="outcome")
        return request_id, 1.0 if body["outcome"] else 0.0
    value = body["value"]
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(float(value)):
        raise InputError("value: expected a finite number", field="value")
    return request_id, float(value)
