"""The rollout state machine. Pure: no Ray, no I/O, no clock (callers pass `now`).

    idle -> loading -> shadow? -> canary(step i) -> promoted | rolled_back | paused | failed

Every transition returns the new `RolloutState` and one `Event` saying what happened; the
supervisor derives the routing table from the state (`table_for`) and carries out the
event's side effects (registry, audit, alert) in a fixed order.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.config import RolloutPolicy, ShadowPolicy, Step
from gateway.wire.routing import SLOTS, Mode, RoutingTable
from guards.results import Action, GuardState
from guards.verdict import Verdict
from model_registry.refs import ModelRef


class Phase(enum.StrEnum):
    IDLE = "idle"
    LOADING = "loading"
    SHADOW = "shadow"
    CANARY = "canary"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    PAUSED = "paused"
    FAILED = "failed"


ACTIVE = frozenset({Phase.LOADING, Phase.SHADOW, Phase.CANARY, Phase.PAUSED})
JUDGED = frozenset({Phase.SHADOW, Phase.CANARY, Phase.PAUSED})


class HoldKind(enum.StrEnum):
    """Why the step clock is stopped by something that is neither arm's fault (unlike a
    verdict hold, which the judge asks for when both arms degrade together)."""

    REGISTRY = "registry_unreachable"  # the rollout's state cannot be persisted
    REPLICA_LOST = "challenger_replica_lost"  # the challenger gets no traffic meanwhile


@dataclass(frozen=True)
class RolloutState:
    phase: Phase = Phase.IDLE
    champion_slot: str = "a"
    slot_models: Mapping[str, ModelRef | None] = field(default_factory=dict)
    rollout_id: str | None = None
    challenger: ModelRef | None = None
    previous_champion: ModelRef | None = None
    step: int = 0
    phase_started_at: float = 0.0
    step_base_requests: int = 0
    paused_phase: Phase | None = None
    awaiting_promotion: bool = False
    promoted_at: float | None = None
    reason: str = ""
    # Both arms degraded together since then: the step clock is stopped (a shared incident).
    held_since: float | None = None
    loaded_at: float | None = None  # when the challenger passed its health check
    # Holds by the infrastructure (HoldKind values), and since when the first one is on.
    holds: tuple[str, ...] = ()
    holds_since: float | None = None
    # The "challenger" is a champion set by hand in the registry: promoted once loaded.
    replaces_champion: bool = False

    @property
    def champion(self) -> ModelRef | None:
        return self.slot_models.get(self.champion_slot)

    @property
    def free_slot(self) -> str:
        return next(s for s in SLOTS if s != self.champion_slot)

    def to_dict(self) -> dict[str, Any]:
        def ref(r: ModelRef | None) -> dict[str, Any] | None:
            return r.to_dict() if r else None

        return {"phase": self.phase.value, "champion_slot": self.champion_slot,
                "slot_models": {s: ref(r) for s, r in self.slot_models.items()},
                "rollout_id": self.rollout_id, "challenger": ref(self.challenger),
                "previous_champion": ref(self.previous_champion), "step": self.step,
                "phase_started_at": self.phase_started_at,
                "step_base_requests": self.step_base_requests,
                "paused_phase": self.paused_phase.value if self.paused_phase else None,
                "awaiting_promotion": self.awaiting_promotion, "promoted_at": self.promoted_at,
                "reason": self.reason, "held_since": self.held_since,
                "loaded_at": self.loaded_at, "holds": list(self.holds),
                "holds_since": self.holds_since, "replaces_champion": self.replaces_champion}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RolloutState:
        def ref(r: Any) -> ModelRef | None:
            return ModelRef.from_dict(r) if r else None

        return cls(phase=Phase(d["phase"]), champion_slot=d["champion_slot"],
                   slot_models={s: ref(r) for s, r in d["slot_models"].items()},
                   rollout_id=d.get("rollout_id"), challenger=ref(d.get("challenger")),
                   previous_champion=ref(d.get("previous_champion")), step=int(d["step"]),
                   phase_started_at=float(d["phase_started_at"]),
                   step_base_requests=int(d.get("step_base_requests", 0)),
                   paused_phase=Phase(d["paused_phase"]) if d.get("paused_phase") else None,
                   awaiting_promotion=bool(d.get("awaiting_promotion")),
                   promoted_at=d.get("promoted_at"), reason=str(d.get("reason", "")),
                   held_since=d.get("held_since"), loaded_at=d.get("loaded_at"),
                   holds=tuple(str(h) for h in d.get("holds") or ()),
                   holds_since=d.get("holds_since"),
                   replaces_champion=bool(d.get("replaces_champion")))


@dataclass(frozen=True)
class Event:
    """What a transition did, for the audit log, the registry, metrics and alerts."""

    name: str  # rollout_started, loaded, load_failed, step_advanced, promoted, rolled_back, ...
    actor: str = "supervisor"
    reason: str = ""
    verdict: Mapping[str, Any] | None = None
    action: Action | None = None
    alert: str | None = None  # alert severity, or None for no alert


@dataclass(frozen=True)
class Transition:
    state: RolloutState
    event: Event | None = None


class TransitionError(ValueError):
    """An operator asked for a transition the current phase does not allow."""


def initial_state(champion: ModelRef) -> RolloutState:
    return RolloutState(slot_models={"a": champion, "b": None})


def routing_for(state: RolloutState, policy: RolloutPolicy) -> tuple[float, Mode]:
    phase = state.paused_phase if state.phase is Phase.PAUSED else state.phase
    if HoldKind.REPLICA_LOST in state.holds and phase in (Phase.SHADOW, Phase.CANARY):
        # Its slot is being replaced: requests would only queue for it. It stays assigned,
        # so Serve's replacement loads the same version.
        return 0.0, Mode.SPLIT
    if phase is Phase.SHADOW:
        return 0.0, Mode.SHADOW
    if phase is Phase.CANARY:
        return policy.steps[state.step].weight, Mode.SPLIT
    return 0.0, Mode.PINNED


def table_for(state: RolloutState, policy: RolloutPolicy, version: int) -> RoutingTable:
    weight, mode = routing_for(state, policy)
    free = state.free_slot
    lost = (free,) if HoldKind.REPLICA_LOST in state.holds and state.slot_models.get(free) \
        else ()
    return RoutingTable(version=version, champion_slot=state.champion_slot,
                        challenger_slot=free if state.slot_models.get(free) else None,
                        challenger_weight=weight, mode=mode, slot_models=dict(state.slot_models),
                        lost_slots=lost)


# --- transitions ----------------------------------------------------------------------


def start(state: RolloutState, challenger: ModelRef, rollout_id: str, now: float,
          replaces_champion: bool = False) -> Transition:
    """Load `challenger` into the free slot; with `replaces_champion`, it is a champion set
    by hand in the registry, which takes all traffic once it is loaded (not judged)."""
    if state.phase in ACTIVE:
        raise TransitionError(f"a rollout is already {state.phase.value}")
    models = {**state.slot_models, state.free_slot: challenger}
    new = RolloutState(phase=Phase.LOADING, champion_slot=state.champion_slot,
                       slot_models=models, rollout_id=rollout_id, challenger=challenger,
                       previous_champion=state.previous_champion, phase_started_at=now,
                       replaces_champion=replaces_champion)
    if replaces_champion:
        return Transition(new, Event("champion_loading", actor="registry", reason=(
            f"champion alias moved by hand to version {challenger.version}; loading it")))
    return Transition(new, Event("rollout_started",
                                 reason=f"challenger alias set to version {challenger.version}"))


def loaded(state: RolloutState, policy: RolloutPolicy, now: float) -> Transition:
    _require(state, Phase.LOADING, "loaded")
    if state.replaces_champion and state.challenger is not None:
        return promote(state, now, "registry", f"champion alias moved by hand to version "
                       f"{state.challenger.version}; it passed its health check")
    phase = Phase.SHADOW if policy.shadow.enabled else Phase.CANARY
    return Transition(replace(state, phase=phase, step=0, phase_started_at=now,
                              step_base_requests=0, loaded_at=now),
                      Event("loaded", reason="challenger passed its health check"))


def load_failed(state: RolloutState, error: str, now: float) -> Transition:
    _require(state, Phase.LOADING, "load_failed")
    return Transition(_end(state, Phase.FAILED, error, now),
                      Event("load_failed", reason=error, alert="high"))


def observe(state: RolloutState, policy: RolloutPolicy, verdict: Verdict,
            challenger_requests: int, now: float) -> Transition:
    """Feed one verdict (on cumulative windows) and the challenger's request count."""
    if state.phase not in JUDGED:
        return Transition(state)
    if verdict.state is GuardState.FAIL and verdict.action is not None:
        return _breach(state, verdict, now)
    if state.phase is Phase.PAUSED or state.awaiting_promotion or state.holds:
        return Transition(state)  # (an infrastructure hold: no step, no deadline)
    if verdict.hold:
        return _hold(state, verdict, now)
    if state.held_since is not None:
        state = _release_hold(state, now)
        return Transition(state, Event("hold_released", reason=state.reason))
    elapsed = now - state.phase_started_at
    if verdict.state is GuardState.PASS and _step_done(state, policy, challenger_requests,
                                                       elapsed):
        return _advance(state, policy, challenger_requests, now, verdict)
    if elapsed > policy.step_deadline_s:
        reason = f"step inconclusive after {elapsed:.0f}s (deadline {policy.step_deadline_s:g}s)"
        if policy.on_deadline == "rollback":
            return Transition(_end(state, Phase.ROLLED_BACK, reason, now),
                              Event("rolled_back", reason=reason, action=Action.ROLLBACK,
                                    verdict=verdict.to_dict(), alert="medium"))
        return Transition(replace(state, phase=Phase.PAUSED, paused_phase=state.phase,
                                  reason=reason),
                          Event("paused", reason=reason, alert="medium"))
    return Transition(state)


def promote(state: RolloutState, now: float, actor: str = "supervisor",
            reason: str = "every step passed") -> Transition:
    if state.phase not in JUDGED and not (state.phase is Phase.LOADING
                                          and state.replaces_champion):
        raise TransitionError(f"nothing to promote in phase {state.phase.value}")
    new = RolloutState(phase=Phase.PROMOTED, champion_slot=state.free_slot,
                       slot_models=dict(state.slot_models), rollout_id=state.rollout_id,
                       previous_champion=state.champion, phase_started_at=now,
                       promoted_at=now, reason=reason)
    return Transition(new, Event("promoted", actor=actor, reason=reason, alert="info"))


def rollback(state: RolloutState, now: float, actor: str, reason: str) -> Transition:
    """Operator rollback: abort an active rollout, or restore the previous champion."""
    if state.phase in ACTIVE:
        return Transition(_end(state, Phase.ROLLED_BACK, reason, now),
                          Event("rolled_back", actor=actor, reason=reason,
                                action=Action.ROLLBACK, alert="high"))
    if state.phase is Phase.PROMOTED and state.previous_champion is not None:
        return _restore(state, now, actor, reason)
    raise TransitionError(f"nothing to roll back in phase {state.phase.value}")


def supersede(state: RolloutState, version: str, now: float) -> Transition:
    """The challenger alias was moved to `version` during the rollout: end this one (its
    verdict is `superseded`), so the newer version can start."""
    if state.phase not in ACTIVE:
        raise TransitionError(f"nothing to supersede in phase {state.phase.value}")
    reason = f"challenger alias moved to version {version} during the rollout"
    return Transition(_end(state, Phase.ROLLED_BACK, reason, now),
                      Event("superseded", actor="registry", reason=reason,
                            action=Action.ROLLBACK, alert="medium"))


def abort(state: RolloutState, now: float, reason: str, actor: str = "registry") -> Transition:
    """End the rollout for a reason that is not the challenger's fault (its alias was deleted,
    the champion was moved by hand): all traffic to the champion, verdict `aborted`."""
    if state.phase not in ACTIVE:
        raise TransitionError(f"nothing to abort in phase {state.phase.value}")
    return Transition(_end(state, Phase.ROLLED_BACK, reason, now),
                      Event("aborted", actor=actor, reason=reason, action=Action.ROLLBACK,
                            alert="medium"))


def hold_for(state: RolloutState, kind: HoldKind, reason: str, now: float) -> Transition:
    """Stop the step clock for `kind` (see HoldKind); a no-op when it is on already or no
    challenger is being judged or loaded."""
    if state.phase not in ACTIVE or kind in state.holds:
        return Transition(state)
    new = replace(state, holds=(*state.holds, kind.value),
                  holds_since=now if state.holds_since is None else state.holds_since,
                  reason=reason)
    return Transition(new, Event("held", reason=reason, alert="medium"))


def release_hold(state: RolloutState, kind: HoldKind, reason: str, now: float) -> Transition:
    """`kind` is over; when it was the last hold, the step clock resumes (the time held does
    not count towards the step's minimum duration or its deadline)."""
    if kind not in state.holds:
        return Transition(state)
    holds = tuple(h for h in state.holds if h != kind)
    new = replace(state, holds=holds, reason=reason)
    if not holds:
        held = max(now - (state.holds_since or now), 0.0)
        new = replace(new, holds_since=None, phase_started_at=state.phase_started_at + held)
    return Transition(new, Event("hold_released", reason=reason))


def pause(state: RolloutState, actor: str, reason: str) -> Transition:
    if state.phase not in (Phase.SHADOW, Phase.CANARY):
        raise TransitionError(f"cannot pause in phase {state.phase.value}")
    return Transition(replace(state, phase=Phase.PAUSED, paused_phase=state.phase,
                              reason=reason), Event("paused", actor=actor, reason=reason))


def resume(state: RolloutState, now: float, actor: str, challenger_requests: int) -> Transition:
    if state.phase is not Phase.PAUSED or state.paused_phase is None:
        raise TransitionError(f"cannot resume in phase {state.phase.value}")
    return Transition(replace(state, phase=state.paused_phase, paused_phase=None,
                              phase_started_at=now, step_base_requests=challenger_requests,
                              reason="", held_since=None), Event("resumed", actor=actor))


def release_old_champion(state: RolloutState, policy: RolloutPolicy, now: float) -> Transition:
    """After the rollback window, unload the previous champion kept warm since promotion."""
    old_slot = state.free_slot
    if (state.phase is not Phase.PROMOTED or state.promoted_at is None
            or state.slot_models.get(old_slot) is None
            or now - state.promoted_at < policy.rollback_window_s):
        return Transition(state)
    models = {**state.slot_models, old_slot: None}
    return Transition(replace(state, slot_models=models),
                      Event("released", reason="rollback window elapsed"))


# --- helpers ---------------------------------------------------------------------------


def _require(state: RolloutState, phase: Phase, what: str) -> None:
    if state.phase is not phase:
        raise TransitionError(f"{what}: expected phase {phase.value}, got {state.phase.value}")


def _end(state: RolloutState, phase: Phase, reason: str, now: float) -> RolloutState:
    """Terminal phases release the challenger's slot; the champion stays where it is."""
    models = {**state.slot_models, state.free_slot: None}
    return replace(state, phase=phase, slot_models=models, phase_started_at=now,
                   paused_phase=None, awaiting_promotion=False, reason=reason,
                   held_since=None, holds=(), holds_since=None, replaces_champion=False)


def _step_done(state: RolloutState, policy: RolloutPolicy, requests: int,
               elapsed: float) -> bool:
    phase = state.phase
    gate: Step | ShadowPolicy = policy.shadow if phase is Phase.SHADOW else policy.steps[state.step]
    return (requests - state.step_base_requests >= gate.min_requests
            and elapsed >= gate.min_duration_s)


def _advance(state: RolloutState, policy: RolloutPolicy, requests: int, now: float,
             verdict: Verdict) -> Transition:
    next_step = 0 if state.phase is Phase.SHADOW else state.step + 1
    if next_step < len(policy.steps):
        new = replace(state, phase=Phase.CANARY, step=next_step, phase_started_at=now,
                      step_base_requests=requests)
        weight = policy.steps[next_step].weight
        return Transition(new, Event("step_advanced", reason=f"to step {next_step} "
                                     f"({weight:g}% of traffic)", verdict=verdict.to_dict()))
    if policy.auto_promote:
        return promote(state, now)
    return Transition(replace(state, awaiting_promotion=True),
                      Event("awaiting_promotion", reason="every step passed; auto-promotion "
                            "is off", verdict=verdict.to_dict(), alert="info"))


def _breach(state: RolloutState, verdict: Verdict, now: float) -> Transition:
    action = verdict.action
    assert action is not None
    reason = "; ".join(verdict.reasons) or "guard breach"
    severity = verdict.severity.value if verdict.severity else "high"
    if action.rolls_back:
        return Transition(_end(state, Phase.ROLLED_BACK, reason, now),
                          Event("rolled_back", reason=reason, verdict=verdict.to_dict(),
                                action=action, alert=severity))
    if action is Action.PAUSE and state.phase is not Phase.PAUSED:
        return Transition(replace(state, phase=Phase.PAUSED, paused_phase=state.phase,
                                  reason=reason),
                          Event("paused", reason=reason, verdict=verdict.to_dict(),
                                action=action, alert=severity))
    if action is Action.ALERT_ONLY and reason != state.reason:
        return Transition(replace(state, reason=reason),
                          Event("alerted", reason=reason, verdict=verdict.to_dict(),
                                action=action, alert=severity))
    return Transition(state)


def _hold(state: RolloutState, verdict: Verdict, now: float) -> Transition:
    """Both arms degraded: stop the step clock until the incident clears (no rollback)."""
    if state.held_since is not None:
        return Transition(state)
    reason = "; ".join(verdict.reasons) or "both arms degraded"
    return Transition(replace(state, held_since=now, reason=reason),
                      Event("held", reason=reason, verdict=verdict.to_dict(), alert="medium"))


def _release_hold(state: RolloutState, now: float) -> RolloutState:
    assert state.held_since is not None
    held = max(now - state.held_since, 0.0)
    return replace(state, held_since=None, phase_started_at=state.phase_started_at + held,
                   reason=f"incident cleared after {held:.1f}s; step clock resumed")


def _restore(state: RolloutState, now: float, actor: str, reason: str) -> Transition:
    previous = state.previous_champion
    assert previous is not None
    old_slot = state.free_slot
    if state.slot_models.get(old_slot) == previous:
        # Still warm: flip roles back, no reload.
        new = RolloutState(phase=Phase.ROLLED_BACK, champion_slot=old_slot,
                           slot_models={**state.slot_models, state.champion_slot: None},
                           rollout_id=state.rollout_id, previous_champion=state.champion,
                           phase_started_at=now, reason=reason)
        return Transition(new, Event("restored", actor=actor, reason=reason,
                                     action=Action.ROLLBACK, alert="high"))
    raise TransitionError("the previous champion was already released (rollback window "
                          "elapsed); point the champion alias at it to redeploy")
