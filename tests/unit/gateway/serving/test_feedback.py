from __future__ import annotations

import pytest

from core.errors import InputError
from gateway.serving.feedback import parse_feedback


def test_outcome_and_value() -> None:
    assert parse_feedback({"request_id": "r1", "outcome": True}) == ("r1", 1.0)
    assert parse_feedback({"request_id": "r1", "outcome": False}) == ("r1", 0.0)
    assert parse_feedback({"request_id": "r1", "value": 12}) == ("r1", 12.0)


@pytest.mark.parametrize(("body", "field"), [
    ({"outcome": True}, "request_id"),
    ({"request_id": "", "outcome": True}, "request_id"),
    ({"request_id": "x" * 129, "outcome": True}, "request_id"),
    ({"request_id": "r"}, "outcome"),
    ({"request_id": "r", "outcome": True, "value": 1}, "outcome"),
    ({"request_id": "r", "outcome": 1}, "outcome"),
    ({"request_id": "r", "value": True}, "value"),
    ({"request_id": "r", "value": float("inf")}, "value"),
    ({"request_id": "r", "value": 1, "extra": 2}, "extra"),
])
def test_bad_feedback_names_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        parse_feedback(body)
    assert err.value.field == field and err.value.status == 422
