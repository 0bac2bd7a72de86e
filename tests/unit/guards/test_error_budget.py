from __future__ import annotations

import numpy as np
import pytest

from guards.context import JudgeContext
from guards.error_budget import ErrorBudgetBurnGuard
from guards.results import GuardState
from guards.window import ArmWindow
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import Driven, fill

SLO = JudgeContext(error_slo_target=0.999)  # 0.1% budget


def test_burning_far_above_the_multiple_fails(rng: np.random.Generator) -> None:
    g = Driven(ErrorBudgetBurnGuard(trigger("error_budget_burn", 10.0), SLO, ALPHA))
    r = g.evaluate(ArmWindow(), fill(ArmWindow(), 2000, rng, err=0.05), None)
    assert r.state is GuardState.FAIL
    assert r.value == pytest.approx(50.0, rel=0.25)  # 5% errors / 0.1% budget


def test_burning_within_the_multiple_passes(rng: np.random.Generator) -> None:
    g = Driven(ErrorBudgetBurnGuard(trigger("error_budget_burn", 10.0), SLO, ALPHA))
    assert g.evaluate(ArmWindow(), fill(ArmWindow(), 2000, rng, err=0.002), None).state is (
        GuardState.PASS)


def test_params_slo_overrides_context_and_no_slo_is_no_signal(rng: np.random.Generator) -> None:
    t = trigger("error_budget_burn", 10.0, slo_target=0.99)
    assert ErrorBudgetBurnGuard.n_tests(t, CTX) == 1
    assert ErrorBudgetBurnGuard.n_tests(trigger("error_budget_burn", 10.0), CTX) == 0
    g = Driven(ErrorBudgetBurnGuard(t, CTX, ALPHA))  # budget 1%: 10x = 10% errors allowed
    assert g.evaluate(ArmWindow(), fill(ArmWindow(), 2000, rng, err=0.05), None).state is (
        GuardState.PASS)
    r = Driven(ErrorBudgetBurnGuard(trigger("error_budget_burn", 10.0), CTX, ALPHA)).evaluate(
        ArmWindow(), ArmWindow(), None)
    assert not r.signal
