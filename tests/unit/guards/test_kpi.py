from __future__ import annotations

import numpy as np

from guards.kpi import KpiGuard
from guards.results import GuardState
from guards.window import ArmWindow
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import Driven


def _windows(rng: np.random.Generator, p_a: float, p_b: float, n_a: int, n_b: int
             ) -> tuple[ArmWindow, ArmWindow]:
    a, b = ArmWindow(), ArmWindow()
    a.record_kpi_batch((rng.random(n_a) < p_a).astype(float))
    b.record_kpi_batch((rng.random(n_b) < p_b).astype(float))
    return a, b


def test_conversion_drop_beyond_five_percent_fails(rng: np.random.Generator) -> None:
    g = Driven(KpiGuard(trigger("kpi", 0.05), CTX, ALPHA))
    r = g.evaluate(*_windows(rng, 0.10, 0.07, 40_000, 20_000), None)
    assert r.state is GuardState.FAIL
    assert r.value is not None and r.value < -0.2


def test_small_drop_within_tolerance_passes(rng: np.random.Generator) -> None:
    g = Driven(KpiGuard(trigger("kpi", 0.05), CTX, ALPHA))
    r = g.evaluate(*_windows(rng, 0.10, 0.099, 40_000, 20_000), None)
    assert r.state is GuardState.PASS


def test_lower_is_better_direction(rng: np.random.Generator) -> None:
    g = Driven(KpiGuard(trigger("kpi", 0.05, higher_is_better=False), CTX, ALPHA))
    r = g.evaluate(*_windows(rng, 0.10, 0.14, 40_000, 20_000), None)
    assert r.state is GuardState.FAIL
    g2 = Driven(KpiGuard(trigger("kpi", 0.05, higher_is_better=False), CTX, ALPHA))
    assert g2.evaluate(*_windows(rng, 0.10, 0.07, 40_000, 20_000), None).state is (
        GuardState.PASS)


def test_numeric_kpi_with_negative_mean(rng: np.random.Generator) -> None:
    # profit per request, negative on average: -5% means "more negative by 5% of |m_A|"
    a, b = ArmWindow(), ArmWindow()
    a.record_kpi_batch(rng.normal(-10.0, 3.0, 20_000))
    b.record_kpi_batch(rng.normal(-12.0, 3.0, 5_000))
    assert Driven(KpiGuard(trigger("kpi", 0.05), CTX, ALPHA)).evaluate(a, b, None).state is (
        GuardState.FAIL)


def test_no_feedback_is_no_signal_and_few_samples_wait(rng: np.random.Generator) -> None:
    g = Driven(KpiGuard(trigger("kpi", 0.05), CTX, ALPHA))
    r = g.evaluate(ArmWindow(), ArmWindow(), None)
    assert not r.signal and r.state is GuardState.INCONCLUSIVE
    r = g.evaluate(*_windows(rng, 0.1, 0.1, 50, 50), None)
    assert r.signal and r.state is GuardState.INCONCLUSIVE
