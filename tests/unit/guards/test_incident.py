"""Shared incidents: the judge holds instead of blaming the challenger."""

from __future__ import annotations

import numpy as np
import pytest

from guards.results import GuardState
from guards.verdict import JudgeContext, Verdict, make_judge
from guards.window import ArmWindow, Observation, Outcome
from tests.unit.guards.helpers import fill

TIMEOUT = Outcome.TIMEOUT


class _Replica:
    """Windows kept the way an ingress replica keeps them: a failure run carries over from
    one flush (look) to the next."""

    def __init__(self) -> None:
        self.arms = (ArmWindow(), ArmWindow())


_REPLICA = _Replica()


def _look(rng: np.random.Generator, n_a: int, n_b: int, *, fail_a: float = 0.0,
          fail_b: float = 0.0, replica: _Replica = _REPLICA) -> tuple[ArmWindow, ArmWindow]:
    """One look's deltas; `fail_*` share of requests time out (censored at the deadline)."""
    for w, n, fail in ((replica.arms[0], n_a, fail_a), (replica.arms[1], n_b, fail_b)):
        k = round(n * fail)
        fill(w, n - k, rng, err=0.0)
        for _ in range(k):
            w.record(Observation(2.0, TIMEOUT))
    return replica.arms[0].take_delta(), replica.arms[1].take_delta()


def _run(looks: list[tuple[ArmWindow, ArmWindow]], ctx: JudgeContext | None = None
         ) -> list[Verdict]:
    judge = make_judge(None, ctx or JudgeContext())
    return [judge.observe(a, b) for a, b in looks]


@pytest.fixture(autouse=True)
def _fresh_replica() -> None:
    global _REPLICA
    _REPLICA.arms = (ArmWindow(), ArmWindow())


def test_shared_stall_holds_and_resumes(rng: np.random.Generator) -> None:
    looks = [_look(rng, 190, 10) for _ in range(40)]
    looks += [_look(rng, 190, 10, fail_a=1.0, fail_b=1.0) for _ in range(4)]  # the stall
    looks += [_look(rng, 190, 10) for _ in range(40)]
    verdicts = _run(looks)
    assert all(v.state is not GuardState.FAIL for v in verdicts)
    held = [i for i, v in enumerate(verdicts) if v.hold]
    assert held and held[0] == 40 and "both arms degraded" in verdicts[40].reasons[0]
    assert not verdicts[-1].hold  # cleared by itself once the stall left the window
    cat = next(r for r in verdicts[41].results if r.guard == "catastrophic")
    assert cat.state is GuardState.PASS and "champion failed too" in cat.detail


def test_total_failure_with_a_healthy_champion_is_caught_fast(rng: np.random.Generator) -> None:
    looks = [_look(rng, 190, 10) for _ in range(5)]
    looks += [_look(rng, 19, 1, fail_b=1.0) for _ in range(20)]  # one challenger call a look
    verdicts = _run(looks)
    first = next(i for i, v in enumerate(verdicts) if v.state is GuardState.FAIL)
    assert first - 5 + 1 <= 6  # challenger requests seen
    # the catastrophic path alone (no error-rate trigger): at the fifth failure in a row
    judge = make_judge([{"guard": "latency_p95"}])
    verdicts = [judge.observe(a, b) for a, b in looks]
    first = next(i for i, v in enumerate(verdicts) if v.state is GuardState.FAIL)
    assert first - 5 + 1 == 5 and verdicts[first].catastrophic


def test_a_failing_challenger_is_caught_once_the_shared_incident_ends(
    rng: np.random.Generator,
) -> None:
    looks = [_look(rng, 190, 10) for _ in range(10)]
    looks += [_look(rng, 190, 10, fail_a=1.0, fail_b=1.0) for _ in range(3)]
    looks += [_look(rng, 190, 10, fail_b=1.0) for _ in range(10)]  # champion recovers
    verdicts = _run(looks)
    assert not any(v.state is GuardState.FAIL for v in verdicts[:13])
    assert any(v.state is GuardState.FAIL for v in verdicts[13:])


def test_absolute_ceiling_ignores_looks_where_the_champion_failed_too(
    rng: np.random.Generator,
) -> None:
    # 30% of both arms' requests fail in a long incident, then all is well again: the 1%
    # ceiling must not fire on the incident's errors afterwards
    looks = [_look(rng, 190, 10) for _ in range(10)]
    looks += [_look(rng, 190, 10, fail_a=0.3, fail_b=0.3) for _ in range(30)]
    looks += [_look(rng, 190, 10) for _ in range(60)]
    verdicts = _run(looks)
    assert all(v.state is not GuardState.FAIL for v in verdicts)
    assert any(v.hold for v in verdicts)


def test_champion_only_incident_does_not_hold(rng: np.random.Generator) -> None:
    looks = [_look(rng, 190, 10) for _ in range(10)]
    looks += [_look(rng, 190, 10, fail_a=0.5) for _ in range(5)]
    assert not any(v.hold for v in _run(looks))


def test_ordinary_noise_does_not_hold(rng: np.random.Generator) -> None:
    """A few errors at once happen in any healthy stream (0.5% here, half the traffic on
    each arm): a hold needs both arms *significantly* worse than usual."""
    judge = make_judge(None, JudgeContext())
    replica = _Replica()
    held = 0
    for _ in range(1500):
        for w in replica.arms:
            fill(w, 100, rng, err=0.005)
        held += judge.observe(replica.arms[0].take_delta(), replica.arms[1].take_delta()).hold
    assert held == 0


def test_stall_seen_first_in_a_look_with_few_champion_requests_is_not_catastrophic(
    rng: np.random.Generator,
) -> None:
    """At a 50% step a stall's first timeouts can land as 6 for the challenger and 2 for the
    champion in one look: the champion failed too over the same interval."""
    looks = [_look(rng, 100, 100) for _ in range(40)]
    looks.append(_look(rng, 2, 6, fail_a=1.0, fail_b=1.0))
    verdicts = _run(looks)
    assert verdicts[-1].state is not GuardState.FAIL
    cat = next(r for r in verdicts[-1].results if r.guard == "catastrophic")
    assert "champion failed too" in cat.detail


def test_a_chronically_failing_champion_does_not_disable_the_fast_path(
    rng: np.random.Generator,
) -> None:
    judge = make_judge([{"guard": "latency_p95"}])  # the catastrophic path alone
    replica = _Replica()
    verdicts = []
    for i in range(40):  # the champion fails 2% of its calls all along (above the 1% ceiling)
        fill(replica.arms[0], 95, rng, err=0.02)
        if i < 30:
            fill(replica.arms[1], 5, rng, err=0.0)
        else:
            replica.arms[1].record(Observation(0.01, Outcome.SERVER_ERROR))
        verdicts.append(judge.observe(replica.arms[0].take_delta(),
                                      replica.arms[1].take_delta()))
    first = next(i for i, v in enumerate(verdicts) if v.state is GuardState.FAIL)
    assert first == 34 and verdicts[first].catastrophic  # the fifth failure in a row
