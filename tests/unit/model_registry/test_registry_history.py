"""Alias-history encoding and bounding (pure functions; the registry does the I/O)."""

from __future__ import annotations

import pytest

from model_registry import history
from model_registry.history import AliasEvent


def _event(seq: int, **overrides: object) -> AliasEvent:
    fields: dict[str, object] = {"seq": seq, "alias": "champion", "version": "3",
                                 "previous": "2", "actor": "ci", "reason": "why", "time": 12.5}
    fields.update(overrides)
    return AliasEvent(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("version,previous", [("3", "2"), (None, "7"), ("1", None)])
def test_encode_decode_round_trip(version: str | None, previous: str | None) -> None:
    event = _event(42, version=version, previous=previous)
    assert history.decode(42, history.encode(event)) == event


def test_encode_truncates_long_reason_and_actor() -> None:
    event = _event(1, reason="r" * 5000, actor="a" * 500)
    decoded = history.decode(1, history.encode(event))
    assert decoded is not None
    assert decoded.reason == "r" * history.MAX_REASON_CHARS
    assert decoded.actor == "a" * history.MAX_ACTOR_CHARS
    assert len(history.encode(event)) < 5000  # fits the smallest tag limit MLflow ever had


@pytest.mark.parametrize("value", ["not json", "{}", '{"version": "1"}', "[1, 2]"])
def test_decode_skips_unreadable_values(value: str) -> None:
    assert history.decode(1, value) is None


def test_keys_sort_numerically_and_foreign_tags_are_ignored() -> None:
    tags = {history.history_key(s): history.encode(_event(s, version=str(s)))
            for s in (10, 2, 9)}
    tags["gateway.rollout.state"] = "{}"
    tags[history.HISTORY_TAG_PREFIX + "junk"] = "x"
    assert [s for s, _ in history.history_keys(tags)] == [2, 9, 10]
    assert history.next_seq(tags) == 11
    assert [e.version for e in history.events_from_tags(tags)] == ["2", "9", "10"]


def test_next_seq_starts_at_one() -> None:
    assert history.next_seq({"other": "1"}) == 1


def test_events_filtered_by_alias_keep_order() -> None:
    tags = {history.history_key(s): history.encode(_event(s, alias=a))
            for s, a in [(1, "champion"), (2, "challenger"), (3, "champion")]}
    assert [e.seq for e in history.events_from_tags(tags, "champion")] == [1, 3]
    assert [e.seq for e in history.events_from_tags(tags, "challenger")] == [2]


@pytest.mark.parametrize("count,limit,pruned", [(3, 5, []), (5, 5, []), (7, 5, [1, 2])])
def test_keys_to_prune_drops_the_oldest(count: int, limit: int, pruned: list[int]) -> None:
    tags = {history.history_key(s): "{}" for s in range(count, 0, -1)}
    assert history.keys_to_prune(tags, limit) == [history.history_key(s) for s in pruned]


def test_events_are_frozen() -> None:
    with pytest.raises(AttributeError):
        _event(1).version = "9"  # type: ignore[misc]
