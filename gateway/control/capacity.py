"""The champion's capacity around a rollback.

With autoscaling slots, a champion serving half the traffic during a canary has shrunk to
half its replicas; a rollback sends it all the traffic at once, and Serve's autoscaler adds
replicas only after `upscale_delay_s` of overload ("no capacity left on rollback"). So, as
soon as traffic is moved back, the champion is asked for the replicas the challenger was
using too, and the challenger's replicas (their devices) are released only once the
champion's new ones run, or after `wait_s` (on a full cluster the champion's new replicas
may need exactly the devices the challenger holds).

With fixed replica counts the champion is sized for all the traffic already; only the
`rollback_and_scale` action (a capacity breach, e.g. memory) adds a replica.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

from core.logs import get_logger
from gateway.config import SlotsConfig

__all__ = ["CapacityKeeper", "Handover", "ReplicaCount", "ReplicaScaler", "plan_handover"]

log = get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ReplicaCount:
    running: int  # replicas serving now
    target: int  # replicas the deployment is asked for


class ReplicaScaler(Protocol):
    """Reads and sets a slot deployment's replica count (Serve's controller in production)."""

    def count(self, slot: str) -> ReplicaCount: ...

    def scale(self, slot: str, replicas: int) -> None: ...


@dataclass(frozen=True)
class Handover:
    """What a rollback does to capacity: the champion slot's new target (None: unchanged),
    and the count the freed slot is released to once the champion has it (None: untouched)."""

    champion_target: int | None
    release_to: int | None


def plan_handover(champion: int, challenger: int, slots: SlotsConfig,
                  scale_up: bool) -> Handover:
    """`champion`/`challenger`: each slot's replicas now (the larger of running and target);
    `scale_up`: the breach asked for more capacity (`rollback_and_scale`)."""
    extra = 1 if scale_up else 0
    if slots.autoscaling is None:
        if not scale_up:
            return Handover(None, None)
        return Handover(max(champion, slots.num_replicas) + extra, None)
    bound = slots.autoscaling.max_replicas
    # The challenger's replicas were carrying its share of the traffic: the champion takes
    # that share now (never fewer than it has, never more than its autoscaling bound).
    target = min(bound, champion + challenger + extra)
    release = slots.autoscaling.min_replicas if challenger > slots.autoscaling.min_replicas \
        else None
    return Handover(target if target > champion else None, release)


class CapacityKeeper:
    """Carries out a `Handover` (blocking: run it in a worker thread)."""

    def __init__(self, scaler: ReplicaScaler, slots: SlotsConfig, wait_s: float = 60.0,
                 poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._scaler = scaler
        self._slots = slots
        self._wait_s = wait_s
        self._poll_s = poll_s
        self._sleep = sleep
        self._monotonic = monotonic

    def after_rollback(self, champion_slot: str, freed_slot: str, scale_up: bool) -> Handover:
        """Raises only once Serve's controller has failed every try for `wait_s` (a busy or
        restarting controller answers late: each call is retried until then)."""
        deadline = self._monotonic() + self._wait_s
        # Replicas starting count too: they were asked for and will take their share.
        champion, challenger = (
            max(c.running, c.target) for c in (
                self._retry(partial(self._scaler.count, slot), f"reading slot {slot}", deadline)
                for slot in (champion_slot, freed_slot)))
        plan = plan_handover(champion, challenger, self._slots, scale_up)
        if plan.champion_target is not None:
            self._retry(partial(self._scaler.scale, champion_slot, plan.champion_target),
                        f"scaling slot {champion_slot}", deadline)
            log.info("rollback: champion slot %s scaled from %d to %d replicas", champion_slot,
                     champion, plan.champion_target)
            if plan.release_to is not None:
                self._wait_running(champion_slot, plan.champion_target)
        if plan.release_to is not None:
            self._retry(partial(self._scaler.scale, freed_slot, plan.release_to),
                        f"releasing slot {freed_slot}", self._monotonic() + self._wait_s)
            log.info("rollback: freed slot %s released to %d replicas", freed_slot,
                     plan.release_to)
        return plan

    def _retry(self, call: Callable[[], T], what: str, deadline: float) -> T:
        delay = self._poll_s
        while True:
            try:
                return call()
            except Exception as exc:
                if self._monotonic() >= deadline:
                    raise
                log.warning("rollback capacity: %s failed (retrying): %s", what, exc)
                self._sleep(delay)
                delay = min(delay * 2, 5.0)

    def _wait_running(self, slot: str, replicas: int) -> bool:
        deadline = self._monotonic() + self._wait_s
        while True:
            try:
                running = self._scaler.count(slot).running
            except Exception as exc:  # the controller answered late: ask again
                log.warning("rollback capacity: reading slot %s failed: %s", slot, exc)
                running = 0
            if running >= replicas:
                return True
            if self._monotonic() >= deadline:
                log.warning("rollback: champion slot %s has %d of %d replicas after %gs; "
                            "releasing the freed slot's replicas anyway (the cluster may "
                            "need their resources)", slot, running, replicas, self._wait_s)
                return False
            self._sleep(self._poll_s)
