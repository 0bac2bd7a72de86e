"""Whose fault a lost model-slot replica is: the infrastructure's or the model's. Pure.

A replica can die under a request for reasons that say nothing about its model (a node
lost, a kill by an operator or a scheduler, preemption) or because its model brought it
down (out of memory, a crash in the model's code or its native libraries). Ray says why an
actor died, and the two are judged differently: an infrastructure loss holds the rollout
while Serve replaces the replica; a model's crash counts against the model.

Ray's text for a worker killed by a signal is the same for SIGKILL from outside and for a
crash inside (it lists both as possible causes), so a single such loss is taken as the
infrastructure's; the same slot losing replicas again and again in one rollout, while the
champion's do not, is the model's (`REPEATED_LOSSES`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# A challenger's replicas lost this many times in one rollout are taken as its model's fault.
REPEATED_LOSSES = 3


class Fault(enum.StrEnum):
    INFRASTRUCTURE = "infrastructure"
    MODEL = "model"


@dataclass(frozen=True)
class ReplicaLoss:
    fault: Fault
    cause: str  # short, for the verdict and the audit record


# Phrases of Ray's death causes, most specific first. Ray's memory monitor names itself; a
# generic signal death merely lists the OOM killer among possible causes, so "OOM killer"
# alone proves nothing.
_MODEL_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"memory monitor|running low on memory|OutOfMemoryError|"
                r"killed due to memory pressure", re.I), "out of memory (Ray's memory monitor)"),
    (re.compile(r"error raised in its creation task", re.I), "its model failed in the "
     "replica's constructor"),
    (re.compile(r"Worker exit type: USER_ERROR", re.I), "an error in the model's code ended "
     "the replica"),
)
_INFRA_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"node (has )?died|NODE_DIED|preempt", re.I), "its node was lost"),
    (re.compile(r"killed by `?ray\.kill|INTENDED_USER_EXIT|INTENDED_SYSTEM_EXIT", re.I),
     "it was killed from outside (ray.kill)"),
    (re.compile(r"SYSTEM_ERROR|unexpectedly exits|connection error", re.I),
     "its worker process died (killed by a signal, or crashed)"),
    (re.compile(r"ActorUnavailableError|temporarily unavailable|unreachable", re.I),
     "it became unreachable"),
)


def classify(message: str, creation_failed: bool = False) -> ReplicaLoss:
    """The fault and cause of one replica death, from Ray's error text."""
    if creation_failed:
        return ReplicaLoss(Fault.MODEL, "its model failed in the replica's constructor")
    for pattern, cause in _MODEL_CAUSES:
        if pattern.search(message):
            return ReplicaLoss(Fault.MODEL, cause)
    for pattern, cause in _INFRA_CAUSES:
        if pattern.search(message):
            return ReplicaLoss(Fault.INFRASTRUCTURE, cause)
    return ReplicaLoss(Fault.INFRASTRUCTURE, "the replica died (no cause given by Ray)")


def judge_repeats(loss: ReplicaLoss, challenger_losses: int,
                  champion_losses: int) -> ReplicaLoss:
    """An infrastructure loss becomes the model's when the challenger's replicas keep dying
    (`challenger_losses` so far in this rollout, this one included) and the champion's,
    on the same infrastructure, do not."""
    if (loss.fault is Fault.INFRASTRUCTURE and challenger_losses >= REPEATED_LOSSES
            and champion_losses == 0):
        return ReplicaLoss(Fault.MODEL, f"its replicas died {challenger_losses} times in this "
                           f"rollout, the champion's none (last: {loss.cause})")
    return loss
