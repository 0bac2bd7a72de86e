"""Model-slot replicas that died under a call, as one ingress replica sees them.

A replica that dies (its node lost, killed, or crashed by its model) fails the calls it was
running with Ray's `RayActorError`, and Serve queues the next calls to the slot until it
has started a replacement (seconds: the model loads again). The ingress reports each death
once to the supervisor, which judges whose fault it was and holds the rollout (challenger
at 0%) while Serve replaces the replica; meanwhile this replica routes the challenger's
share to the champion itself (the supervisor's table takes a moment), and a challenger
call that failed because its slot was lost around it is not counted against the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ray.exceptions import RayActorError

# A failed challenger call that started up to this long after a loss of its slot is the
# loss's doing (it was queued for the dead replica or for its replacement)...
GRACE_AFTER_S = 2.0
# ...and requests are routed past the slot for this long, until the supervisor's table
# (challenger at 0% while the replica is replaced) arrives.
AVOID_S = 2.0
MAX_MESSAGE = 2000


def is_replica_loss(exc: BaseException) -> bool:
    """Whether a call failed because the slot's replica died or became unreachable."""
    return isinstance(exc, RayActorError)


@dataclass(frozen=True)
class Loss:
    """What the supervisor is told of one replica's death."""

    slot: str
    version: str
    actor_id: str
    message: str
    creation_failed: bool


def describe_loss(slot: str, version: str, exc: BaseException) -> Loss:
    return Loss(slot, version, str(getattr(exc, "actor_id", "") or ""),
                str(exc)[:MAX_MESSAGE], bool(getattr(exc, "actor_init_failed", False)))


class LostSlots:
    """Per slot and model version: when a replica of it was last lost (monotonic time)."""

    def __init__(self) -> None:
        self._lost: dict[tuple[str, str], float] = {}
        self._reported: set[str] = set()

    def mark(self, loss: Loss, now: float) -> bool:
        """Remember the loss; True when this replica's death was not reported yet."""
        self._lost[(loss.slot, loss.version)] = now
        key = loss.actor_id or f"{loss.slot}:{loss.version}:{now:.0f}"
        if key in self._reported:
            return False
        if len(self._reported) > 1024:  # bounded: old replicas' ids are of no use
            self._reported.clear()
        self._reported.add(key)
        return True

    def note(self, slot: str, version: str, now: float) -> None:
        """The supervisor's table says the slot's replica was lost (it found out first)."""
        self._lost[(slot, version)] = now

    def avoid(self, slot: str, version: str, now: float) -> bool:
        """Whether to route past the slot now (it was lost a moment ago)."""
        at = self._lost.get((slot, version))
        return at is not None and now - at < AVOID_S

    def excuses(self, slot: str, version: str, started: float, now: float) -> bool:
        """Whether a failed call to the slot, started at `started`, is the loss's doing: the
        slot was lost while it ran, or shortly before it started."""
        at = self._lost.get((slot, version))
        return at is not None and started - GRACE_AFTER_S <= at <= now
