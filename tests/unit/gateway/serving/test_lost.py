"""Slot replicas lost under calls, as one ingress replica tracks them."""

from __future__ import annotations

from ray.exceptions import ActorDiedError, RayActorError

from gateway.serving.lost import AVOID_S, GRACE_AFTER_S, LostSlots, describe_loss, is_replica_loss


def test_only_rays_actor_errors_are_replica_losses() -> None:
    assert is_replica_loss(ActorDiedError())
    assert is_replica_loss(RayActorError())
    assert not is_replica_loss(RuntimeError("model failed"))
    assert not is_replica_loss(TimeoutError())


def test_a_loss_is_reported_once_per_replica_and_excuses_calls_around_it() -> None:
    lost = LostSlots()
    loss = describe_loss("b", "2", ActorDiedError())
    assert loss.slot == "b" and loss.version == "2" and not loss.creation_failed
    assert "died unexpectedly" in loss.message
    assert lost.mark(loss, 100.0)
    assert not lost.mark(loss, 100.1)  # the same replica, seen by another call
    assert lost.avoid("b", "2", 100.0 + AVOID_S / 2)
    assert not lost.avoid("b", "2", 100.0 + AVOID_S + 0.1)
    assert not lost.avoid("b", "3", 100.5)  # another version in the slot is not affected
    # a call running when the slot was lost, or queued just after, is excused...
    assert lost.excuses("b", "2", started=99.0, now=101.0)
    assert lost.excuses("b", "2", started=100.0 + GRACE_AFTER_S - 0.1, now=104.0)
    # ...one started well after, or that ended before the loss, is not
    assert not lost.excuses("b", "2", started=100.0 + GRACE_AFTER_S + 0.5, now=104.0)
    assert not lost.excuses("b", "2", started=90.0, now=95.0)
    assert not lost.excuses("a", "1", started=99.0, now=101.0)
