from __future__ import annotations

import numpy as np

from guards.error_rate import ErrorRateGuard
from guards.results import GuardState
from guards.window import ArmWindow, Observation, Outcome
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import Driven, fill


def _looks(guard: ErrorRateGuard, rng: np.random.Generator, looks: int, err_b: float,
           err_a: float = 0.005) -> list[GuardState]:
    a, b = ArmWindow(), ArmWindow()
    states = []
    for _ in range(looks):
        fill(a, 190, rng, err=err_a)
        fill(b, 10, rng, err=err_b)
        states.append(guard.evaluate(a, b, None).state)
    return states


def test_equal_error_rates_pass_after_min_requests(rng: np.random.Generator) -> None:
    g = Driven(ErrorRateGuard(trigger("error_rate", 0.01), CTX, ALPHA))
    states = _looks(g, rng, 30, 0.005)
    assert states[0] is GuardState.INCONCLUSIVE  # 10 challenger requests < 100
    assert states[-1] is GuardState.PASS
    assert GuardState.FAIL not in states


def test_significant_increase_fails_with_evidence(rng: np.random.Generator) -> None:
    g = Driven(ErrorRateGuard(trigger("error_rate", 0.5), CTX, ALPHA))  # ceiling out of the way
    a, b = ArmWindow(), ArmWindow()
    for _ in range(150):
        fill(a, 190, rng, err=0.005)
        fill(b, 10, rng, err=0.05)
        r = g.evaluate(a, b, None)
        if r.state is GuardState.FAIL:
            break
    assert r.state is GuardState.FAIL
    assert "significant increase" in r.detail
    assert r.value == b.error_rate and r.n_challenger == b.n_judged
    assert r.statistic is not None and r.statistic >= np.log(1 / ALPHA)


def test_absolute_ceiling_fails_without_the_relative_test(rng: np.random.Generator) -> None:
    g = Driven(ErrorRateGuard(trigger("error_rate", 0.01, relative=False), CTX, ALPHA))
    assert ErrorRateGuard.n_tests(trigger("error_rate", 0.01, relative=False), CTX) == 1
    states = _looks(g, rng, 150, 0.04)  # champion healthy (0.5%): the ceiling fires
    assert states[-1] is GuardState.FAIL


def test_absolute_ceiling_stays_quiet_when_the_champion_is_as_bad(
    rng: np.random.Generator,
) -> None:
    g = Driven(ErrorRateGuard(trigger("error_rate", 0.01, relative=False), CTX, ALPHA))
    states = _looks(g, rng, 150, 0.04, err_a=0.04)  # both above the 1% ceiling
    assert GuardState.FAIL not in states


def test_all_failing_challenger_fails_within_a_few_requests() -> None:
    g = Driven(ErrorRateGuard(trigger("error_rate", 0.01), CTX, 0.01 / 9))
    a, b = ArmWindow(), ArmWindow()
    for _ in range(380):
        a.record(Observation(0.05, Outcome.OK))
    failed_at = None
    for i in range(1, 21):
        b.record(Observation(0.05, Outcome.SERVER_ERROR))
        if g.evaluate(a, b, None).state is GuardState.FAIL:
            failed_at = i
            break
    assert failed_at is not None and failed_at <= 10


def test_client_errors_never_count_against_the_challenger(rng: np.random.Generator) -> None:
    g = Driven(ErrorRateGuard(trigger("error_rate", 0.01), CTX, ALPHA))
    a, b = fill(ArmWindow(), 4000, rng), fill(ArmWindow(), 400, rng)
    for _ in range(200):
        b.record(Observation(0.01, Outcome.CLIENT_ERROR))
    r = g.evaluate(a, b, None)
    assert r.state is GuardState.PASS
    assert r.n_challenger == 400 and b.n_requests == 600
