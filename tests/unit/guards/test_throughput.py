from __future__ import annotations

import numpy as np

from guards.results import GuardState
from guards.throughput import ThroughputGuard
from guards.window import ArmWindow, Observation, Outcome
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import Driven, fill


def test_challenger_needing_twice_the_busy_time_fails(rng: np.random.Generator) -> None:
    g = Driven(ThroughputGuard(trigger("throughput", 0.7), CTX, ALPHA))
    a, b = fill(ArmWindow(), 4000, rng), fill(ArmWindow(), 400, rng, busy_scale=2.0)
    r = g.evaluate(a, b, None)
    assert r.state is GuardState.FAIL
    assert r.value is not None and 0.4 < r.value < 0.6


def test_same_throughput_passes_and_small_samples_wait(rng: np.random.Generator) -> None:
    g = Driven(ThroughputGuard(trigger("throughput", 0.7), CTX, ALPHA))
    a, b = fill(ArmWindow(), 300, rng), fill(ArmWindow(), 10, rng)
    r = g.evaluate(a, b, None)
    assert r.state is GuardState.INCONCLUSIVE
    r = g.evaluate(fill(a, 3700, rng), fill(b, 390, rng), None)
    assert r.state is GuardState.PASS


def test_no_busy_time_is_no_signal() -> None:
    g = Driven(ThroughputGuard(trigger("throughput", 0.7), CTX, ALPHA))
    a, b = ArmWindow(), ArmWindow()
    for w in (a, b):
        w.record(Observation(0.1, Outcome.OK))
    r = g.evaluate(a, b, None)
    assert r.state is GuardState.INCONCLUSIVE and not r.signal
