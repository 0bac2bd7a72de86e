from __future__ import annotations

import numpy as np
import pytest

from guards.context import JudgeContext
from guards.latency import LatencyGuard, LatencyP99Guard
from guards.results import GuardResult, GuardState
from guards.window import ArmWindow
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import Driven, fill


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
    states, r = _run(Driven(LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA)), rng, 150, 1.5)
    assert states[-1] is GuardState.FAIL
    assert "significantly slower" in r.detail
    assert r.value == pytest.approx(0.5, abs=0.3)


def test_same_latency_passes(rng: np.random.Generator) -> None:
    states, _ = _run(Driven(LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA)), rng, 60, 1.0)
    assert GuardState.FAIL not in states and states[-1] is GuardState.PASS
    assert states[0] is GuardState.INCONCLUSIVE


def test_small_significant_slowdown_below_min_effect_passes(rng: np.random.Generator) -> None:
    # +10% with lots of data is significant but smaller than min_effect (+25%)
    g = Driven(LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA))
    states, _ = _run(g, rng, 40, 1.10, per_look=(2000, 2000))
    assert states[-1] is GuardState.PASS


def test_slo_breach_fails_when_the_champion_meets_the_slo(rng: np.random.Generator) -> None:
    ctx = JudgeContext(latency_slo_s=0.4)  # p95 of the champion's traffic is ~0.3 s
    g = Driven(LatencyGuard(trigger("latency_p95", 5.0), ctx, ALPHA))  # relative out of the way
    assert LatencyGuard.n_tests(trigger("latency_p95", 0.5), ctx) == 4
    states, r = _run(g, rng, 100, 2.5)
    assert states[-1] is GuardState.FAIL and "SLO" in r.detail


def test_slo_breach_shared_with_the_champion_does_not_fail(rng: np.random.Generator) -> None:
    ctx = JudgeContext(latency_slo_s=0.1)  # both arms' p95 (~0.3 s) is over it
    g = Driven(LatencyGuard(trigger("latency_p95", 0.5), ctx, ALPHA))
    states, r = _run(g, rng, 60, 1.0)
    assert GuardState.FAIL not in states and "SLO" not in r.detail


def test_both_arms_somewhat_over_the_slo_does_not_fail(rng: np.random.Generator) -> None:
    """Both arms have ~10% of responses over the SLO (a p95 SLO allows 5%): the champion is
    not meeting the SLO either, so the challenger beside it is not blamed (the load
    variant of the judge simulation found this: shared load put both arms at ~10%)."""
    ctx = JudgeContext(latency_slo_s=0.08 * float(np.exp(0.8 * 1.2816)))  # the shared p90
    g = Driven(LatencyGuard(trigger("latency_p95", 0.5), ctx, ALPHA))
    states, r = _run(g, rng, 150, 1.0, per_look=(100, 100))
    assert GuardState.FAIL not in states, r.detail


def test_service_time_regression_hidden_by_a_busy_host_fails(rng: np.random.Generator) -> None:
    """End to end, both arms' latency is dominated by a shared host delay; the model's own
    service time is 1.6x slower and is judged on its own."""
    g = Driven(LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA))
    a, b = ArmWindow(), ArmWindow()
    r = None
    for _ in range(200):
        for w, n, scale in ((a, 190, 1.0), (b, 10, 1.6)):
            service = rng.lognormal(np.log(0.01), 0.3, n) * scale
            host = rng.lognormal(np.log(0.5), 0.5, n)
            w.record_batch(host + service, np.zeros(n, dtype=np.int64), busy_s=service)
        r = g.evaluate(a, b)
        if r.state is GuardState.FAIL:
            break
    assert r is not None and r.state is GuardState.FAIL and "service time" in r.detail
    # the reported value is the increase of the test that failed the guard (service time
    # ~+60%), not the end-to-end ratio (~0, the host dominates both arms)
    assert r.value is not None and r.value >= 0.25


def test_p99_guard_uses_its_own_quantile(rng: np.random.Generator) -> None:
    g = Driven(LatencyP99Guard(trigger("latency_p99", 0.5), CTX, ALPHA))
    a, b = fill(ArmWindow(), 5000, rng), fill(ArmWindow(), 5000, rng)
    r = g.evaluate(a, b, None)
    assert r.guard == "latency_p99" and "p99" in r.detail
    # end-to-end and service-time p99; the context SLO is a p95 SLO
    assert LatencyP99Guard.n_tests(trigger("latency_p99", 0.5), JudgeContext(
        latency_slo_s=1.0)) == 2


def test_no_ok_responses_is_inconclusive() -> None:
    g = Driven(LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA))
    r = g.evaluate(ArmWindow(), ArmWindow(), None)
    assert r.state is GuardState.INCONCLUSIVE and r.value is None


def test_decreasing_windows_are_refused(rng: np.random.Generator) -> None:
    g = Driven(LatencyGuard(trigger("latency_p95", 0.5), CTX, ALPHA))
    a, b = fill(ArmWindow(), 500, rng), fill(ArmWindow(), 50, rng)
    g.evaluate(a, b, None)
    with pytest.raises(ValueError, match="cumulative"):
        g.evaluate(fill(ArmWindow(), 100, rng), b, None)
