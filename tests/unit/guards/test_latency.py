from __future__ import annotations

import numpy as np
import pytest

from guards.context import JudgeContext
from guards.latency import LatencyGuard, LatencyP99Guard
from guards.results import GuardResult, GuardState
from guards.window import ArmWindow
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import fill


def _run(guard: LatencyGuard, rng: np.random.Generator, looks: int, scale: float,
         per_look: tuple[int, int] = (190, 10)) -> tuple[list[GuardState], GuardResult]:
    a, b = ArmWindow(), ArmWindow()
    states: list[GuardState] = []
    for _ in range(looks):
        fill(a, per_look[0], rng)
        fill(b, per_look[1], rng, lat_scale=scale)
        r = guard.evaluate(a, b, None)
        states.append(r.state)
        if r.state is GuardState.FAIL:
            break
    return states, r


def test_p95_plus_50_percent_fails(rng: np.random.Generator) -> None:
    states, r = _run(LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA), rng, 150, 1.5)
    assert states[-1] is GuardState.FAIL
    assert "significantly slower" in r.detail
    assert r.value == pytest.approx(0.5, abs=0.3)


def test_same_latency_passes(rng: np.random.Generator) -> None:
    states, _ = _run(LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA), rng, 60, 1.0)
    assert GuardState.FAIL not in states and states[-1] is GuardState.PASS
    assert states[0] is GuardState.INCONCLUSIVE


def test_small_significant_slowdown_below_min_effect_passes(rng: np.random.Generator) -> None:
    # +10% with lots of data is significant but smaller than min_effect (+25%)
    g = LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA)
    states, _ = _run(g, rng, 40, 1.10, per_look=(2000, 2000))
    assert states[-1] is GuardState.PASS


def test_slo_breach_fails_even_when_champion_is_as_slow(rng: np.random.Generator) -> None:
    ctx = JudgeContext(latency_slo_s=0.1)  # p95 of the traffic is ~0.3 s
    g = LatencyGuard(trigger("latency_p95", 0.5), ctx, ALPHA)
    assert LatencyGuard.n_tests(trigger("latency_p95", 0.5), ctx) == 2
    states, r = _run(g, rng, 30, 1.0)
    assert states[-1] is GuardState.FAIL and "SLO" in r.detail


def test_p99_guard_uses_its_own_quantile(rng: np.random.Generator) -> None:
    g = LatencyP99Guard(trigger("latency_p99", 0.5), CTX, ALPHA)
    a, b = fill(ArmWindow(), 5000, rng), fill(ArmWindow(), 5000, rng)
    r = g.evaluate(a, b, None)
    assert r.guard == "latency_p99" and "p99" in r.detail
    assert LatencyP99Guard.n_tests(trigger("latency_p99", 0.5), JudgeContext(
        latency_slo_s=1.0)) == 1  # the context SLO is a p95 SLO


def test_no_ok_responses_is_inconclusive() -> None:
    g = LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA)
    r = g.evaluate(ArmWindow(), ArmWindow(), None)
    assert r.state is GuardState.INCONCLUSIVE and r.value is None


def test_decreasing_windows_are_refused(rng: np.random.Generator) -> None:
    g = LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA)
    a, b = fill(ArmWindow(), 500, rng), fill(ArmWindow(), 50, rng)
    g.evaluate(a, b, None)
    with pytest.raises(ValueError, match="cumulative"):
        g.evaluate(fill(ArmWindow(), 100, rng), b, None)
