from __future__ import annotations

import numpy as np
import pytest

from guards.context import JudgeContext
from guards.cost import CostGuard
from guards.results import GuardState
from guards.window import ArmWindow
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import Driven, fill

PRICED = JudgeContext(price_per_replica_second=0.001, price_per_1k_input_tokens=0.5,
                      price_per_1k_output_tokens=1.5)


def test_token_heavy_challenger_costs_more_and_fails(rng: np.random.Generator) -> None:
    g = Driven(CostGuard(trigger("cost", 0.5), PRICED, ALPHA))
    a = fill(ArmWindow(), 3000, rng, tokens=100)
    b = fill(ArmWindow(), 300, rng, tokens=250)
    r = g.evaluate(a, b, None)
    assert r.state is GuardState.FAIL
    # cost per request: busy ~0.8*E[latency] s * 0.001 + 100*0.5/1000 + 200*1.5/1000
    assert r.value == pytest.approx(1.5, abs=0.1)


def test_equal_cost_passes(rng: np.random.Generator) -> None:
    g = Driven(CostGuard(trigger("cost", 0.5), PRICED, ALPHA))
    r = g.evaluate(fill(ArmWindow(), 3000, rng, tokens=100),
                   fill(ArmWindow(), 300, rng, tokens=100), None)
    assert r.state is GuardState.PASS


def test_without_prices_there_is_no_signal(rng: np.random.Generator) -> None:
    g = Driven(CostGuard(trigger("cost", 0.5), CTX, ALPHA))
    r = g.evaluate(fill(ArmWindow(), 100, rng), fill(ArmWindow(), 100, rng), None)
    assert not r.signal and "no prices" in r.detail
