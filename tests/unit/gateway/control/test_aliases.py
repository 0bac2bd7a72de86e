"""What alias changes ask of the rollout (pure)."""

from __future__ import annotations

from dataclasses import replace

from gateway.control import rollout as ro
from gateway.control.aliases import Change, Seen, describe, reconcile
from model_registry.refs import ModelRef

V1, V2, V3 = (ModelRef("m", v, f"/m/{v}") for v in ("1", "2", "3"))
IDLE = ro.initial_state(V1)
CANARY = replace(ro.start(IDLE, V2, "r", 0.0).state, phase=ro.Phase.CANARY)


def test_a_new_challenger_starts_once() -> None:
    change = reconcile(IDLE, {"champion": "1", "challenger": "2"}, Seen.of(IDLE))
    assert change is not None and (change.change, change.version) == (Change.START, "2")
    assert reconcile(IDLE, {"champion": "1", "challenger": "2"}, Seen("2", "1")) is None
    # the champion's own version as challenger: nothing to roll out
    assert reconcile(IDLE, {"champion": "1", "challenger": "1"}, Seen.of(IDLE)) is None


def test_mid_rollout_a_moved_challenger_supersedes_and_a_deleted_one_aborts() -> None:
    seen = Seen.of(CANARY)
    assert seen == Seen("2", "1")
    assert reconcile(CANARY, {"champion": "1", "challenger": "2"}, seen) is None
    moved = reconcile(CANARY, {"champion": "1", "challenger": "3"}, seen)
    assert moved is not None and (moved.change, moved.version) == (Change.SUPERSEDE, "3")
    deleted = reconcile(CANARY, {"champion": "1"}, seen)
    assert deleted is not None and deleted.change is Change.ABORT


def test_a_champion_moved_by_hand_comes_first_and_once() -> None:
    change = reconcile(CANARY, {"champion": "3", "challenger": "3"}, Seen.of(CANARY))
    assert change is not None and (change.change, change.version) == (Change.CHAMPION, "3")
    assert reconcile(IDLE, {"champion": "3"}, Seen(None, "3")) is None  # acted on already
    assert reconcile(IDLE, {}, Seen.of(IDLE)) is None  # a deleted champion alias: no guess


def test_while_a_hand_set_champion_loads_the_challenger_alias_waits() -> None:
    loading = ro.start(IDLE, V3, "r", 0.0, replaces_champion=True).state
    assert reconcile(loading, {"champion": "3", "challenger": "2"}, Seen(None, "3")) is None


def test_describe_names_each_disagreement() -> None:
    assert describe(CANARY, {"champion": "1", "challenger": "2"}) == []
    notes = describe(CANARY, {"champion": "3", "challenger": "2"})
    assert notes and "champion alias points at version 3, serving version 1" in notes[0]
    waiting = describe(IDLE, {"champion": "1", "challenger": "2"})
    assert waiting and "not being rolled out" in waiting[0]
    assert "not set" in describe(IDLE, {})[0]
