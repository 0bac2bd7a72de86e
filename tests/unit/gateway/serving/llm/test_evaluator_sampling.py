"""Per-arm hallucination sampling rates: equal expected scored answers per arm, within the
budget of scoring every answer at `hallucination.sample_rate`."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.serving.llm.evaluator import arm_sample_rates, sampled, table_sample_rates
from gateway.wire.routing import Mode, RoutingTable
from model_registry.refs import ModelRef

BUDGETS = [0.0, 0.01, 0.05, 0.1, 0.3, 0.5, 1.0]
SHARES = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.999]


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("share", SHARES)
def test_rates_spend_the_budget_and_balance_the_arms(budget: float, share: float) -> None:
    champion, challenger = arm_sample_rates(budget, share)
    assert 0.0 <= champion <= 1.0 and 0.0 <= challenger <= 1.0
    per_champion, per_challenger = (1 - share) * champion, share * challenger
    # the expected number of scored answers per request is the budget, as before
    assert per_champion + per_challenger == pytest.approx(budget)
    if champion == challenger == 1.0:  # every answer is scored
        assert budget == pytest.approx(1.0)
    elif champion < 1.0 and challenger < 1.0:  # neither capped: equal evidence
        assert per_champion == pytest.approx(per_challenger)
    else:  # the capped arm is scored in full; the other gets at least as much evidence
        capped = per_challenger if challenger == 1.0 else per_champion
        other = per_champion if challenger == 1.0 else per_challenger
        assert other >= capped - 1e-12


def test_a_five_percent_canary_gets_as_many_scores_as_the_champion() -> None:
    champion, challenger = arm_sample_rates(0.1, 0.05)
    assert challenger == 1.0  # every challenger answer
    assert champion == pytest.approx(0.05 / 0.95)
    assert 0.95 * champion == pytest.approx(0.05 * challenger)
    # the old scheme scored the challenger at 0.1: a twentieth of the champion's evidence
    assert 0.05 * 0.1 / (0.95 * 0.1) < 0.06


def test_half_split_keeps_the_configured_rate() -> None:
    assert arm_sample_rates(0.2, 0.5) == pytest.approx((0.2, 0.2))


@pytest.mark.parametrize("share", [0.0, 1.0, -0.5, 1.5])
def test_an_arm_without_traffic_leaves_the_whole_rate_to_the_other(share: float) -> None:
    assert arm_sample_rates(0.1, share) == (0.1, 0.1)


def test_budget_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        arm_sample_rates(1.5, 0.5)


def _table(mode: Mode, weight: float, challenger: bool = True) -> RoutingTable:
    return RoutingTable(1, "a", "b" if challenger else None, weight, mode,
                        {"a": ModelRef("m", "1", "s"),
                         "b": ModelRef("m", "2", "s") if challenger else None})


@pytest.mark.parametrize(("mode", "weight", "challenger", "expected"), [
    (Mode.SPLIT, 5.0, True, (0.05 / 0.95, 1.0)),
    (Mode.SPLIT, 50.0, True, (0.1, 0.1)),
    (Mode.SPLIT, 0.0, True, (0.1, 0.1)),  # w = 0: the champion at the configured rate
    (Mode.SPLIT, 30.0, False, (0.1, 0.1)),  # no challenger loaded
    (Mode.SHADOW, 0.0, True, (0.1, 0.1)),  # both arms see every request: equal rates
    (Mode.PINNED, 50.0, True, (0.1, 0.1)),  # pinned: the champion at the configured rate
])
def test_table_rates_follow_the_mode(mode: Mode, weight: float, challenger: bool,
                                     expected: tuple[float, float]) -> None:
    assert table_sample_rates(0.1, _table(mode, weight, challenger)) == pytest.approx(expected)


def test_per_arm_sampling_by_request_id_hits_the_expected_counts() -> None:
    """Simulated canary traffic: the scored answers per arm come out equal, deterministic."""
    rng = np.random.default_rng(7)
    n, share, budget = 40_000, 0.05, 0.1
    champion_rate, challenger_rate = arm_sample_rates(budget, share)
    ids = [f"req-{i}" for i in range(n)]
    to_challenger = rng.random(n) < share
    scored = [sampled(rid, challenger_rate if ch else champion_rate)
              for rid, ch in zip(ids, to_challenger, strict=True)]
    again = [sampled(rid, challenger_rate if ch else champion_rate)
             for rid, ch in zip(ids, to_challenger, strict=True)]
    assert scored == again
    on_challenger = sum(s for s, ch in zip(scored, to_challenger, strict=True) if ch)
    on_champion = sum(scored) - on_challenger
    assert abs(sum(scored) - budget * n) < 4 * np.sqrt(budget * n)
    assert abs(on_challenger - on_champion) < 0.15 * (budget * n / 2)
