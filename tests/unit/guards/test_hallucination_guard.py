from __future__ import annotations

import numpy as np

from guards.hallucination_guard import HallucinationRateGuard
from guards.results import GuardState
from guards.window import ArmWindow
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import Driven


def _looks(g: HallucinationRateGuard, rng: np.random.Generator, bad_a: float, bad_b: float,
           looks: int = 60) -> GuardState:
    a, b = ArmWindow(), ArmWindow()
    state = GuardState.INCONCLUSIVE
    for _ in range(looks):
        a.record_hallucination_batch(np.where(rng.random(50) < bad_a, 0.9, 0.1))
        b.record_hallucination_batch(np.where(rng.random(20) < bad_b, 0.8, 0.2))
        state = g.evaluate(a, b, None).state
        if state is GuardState.FAIL:
            break
    return state


def test_more_hallucinations_than_champion_fail(rng: np.random.Generator) -> None:
    assert _looks(Driven(HallucinationRateGuard(trigger("hallucination_rate", 0.0), CTX, ALPHA)),
                  rng, 0.05, 0.15) is GuardState.FAIL


def test_same_rate_passes(rng: np.random.Generator) -> None:
    assert _looks(Driven(HallucinationRateGuard(trigger("hallucination_rate", 0.0), CTX, ALPHA)),
                  rng, 0.05, 0.05) is GuardState.PASS


def test_cutoff_param_changes_what_counts(rng: np.random.Generator) -> None:
    # challenger scores 0.8 for "bad" answers: a cutoff of 0.85 does not count them
    g = Driven(HallucinationRateGuard(trigger("hallucination_rate", 0.0, cutoff=0.85), CTX, ALPHA))
    assert _looks(g, rng, 0.05, 0.5) is GuardState.PASS


def test_no_scores_is_no_signal() -> None:
    g = Driven(HallucinationRateGuard(trigger("hallucination_rate", 0.0), CTX, ALPHA))
    r = g.evaluate(ArmWindow(), ArmWindow(), None)
    assert not r.signal and r.state is GuardState.INCONCLUSIVE
