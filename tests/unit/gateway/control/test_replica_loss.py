"""Replica deaths classified from Ray's own error texts (as Ray 2.60 words them)."""

from __future__ import annotations

from gateway.control.replica_loss import Fault, ReplicaLoss, classify, judge_repeats

HEAD = ("The actor died unexpectedly before finishing this task.\n\tclass_name: "
        "ServeReplica:gw:slot_b\n\tpid: 3160\n")
SIGKILL = HEAD + (
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
    "Worker exit detail: Worker unexpectedly exits with a connection error code 2. End of "
    "file. Some common causes include: (1) the process was killed by the OOM killer due to "
    "high memory usage, (2) ray stop --force was called, or (3) the worker crashed "
    "unexpectedly due to SIGSEGV or another unexpected error.")
RAY_KILL = HEAD + "The actor is dead because it was killed by `ray.kill`."
NODE = HEAD + "The actor died because its node has died. Node Id: 1234"
MEMORY_MONITOR = HEAD + (
    "The actor is dead because its worker process has died. Worker exit type: USER_ERROR "
    "Worker exit detail: Task was killed due to the node running low on memory.")


def test_a_signal_death_is_the_infrastructure_even_though_ray_lists_the_oom_killer() -> None:
    loss = classify(SIGKILL)
    assert loss.fault is Fault.INFRASTRUCTURE
    assert "signal" in loss.cause


def test_ray_kill_and_a_lost_node_are_the_infrastructure() -> None:
    assert classify(RAY_KILL) == ReplicaLoss(Fault.INFRASTRUCTURE,
                                             "it was killed from outside (ray.kill)")
    assert classify(NODE).cause == "its node was lost"


def test_rays_memory_monitor_and_a_failed_constructor_are_the_models() -> None:
    assert classify(MEMORY_MONITOR).fault is Fault.MODEL
    assert "out of memory" in classify(MEMORY_MONITOR).cause
    assert classify("anything", creation_failed=True).fault is Fault.MODEL


def test_unknown_text_is_the_infrastructure() -> None:
    assert classify("").fault is Fault.INFRASTRUCTURE


def test_repeated_challenger_losses_with_a_healthy_champion_are_the_models() -> None:
    loss = classify(SIGKILL)
    assert judge_repeats(loss, 2, 0) is loss
    assert judge_repeats(loss, 3, 1) is loss  # the champion's die too: the infrastructure
    repeated = judge_repeats(loss, 3, 0)
    assert repeated.fault is Fault.MODEL
    assert "3 times" in repeated.cause
