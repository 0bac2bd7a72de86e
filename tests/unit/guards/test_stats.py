from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guards.stats import (
    ConditionalRateTest,
    equal_mass_groups,
    log_e_bernoulli,
    log_e_log_ratio,
    log_e_normal_mixture,
    log_e_to_threshold,
    psi,
    regroup,
)


# ---- PSI ---------------------------------------------------------------------------------
def _evidently_psi(ref: np.ndarray, cur: np.ndarray) -> tuple[float, np.ndarray]:
    from evidently.legacy.calculations.stattests.psi import _psi
    from evidently.legacy.core import ColumnType

    value, _ = _psi(pd.Series(ref), pd.Series(cur), ColumnType.Numerical, 0.1)
    bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    return float(value), bins


@pytest.mark.parametrize(("shift", "n_ref", "n_cur"), [(0.0, 3000, 400), (0.4, 2000, 2000),
                                                         (1.5, 500, 300), (0.2, 50, 40)])
def test_psi_matches_evidently_on_the_same_data_and_bins(shift: float, n_ref: int,
                                                         n_cur: int) -> None:
    rng = np.random.default_rng(int(shift * 10) + n_cur)
    ref = rng.normal(0, 1, n_ref)
    cur = rng.normal(shift, 1.3, n_cur)
    expected, bins = _evidently_psi(ref, cur)
    ours = psi(np.histogram(ref, bins)[0], np.histogram(cur, bins)[0])
    assert ours == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_psi_matches_evidently_with_empty_bins() -> None:
    # far-apart samples leave bins empty on one side: the epsilon rule must match too
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 800)
    cur = rng.normal(6, 1, 800)
    expected, bins = _evidently_psi(ref, cur)
    assert psi(np.histogram(ref, bins)[0], np.histogram(cur, bins)[0]) == pytest.approx(
        expected, rel=1e-12)


def test_psi_matches_evidently_through_windows() -> None:
    """Windows recorded on evidently's bins give evidently's PSI (the guard's data path)."""
    from guards.window import ArmWindow, Outcome, WindowSpec

    rng = np.random.default_rng(2)
    ref, cur = rng.normal(0, 1, 5000), rng.normal(0.5, 1, 700)
    expected, bins = _evidently_psi(ref, cur)
    # evidently's last bin is closed on the right: nudge the top edge above the maximum
    edges = (*bins[:-1], np.nextafter(bins[-1], np.inf))
    spec = WindowSpec(output_edges=tuple(edges))
    a, b = ArmWindow(spec), ArmWindow(spec)
    a.record_batch(np.full(ref.size, 0.1), np.full(ref.size, Outcome.OK), output_value=ref)
    b.record_batch(np.full(cur.size, 0.1), np.full(cur.size, Outcome.OK), output_value=cur)
    inner_a, inner_b = a.output_hist[1:-1], b.output_hist[1:-1]  # drop the open-ended bins
    assert psi(inner_a, inner_b) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=2, max_size=30), st.integers(1, 5))
def test_psi_is_zero_for_proportional_histograms(counts: list[int], k: int) -> None:
    if sum(counts) == 0:
        return
    assert psi(counts, [c * k for c in counts]) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_symmetric_and_positive() -> None:
    a, b = [10, 20, 30, 40], [40, 30, 20, 10]
    assert psi(a, b) == pytest.approx(psi(b, a))
    assert psi(a, b) > 0.5


def test_psi_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        psi([0, 0], [1, 2])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 500), min_size=1, max_size=60), st.integers(1, 12))
def test_equal_mass_groups_partition_all_bins(counts: list[int], n_groups: int) -> None:
    starts = equal_mass_groups(counts, n_groups)
    assert starts[0] == 0 and starts == sorted(set(starts))
    grouped = regroup(counts, starts)
    assert sum(grouped) == sum(counts)
    assert len(grouped) <= n_groups
    if sum(counts):
        assert all(g >= sum(counts) / n_groups for g in grouped)  # never a thin group


# ---- one-sample Bernoulli e-process ------------------------------------------------------
def _first_crossing(log_e: list[float], alpha: float) -> bool:
    return max(log_e) >= log_e_to_threshold(alpha)


def test_bernoulli_e_process_is_anytime_valid_under_the_null() -> None:
    rng = np.random.default_rng(0)
    alpha, p0, sims, n = 0.05, 0.01, 400, 3000
    x = rng.random((sims, n)) < p0
    k = np.cumsum(x, axis=1)
    looks = range(9, n, 10)  # look every 10 observations
    false = sum(
        _first_crossing([log_e_bernoulli(int(k[s, t]), t + 1, p0) for t in looks], alpha)
        for s in range(sims)
    )
    assert false / sims <= alpha  # Ville's bound (usually far below it)


def test_bernoulli_e_process_detects_and_respects_direction() -> None:
    assert log_e_bernoulli(30, 1000, 0.01) > log_e_to_threshold(0.001)
    assert log_e_bernoulli(5, 1000, 0.01) < 0.0  # below the ceiling: evidence for H0
    assert log_e_bernoulli(5, 5, 0.01) > log_e_to_threshold(0.001)  # 5 of 5 failing
    assert log_e_bernoulli(0, 0, 0.01) == 0.0


# ---- conditional two-sample rate test ----------------------------------------------------
def _run_conditional(rng: np.random.Generator, p_a: float, p_b: float, sims: int,
                     looks: int, alpha: float, margin: float = 1.0) -> float:
    rejected = 0
    for _ in range(sims):
        t = ConditionalRateTest(alpha, margin)
        for _ in range(looks):
            n_b = int(rng.integers(0, 20))  # uneven, random exposures per look
            n_a = int(rng.integers(100, 300))
            t.update(int(rng.binomial(n_a, p_a)), n_a, int(rng.binomial(n_b, p_b)), n_b)
            if t.rejected:
                rejected += 1
                break
    return rejected / sims


def test_conditional_test_is_anytime_valid_with_both_arms_noisy() -> None:
    rng = np.random.default_rng(1)
    assert _run_conditional(rng, 0.02, 0.02, sims=300, looks=150, alpha=0.05) <= 0.05


def test_conditional_test_holds_when_the_challenger_is_better() -> None:
    rng = np.random.default_rng(2)
    assert _run_conditional(rng, 0.02, 0.01, sims=200, looks=150, alpha=0.05) <= 0.02


def test_conditional_test_margin_tolerates_small_increases() -> None:
    rng = np.random.default_rng(3)
    # +20% is inside a 1.5x margin: no rejection; +300% is caught
    assert _run_conditional(rng, 0.02, 0.024, sims=100, looks=150, alpha=0.05,
                            margin=1.5) <= 0.05
    assert _run_conditional(rng, 0.02, 0.08, sims=50, looks=150, alpha=0.05,
                            margin=1.5) >= 0.9


def test_conditional_test_detects_an_error_increase_quickly() -> None:
    rng = np.random.default_rng(4)
    assert _run_conditional(rng, 0.005, 0.03, sims=50, looks=150, alpha=0.001) >= 0.9


def test_conditional_test_latches_and_counts_events() -> None:
    t = ConditionalRateTest(0.01)
    t.update(0, 100, 10, 10)
    assert t.rejected and t.events_b == 10
    t.update(1000, 1000, 0, 1000)  # later evidence does not un-reject
    assert t.rejected


def test_conditional_test_holds_a_one_arm_batch_until_the_other_arm_arrives() -> None:
    t = ConditionalRateTest(0.01)
    before = t.log_e
    t.update(5, 100, 0, 0)  # no challenger exposure yet: says nothing about the split...
    assert t.log_e == before
    t.update(0, 0, 3, 10)  # ...until the challenger's arrives: then both count, merged
    merged = ConditionalRateTest(0.01)
    merged.update(5, 100, 3, 10)
    assert t.log_e == merged.log_e != before
    assert t.events_a == 5 and t.events_b == 3


# ---- normal mixture / log-ratio mSPRT ----------------------------------------------------
def test_normal_mixture_matches_numerical_integral() -> None:
    d, var, tau = 0.3, 0.01, 0.5
    theta = np.linspace(0, 10, 400_001)
    dens = 2 * np.exp(-theta**2 / (2 * tau**2)) / math.sqrt(2 * math.pi * tau**2)
    lr = np.exp(theta * d / var - theta**2 / (2 * var))
    integral = np.trapezoid(lr * dens, theta)
    assert log_e_normal_mixture(d, var, tau) == pytest.approx(math.log(integral), rel=1e-6)


def test_normal_mixture_is_anytime_valid_for_gaussian_means() -> None:
    rng = np.random.default_rng(5)
    sims, n, alpha = 400, 2000, 0.05
    x = rng.normal(0, 1, (sims, n))
    s = np.cumsum(x, axis=1)
    false = 0
    for i in range(sims):
        for t in range(19, n, 20):
            if log_e_normal_mixture(s[i, t] / (t + 1), 1 / (t + 1), 0.3) >= math.log(1 / alpha):
                false += 1
                break
    assert false / sims <= alpha


def test_log_ratio_test_uses_both_arms_and_margin() -> None:
    # challenger mean 2x the champion's, well measured: rejects a 1.43x margin
    log_e, d = log_e_log_ratio(1.0, 1.0, 5000, 2.0, 4.0, 500, math.log(1 / 0.7))
    assert d == pytest.approx(math.log(2.0)) and log_e > log_e_to_threshold(0.001)
    # same ratio but a tiny champion sample: the champion's noise keeps it from rejecting
    log_e_small, _ = log_e_log_ratio(1.0, 1.0, 3, 2.0, 4.0, 500, math.log(1 / 0.7))
    assert log_e_small < log_e
    assert log_e_log_ratio(1.0, 1.0, 5000, 1.1, 1.0, 500, math.log(1.5))[0] < 0.0


def test_conditional_rate_test_keeps_batches_where_only_one_arm_has_exposure() -> None:
    """Arms' data can reach the judge at different looks (e.g. scores delivered per model
    version): a look with one arm's exposure only must be carried over, not dropped."""
    from guards.stats import ConditionalRateTest

    test = ConditionalRateTest(alpha=0.01)
    for _ in range(10):
        test.update(0, 4, 0, 0)  # champion: 4 scored, none flagged
        test.update(0, 0, 4, 4)  # challenger: 4 scored, all flagged
    assert test.rejected
    aa = ConditionalRateTest(alpha=0.01)
    for _ in range(200):
        aa.update(1, 4, 0, 0)
        aa.update(0, 0, 1, 4)
    assert not aa.rejected
