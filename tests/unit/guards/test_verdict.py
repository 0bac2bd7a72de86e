from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ConfigError
from guards.results import TriggerSpec
from guards.verdict import (
    Action,
    ArmResources,
    GuardState,
    Judge,
    JudgeContext,
    ResourceReadings,
    Severity,
    default_triggers,
    make_judge,
    parse_triggers,
)
from guards.window import ArmWindow, Observation, Outcome
from tests.unit.guards.helpers import fill

DESIGN_TABLE = {
    "error_rate": (0.01, "critical", "rollback"),
    "latency_p95": (0.5, "critical", "rollback"),
    "kpi": (0.05, "critical", "rollback"),
    "hallucination_rate": (0.0, "high", "rollback_and_alert"),
    "output_drift": (0.25, "medium", "rollback_and_alert"),
    "input_drift": (0.25, "medium", "rollback_and_alert"),
    "throughput": (0.7, "high", "rollback"),
    "memory": (0.9, "high", "rollback_and_scale"),
    "cost": (0.5, "medium", "rollback_and_alert"),
    "error_budget_burn": (10.0, "critical", "rollback"),
}


def test_default_triggers_mirror_the_design_table() -> None:
    got = {t.guard: (t.threshold, t.severity.value, t.action.value) for t in default_triggers()}
    assert got == DESIGN_TABLE


def test_parse_triggers_round_trip_and_defaults() -> None:
    raw = [t.to_dict() for t in default_triggers()]
    assert parse_triggers(raw) == default_triggers()
    (t,) = parse_triggers([{"guard": "latency_p99", "params": {"min_samples": 500}}])
    assert (t.threshold, t.severity, t.action) == (0.5, Severity.HIGH, Action.ROLLBACK)
    assert t.params["min_samples"] == 500


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"guard": "nope"}, "triggers[1].guard"),
        ({"threshold": 0.1}, "triggers[1].guard"),
        ({"guard": "error_rate", "threshold": "high"}, "triggers[1].threshold"),
        ({"guard": "error_rate", "threshold": 1.5}, "triggers[1].threshold"),
        ({"guard": "error_rate", "threshold": True}, "triggers[1].threshold"),
        ({"guard": "throughput", "threshold": float("nan")}, "triggers[1].threshold"),
        ({"guard": "error_rate", "severity": "urgent"}, "triggers[1].severity"),
        ({"guard": "error_rate", "action": "explode"}, "triggers[1].action"),
        ({"guard": "error_rate", "params": {"foo": 1}}, "triggers[1].params.foo"),
        ({"guard": "error_rate", "params": {"relative": "yes"}}, "triggers[1].params.relative"),
        ({"guard": "error_rate", "params": []}, "triggers[1].params"),
        ({"guard": "error_rate", "colour": "red"}, "triggers[1].colour"),
        ("error_rate", "triggers[1]"),
    ],
)
def test_parse_triggers_names_the_field_at_fault(raw: object, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_triggers([{"guard": "error_rate"}, raw])
    assert str(e.value).startswith(field)


def test_parse_triggers_needs_a_list() -> None:
    with pytest.raises(ConfigError, match=r"^triggers: must be a list"):
        parse_triggers({"guard": "error_rate"})


def test_make_judge_rejects_unknown_guard_by_name() -> None:
    with pytest.raises(ConfigError, match="unknown guard 'bogus'"):
        make_judge([TriggerSpec("bogus", 1.0, Severity.LOW, Action.ALERT_ONLY)])
    with pytest.raises(ConfigError, match=r"triggers\[0\]\.guard"):
        make_judge([{"guard": "bogus"}])


def test_alpha_is_split_over_the_tests_that_can_have_a_signal() -> None:
    ctx = JudgeContext(alpha=0.01, latency_slo_s=1.0, error_slo_target=0.99)
    j = make_judge(None, ctx)
    # error_rate 2, latency 4 (end to end p95, service time p95 and p99, SLO), kpi 1,
    # hallucination 1, output drift 1, throughput 1, burn 1; cost and input drift have
    # no prices / no reference: no share
    assert j.n_tests == 11 and j.alpha_per_test == pytest.approx(0.01 / 11)
    assert make_judge(None).alpha_per_test == pytest.approx(0.01 / 9)
    quiet = JudgeContext(kpi_feedback=False, hallucination_scoring=False,
                         price_per_replica_second=0.001)
    assert make_judge(None, quiet).n_tests == 8  # no KPI, no scores; cost now counts


def _plain_judge() -> Judge:
    return make_judge(None, JudgeContext())


def test_plain_regression_model_can_be_promoted(rng: np.random.Generator) -> None:
    """No KPI, no hallucination scores, no memory readings, no prices: still PASS."""
    v = _plain_judge().evaluate(fill(ArmWindow(), 8000, rng), fill(ArmWindow(), 800, rng))
    assert v.state is GuardState.PASS, v.reasons
    no_signal = {r.guard for r in v.results if not r.signal}
    assert no_signal == {"kpi", "hallucination_rate", "input_drift", "memory", "cost",
                         "error_budget_burn"}
    assert v.action is None and not v.catastrophic


def test_required_guard_without_signal_blocks_promotion(rng: np.random.Generator) -> None:
    triggers = [*default_triggers()[:2],
                TriggerSpec("kpi", 0.05, Severity.CRITICAL, Action.ROLLBACK, {"required": True})]
    v = make_judge(triggers).evaluate(fill(ArmWindow(), 8000, rng), fill(ArmWindow(), 800, rng))
    assert v.state is GuardState.INCONCLUSIVE
    assert any(r.startswith("kpi: no data") for r in v.reasons)


def test_not_enough_evidence_is_inconclusive(rng: np.random.Generator) -> None:
    v = _plain_judge().evaluate(fill(ArmWindow(), 300, rng), fill(ArmWindow(), 20, rng))
    assert v.state is GuardState.INCONCLUSIVE
    assert any(r.startswith("error_rate:") for r in v.reasons)


def test_catastrophic_fast_path_acts_on_n_consecutive_failures() -> None:
    j = make_judge(None, JudgeContext(catastrophic_run=3))
    a, b = ArmWindow(), ArmWindow()
    for w in (a, b):  # enough history that two failures are not yet significant
        for _ in range(300):
            w.record(Observation(0.05, Outcome.OK))
    j.evaluate(a, b)
    for _ in range(2):
        b.record(Observation(0.01, Outcome.SERVER_ERROR))
    assert j.evaluate(a, b).state is not GuardState.FAIL
    b.record(Observation(0.01, Outcome.TIMEOUT))
    v = j.evaluate(a, b)  # the champion got no request meanwhile: nothing to compare with
    assert v.state is not GuardState.FAIL and "waiting for the champion" in v.results[0].detail
    for _ in range(10):  # it answers well over the same interval
        a.record(Observation(0.05, Outcome.OK))
    v = j.evaluate(a, b)
    assert v.state is GuardState.FAIL and v.catastrophic
    assert v.severity is Severity.CRITICAL and v.action is Action.ROLLBACK
    assert v.reasons[0].startswith("catastrophic:")


def test_all_failing_challenger_fails_within_twenty_requests() -> None:
    """The e2e requirement: 100% errors fail fast even without the catastrophic path."""
    j = make_judge(None, JudgeContext(catastrophic_run=1000))
    a, b = ArmWindow(), ArmWindow()
    i = 0
    for i in range(1, 21):  # noqa: B007 (i is read after the loop)
        for _ in range(19):
            a.record(Observation(0.05, Outcome.OK))
        b.record(Observation(0.05, Outcome.SERVER_ERROR))
        v = j.evaluate(a, b)
        if v.state is GuardState.FAIL:
            break
    assert v.state is GuardState.FAIL and not v.catastrophic and i <= 12


def test_worst_breach_picks_severity_and_action(rng: np.random.Generator) -> None:
    triggers = [
        TriggerSpec("memory", 0.9, Severity.HIGH, Action.ROLLBACK_AND_SCALE),
        TriggerSpec("output_drift", 0.25, Severity.MEDIUM, Action.ALERT_ONLY),
        TriggerSpec("error_rate", 0.01, Severity.CRITICAL, Action.ROLLBACK),
    ]
    full = ResourceReadings(challenger=ArmResources(int(0.99 * 2**34), 2**34))
    both, only_alert = make_judge(triggers), make_judge(triggers[1:2])
    a, b = ArmWindow(), ArmWindow()
    for _ in range(100):  # looks of 5% canary traffic until the drift test rejects
        fill(a, 380, rng)
        fill(b, 20, rng, out_shift=1.0)
        v = only_alert.evaluate(a, b)
        if v.state is GuardState.FAIL:
            break
    assert v.state is GuardState.FAIL and v.action is Action.ALERT_ONLY
    for _ in range(100):
        fill(a, 380, rng)
        fill(b, 20, rng, out_shift=1.0)
        v = both.evaluate(a, b, None)
        if any(r.guard == "output_drift" and r.state is GuardState.FAIL for r in v.results):
            break
    v = both.evaluate(a, b, full)
    assert v.state is GuardState.FAIL
    assert v.severity is Severity.HIGH and v.action is Action.ROLLBACK_AND_SCALE
    assert {r.split(":")[0] for r in v.reasons} == {"memory", "output_drift"}


def test_verdict_to_dict_is_json(rng: np.random.Generator) -> None:
    v = _plain_judge().evaluate(fill(ArmWindow(), 500, rng), fill(ArmWindow(), 50, rng))
    d = json.loads(json.dumps(v.to_dict(), allow_nan=False))
    assert d["state"] == v.state.value
    assert {r["guard"] for r in d["results"]} >= {"catastrophic", "error_rate", "latency_p95"}
