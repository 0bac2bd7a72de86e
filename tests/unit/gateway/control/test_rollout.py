"""The rollout state machine, driven by real Verdicts from the real Judge's value types."""

from __future__ import annotations

import pytest

from gateway.control import rollout as ro
from gateway.wire.routing import Mode
from guards.results import Action, GuardState, Severity
from guards.verdict import Verdict
from model_registry.refs import ModelRef

CHAMP = ModelRef("m", "1", "/a", "r1")
CHALL = ModelRef("m", "2", "/b", "r2")
POLICY = ro.RolloutPolicy(steps=(ro.Step(10, 100, 5), ro.Step(50, 200, 5)),
                          rollback_window_s=60)


def verdict(state: GuardState, action: Action | None = None,
            severity: Severity | None = None, reasons: tuple[str, ...] = ()) -> Verdict:
    return Verdict(state=state, action=action, severity=severity, reasons=reasons, results=(),
                   catastrophic=False)


PASS = verdict(GuardState.PASS)
WAIT = verdict(GuardState.INCONCLUSIVE)


def canary(policy: ro.RolloutPolicy = POLICY) -> ro.RolloutState:
    s = ro.start(ro.initial_state(CHAMP), CHALL, "r", now=0).state
    return ro.loaded(s, policy, now=1).state


def test_start_loads_into_the_free_slot_at_weight_zero() -> None:
    tr = ro.start(ro.initial_state(CHAMP), CHALL, "r", now=0)
    assert tr.state.phase is ro.Phase.LOADING and tr.event and tr.event.name == "rollout_started"
    table = ro.table_for(tr.state, POLICY, 1)
    assert table.slot_models == {"a": CHAMP, "b": CHALL}
    assert (table.challenger_weight, table.mode) == (0.0, Mode.PINNED)
    with pytest.raises(ro.TransitionError):
        ro.start(tr.state, CHALL, "r2", now=0)


def test_steps_advance_only_with_a_pass_and_enough_requests_and_time() -> None:
    s = canary()
    assert ro.table_for(s, POLICY, 1).challenger_weight == 10
    assert ro.observe(s, POLICY, PASS, 50, now=10).state == s  # too few requests
    assert ro.observe(s, POLICY, PASS, 150, now=3).state == s  # too early
    assert ro.observe(s, POLICY, WAIT, 150, now=10).state == s  # inconclusive waits
    tr = ro.observe(s, POLICY, PASS, 150, now=10)
    assert tr.state.step == 1 and tr.event and tr.event.name == "step_advanced"
    assert ro.table_for(tr.state, POLICY, 2).challenger_weight == 50
    # the next step counts requests from its own start
    assert ro.observe(tr.state, POLICY, PASS, 300, now=20).state.phase is ro.Phase.CANARY
    done = ro.observe(tr.state, POLICY, PASS, 350, now=20)
    assert done.state.phase is ro.Phase.PROMOTED and done.event and done.event.name == "promoted"


def test_promotion_flips_roles_without_reloading_and_keeps_the_old_champion_warm() -> None:
    s = ro.promote(canary(), now=5).state
    table = ro.table_for(s, POLICY, 3)
    assert table.champion_slot == "b" and table.slot_models == {"a": CHAMP, "b": CHALL}
    assert (table.challenger_weight, table.mode) == (0.0, Mode.PINNED)
    assert s.previous_champion == CHAMP
    assert ro.release_old_champion(s, POLICY, now=30).state == s
    released = ro.release_old_champion(s, POLICY, now=70).state
    assert released.slot_models == {"a": None, "b": CHALL}


def test_rollback_after_promotion_restores_the_warm_old_champion() -> None:
    s = ro.promote(canary(), now=5).state
    tr = ro.rollback(s, now=6, actor="admin", reason="bad KPI")
    assert tr.event and tr.event.name == "restored"
    assert tr.state.champion == CHAMP and tr.state.champion_slot == "a"
    assert tr.state.slot_models["b"] is None
    released = ro.release_old_champion(s, POLICY, now=100).state
    with pytest.raises(ro.TransitionError, match="already released"):
        ro.rollback(released, now=101, actor="admin", reason="late")


@pytest.mark.parametrize("action", [Action.ROLLBACK, Action.ROLLBACK_AND_ALERT,
                                    Action.ROLLBACK_AND_SCALE])
def test_a_breach_rolls_back_at_once_and_releases_the_challenger(action: Action) -> None:
    s = canary()
    tr = ro.observe(s, POLICY, verdict(GuardState.FAIL, action, Severity.CRITICAL,
                                       ("error_rate: 40% vs 0.5%",)), 3, now=2)
    assert tr.state.phase is ro.Phase.ROLLED_BACK
    assert tr.event and tr.event.action is action and tr.event.alert == "critical"
    assert "error_rate" in tr.event.reason
    table = ro.table_for(tr.state, POLICY, 9)
    assert table.challenger_slot is None and table.challenger_weight == 0


def test_pause_action_and_alert_only() -> None:
    s = canary()
    paused = ro.observe(s, POLICY, verdict(GuardState.FAIL, Action.PAUSE, Severity.MEDIUM,
                                           ("cost",)), 3, now=2).state
    assert paused.phase is ro.Phase.PAUSED
    assert ro.table_for(paused, POLICY, 1).challenger_weight == 10  # holds its weight
    assert ro.observe(paused, POLICY, PASS, 10_000, now=99).state == paused  # no advancing
    failing = verdict(GuardState.FAIL, Action.ROLLBACK, Severity.HIGH, ("drift",))
    assert ro.observe(paused, POLICY, failing, 10, now=3).state.phase is ro.Phase.ROLLED_BACK
    resumed = ro.resume(paused, now=5, actor="admin", challenger_requests=40).state
    assert resumed.phase is ro.Phase.CANARY and resumed.step_base_requests == 40
    alert = ro.observe(s, POLICY, verdict(GuardState.FAIL, Action.ALERT_ONLY, Severity.LOW,
                                          ("kpi",)), 3, now=2)
    assert alert.state.phase is ro.Phase.CANARY and alert.event and alert.event.alert == "low"
    again = ro.observe(alert.state, POLICY, verdict(GuardState.FAIL, Action.ALERT_ONLY,
                                                    Severity.LOW, ("kpi",)), 4, now=3)
    assert again.event is None  # the same alert is not repeated every look


def test_inconclusive_step_deadline() -> None:
    policy = ro.RolloutPolicy(steps=(ro.Step(10, 100, 5),), step_deadline_s=60)
    s = canary(policy)
    assert ro.observe(s, policy, WAIT, 500, now=100).state.phase is ro.Phase.PAUSED
    strict = ro.RolloutPolicy(steps=(ro.Step(10, 100, 5),), step_deadline_s=60,
                              on_deadline="rollback")
    assert ro.observe(s, strict, WAIT, 500, now=100).state.phase is ro.Phase.ROLLED_BACK


def test_shadow_phase_then_canary_and_manual_promotion() -> None:
    policy = ro.RolloutPolicy(steps=(ro.Step(20, 10, 0),), auto_promote=False,
                              shadow=ro.ShadowPolicy(enabled=True, min_requests=50,
                                                     min_duration_s=0))
    s = ro.loaded(ro.start(ro.initial_state(CHAMP), CHALL, "r", 0).state, policy, 1).state
    assert s.phase is ro.Phase.SHADOW
    assert ro.table_for(s, policy, 1).mode is Mode.SHADOW
    s = ro.observe(s, policy, PASS, 60, now=2).state
    assert (s.phase, s.step) == (ro.Phase.CANARY, 0)
    tr = ro.observe(s, policy, PASS, 100, now=3)
    assert tr.state.awaiting_promotion and tr.event and tr.event.name == "awaiting_promotion"
    assert ro.promote(tr.state, now=4, actor="alice").state.phase is ro.Phase.PROMOTED


def test_load_failure_and_invalid_operations() -> None:
    s = ro.start(ro.initial_state(CHAMP), CHALL, "r", now=0).state
    failed = ro.load_failed(s, "artifact missing", now=1)
    assert failed.state.phase is ro.Phase.FAILED and failed.event and failed.event.alert
    assert failed.state.slot_models["b"] is None
    idle = ro.initial_state(CHAMP)
    for op in (lambda: ro.promote(idle, 0), lambda: ro.pause(idle, "a", ""),
               lambda: ro.resume(idle, 0, "a", 0),
               lambda: ro.rollback(idle, 0, "a", "")):
        with pytest.raises(ro.TransitionError):
            op()


def test_state_round_trips_through_json() -> None:
    s = ro.observe(canary(), POLICY, PASS, 150, now=10).state
    assert ro.RolloutState.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(("steps", "message"), [
    ((), "at least one step"),
    ((ro.Step(50, 1, 1), ro.Step(10, 1, 1)), "strictly increase"),
])
def test_policy_validation(steps: tuple[ro.Step, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ro.RolloutPolicy(steps=steps)


HOLD = Verdict(state=GuardState.INCONCLUSIVE, action=None, severity=None,
               reasons=("both arms degraded: champion 40/200 failed; holding",), results=(),
               catastrophic=False, hold=True)


def test_shared_incident_holds_with_the_step_clock_stopped_then_resumes() -> None:
    s = canary()  # step 0 started at t=1, needs 5 s and 100 requests
    tr = ro.observe(s, POLICY, HOLD, 50, now=2)
    assert tr.event and tr.event.name == "held" and tr.event.alert == "medium"
    assert "both arms degraded" in tr.event.reason and tr.state.held_since == 2
    held = tr.state
    assert ro.table_for(held, POLICY, 1).challenger_weight == 10  # traffic unchanged
    # while held: no advance even with a PASS-worthy request count, no second alert
    assert ro.observe(held, POLICY, HOLD, 500, now=60).state == held
    tr = ro.observe(held, POLICY, PASS, 500, now=62)  # incident cleared
    assert tr.event and tr.event.name == "hold_released" and tr.state.held_since is None
    assert tr.state.phase_started_at == pytest.approx(1 + 60)  # 60 s held do not count
    assert ro.observe(tr.state, POLICY, PASS, 500, now=63).state.step == 0  # 2 s of 5
    assert ro.observe(tr.state, POLICY, PASS, 500, now=66.5).state.step == 1


def test_a_breach_during_a_hold_still_rolls_back() -> None:
    held = ro.observe(canary(), POLICY, HOLD, 50, now=2).state
    bad = verdict(GuardState.FAIL, Action.ROLLBACK, Severity.CRITICAL, ("error_rate: x",))
    tr = ro.observe(held, POLICY, bad, 60, now=3)
    assert tr.state.phase is ro.Phase.ROLLED_BACK and tr.state.held_since is None


def test_hold_survives_persistence() -> None:
    held = ro.observe(canary(), POLICY, HOLD, 50, now=2).state
    again = ro.RolloutState.from_dict(held.to_dict())
    assert again == held and again.loaded_at == 1



def test_infrastructure_holds_stop_the_step_clock_and_a_lost_replica_gets_no_traffic() -> None:
    from dataclasses import replace

    from gateway.config import parse_config

    policy = parse_config({"rollout": {"steps": [{"weight": 10.0, "min_requests": 1,
                                                  "min_duration_s": 0.0}]}}).rollout
    loading = ro.start(ro.initial_state(ModelRef("m", "1", "/m/1")), ModelRef("m", "2", "/m/2"),
                       "r", 0.0).state
    state = replace(loading, phase=ro.Phase.CANARY, phase_started_at=5.0)
    held = ro.hold_for(state, ro.HoldKind.REPLICA_LOST, "lost", 10.0)
    assert held.event is not None and held.event.name == "held"
    assert ro.routing_for(held.state, policy) == (0.0, Mode.SPLIT)
    both = ro.hold_for(held.state, ro.HoldKind.REGISTRY, "down", 12.0).state
    assert both.holds == ("challenger_replica_lost", "registry_unreachable")
    assert ro.hold_for(both, ro.HoldKind.REGISTRY, "again", 13.0).event is None  # on already
    one = ro.release_hold(both, ro.HoldKind.REPLICA_LOST, "back", 15.0).state
    assert ro.routing_for(one, policy) == (10.0, Mode.SPLIT)
    assert one.phase_started_at == 5.0  # still held by the registry
    free = ro.release_hold(one, ro.HoldKind.REGISTRY, "back", 20.0).state
    assert free.holds == () and free.holds_since is None
    assert free.phase_started_at == 15.0  # 10 s held do not count
    assert ro.RolloutState.from_dict(both.to_dict()) == both


def test_supersede_and_abort_end_the_rollout_and_release_the_slot() -> None:
    loading = ro.start(ro.initial_state(ModelRef("m", "1", "/m/1")), ModelRef("m", "2", "/m/2"),
                       "r", 0.0).state
    superseded = ro.supersede(loading, "3", 1.0)
    assert superseded.event is not None and superseded.event.name == "superseded"
    assert superseded.state.phase is ro.Phase.ROLLED_BACK
    assert superseded.state.slot_models["b"] is None
    aborted = ro.abort(loading, 1.0, "alias deleted")
    assert aborted.event is not None and aborted.event.name == "aborted"
    with pytest.raises(ro.TransitionError):
        ro.abort(aborted.state, 2.0, "again")
