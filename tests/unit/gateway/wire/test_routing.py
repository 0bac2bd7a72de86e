from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InputError
from gateway.wire.routing import (
    Arm,
    Mode,
    RoutingTable,
    choose_arm,
    parse_weight_update,
    sticky_bucket,
)
from model_registry.refs import ModelRef

REF_A = ModelRef("m", "1", "/tmp/a", "run-a")
REF_B = ModelRef("m", "2", "/tmp/b", "run-b")


def table(weight: float = 10.0, mode: Mode = Mode.SPLIT) -> RoutingTable:
    return RoutingTable(version=1, champion_slot="a", challenger_slot="b",
                        challenger_weight=weight, mode=mode,
                        slot_models={"a": REF_A, "b": REF_B})


def test_weighted_choice_matches_the_weight() -> None:
    rng = random.Random(7)
    n = 20_000
    hits = sum(choose_arm(table(25.0), rand=rng.random) is Arm.CHALLENGER for _ in range(n))
    assert abs(hits / n - 0.25) < 3 * (0.25 * 0.75 / n) ** 0.5


@pytest.mark.parametrize("mode", [Mode.SHADOW, Mode.PINNED])
def test_shadow_and_pinned_always_answer_with_the_champion(mode: Mode) -> None:
    assert {choose_arm(table(100.0, mode)) for _ in range(200)} == {Arm.CHAMPION}


def test_zero_weight_and_no_challenger_go_to_the_champion() -> None:
    assert {choose_arm(table(0.0)) for _ in range(200)} == {Arm.CHAMPION}
    alone = RoutingTable(1, "a", None, 0.0, Mode.SPLIT, {"a": REF_A})
    assert choose_arm(alone, key="k") is Arm.CHAMPION


@given(st.text(min_size=1, max_size=40))
def test_sticky_bucket_is_stable_and_in_range(key: str) -> None:
    assert sticky_bucket(key) == sticky_bucket(key)
    assert 0 <= sticky_bucket(key) < 10_000


@given(st.text(min_size=1, max_size=40), st.floats(0, 100), st.floats(0, 100))
def test_raising_the_weight_never_moves_a_key_back_to_the_champion(
        key: str, w1: float, w2: float) -> None:
    lo, hi = sorted((w1, w2))
    if choose_arm(table(lo), key=key) is Arm.CHALLENGER:
        assert choose_arm(table(hi), key=key) is Arm.CHALLENGER


def test_sticky_split_matches_the_weight_across_keys() -> None:
    n = 10_000
    hits = sum(choose_arm(table(40.0), key=f"user-{i}") is Arm.CHALLENGER for i in range(n))
    assert abs(hits / n - 0.4) < 0.02


def test_table_round_trips_and_validates() -> None:
    t = table()
    assert RoutingTable.from_dict(t.to_dict()) == t
    assert t.evolve(challenger_weight=50.0).version == 2
    assert t.model_of(Arm.CHALLENGER) == REF_B
    with pytest.raises(ValueError, match="challenger_weight"):
        table(101.0)
    with pytest.raises(ValueError, match="challenger_slot"):
        RoutingTable(1, "a", "a", 0.0, Mode.SPLIT)
    with pytest.raises(ValueError, match="champion_slot"):
        RoutingTable(1, "c", None, 0.0, Mode.SPLIT)


def test_parse_weight_update() -> None:
    assert parse_weight_update({"challenger_weight": 5}, table()) == (5.0, Mode.SPLIT)
    assert parse_weight_update({"mode": "shadow"}, table(10.0)) == (10.0, Mode.SHADOW)
    for body, msg in [([], "expected a JSON object"), ({"challenger_weight": True}, "number"),
                      ({"challenger_weight": -1}, "[0, 100]"), ({"mode": "x"}, "mode"),
                      ({"extra": 1}, "unknown field")]:
        with pytest.raises(InputError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            parse_weight_update(body, table())
    alone = RoutingTable(1, "a", None, 0.0, Mode.PINNED, {"a": REF_A})
    with pytest.raises(InputError, match="no challenger is loaded") as err:
        parse_weight_update({"challenger_weight": 10, "mode": "split"}, alone)
    assert err.value.status == 409
