"""Time-matched comparison: what both arms see during the ramp cancels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guards.matched import MatchedChampion, ratio_evidence
from guards.window import DEFAULT_SPEC, ArmWindow
from tests.unit.guards.helpers import fill


def _ramp(rng: np.random.Generator, matched: MatchedChampion, *, busy_b: float = 1.0) -> None:
    """5% -> 50% challenger share while the traffic's busy time doubles for both arms."""
    for i in range(60):
        share, scale = (0.05, 1.0) if i < 30 else (0.5, 2.0)
        a = fill(ArmWindow(), round(400 * (1 - share)), rng, busy_scale=scale)
        b = fill(ArmWindow(), round(400 * share), rng, busy_scale=scale * busy_b)
        matched.add(a, b)


def test_a_shared_mix_change_cancels(rng: np.random.Generator) -> None:
    m = MatchedChampion(DEFAULT_SPEC)
    _ramp(rng, m)
    a, b = m.moments(1.0), m.challenger.moments(1.0)
    assert b.mean / a.mean == pytest.approx(1.0, abs=0.08)
    # the cumulative comparison is biased: the challenger's data lean to the slow half
    cum_ratio = m.challenger.moments(1.0).mean / _cumulative_champion_busy(rng)
    assert cum_ratio > 1.3


def _cumulative_champion_busy(rng: np.random.Generator) -> float:
    w = ArmWindow()
    for i in range(60):
        share, scale = (0.05, 1.0) if i < 30 else (0.5, 2.0)
        fill(w, round(400 * (1 - share)), rng, busy_scale=scale)
    return w.moments(1.0).mean


def test_a_real_difference_stays(rng: np.random.Generator) -> None:
    m = MatchedChampion(DEFAULT_SPEC)
    _ramp(rng, m, busy_b=1.6)
    ev = ratio_evidence(m, (1.0, 0.0, 0.0), 0.0, 0.5, 1.0)
    assert ev.mean_b / ev.mean_a == pytest.approx(1.6, rel=0.1) and ev.log_e > 10
    assert 0 < ev.n_a < 60 * 400  # an effective sample size, smaller than the raw count


def test_a_look_with_one_arm_only_waits_for_the_next(rng: np.random.Generator) -> None:
    m = MatchedChampion(DEFAULT_SPEC)
    m.add(fill(ArmWindow(), 100, rng), ArmWindow())
    assert m.weight == 0 and m.challenger.n_judged == 0
    m.add(fill(ArmWindow(), 100, rng), fill(ArmWindow(), 10, rng))
    assert m.weight == pytest.approx(10) and m.challenger.n_judged == 10


def test_state_round_trips_through_json(rng: np.random.Generator) -> None:
    m = MatchedChampion(DEFAULT_SPEC)
    _ramp(rng, m)
    m.add(fill(ArmWindow(), 50, rng), ArmWindow())  # an open stratum too
    again = MatchedChampion(DEFAULT_SPEC)
    again.load(json.loads(json.dumps(m.state())))
    assert again.state() == m.state()
    assert again.quantile(0.95) == m.quantile(0.95)
