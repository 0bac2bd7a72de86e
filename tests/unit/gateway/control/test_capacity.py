"""Champion capacity around a rollback: the plan and its order (champion first)."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.control.capacity import CapacityKeeper, Handover, ReplicaCount, plan_handover


def slots(autoscaling: dict[str, object] | None = None, num_replicas: int = 1) -> object:
    data: dict[str, object] = {"num_replicas": num_replicas}
    if autoscaling is not None:
        data["autoscaling"] = autoscaling
    return parse_config({"slots": data}).slots


@pytest.mark.parametrize(("champion", "challenger", "scale_up", "expected"), [
    (2, 2, False, Handover(4, 1)),    # the champion takes the challenger's share
    (3, 4, False, Handover(6, 1)),    # capped at max_replicas
    (6, 2, False, Handover(None, 1)),  # already at the bound: only the release
    (2, 1, False, Handover(3, None)),  # the freed slot is at its minimum already
    (2, 2, True, Handover(5, 1)),     # a capacity breach: one more on top
])
def test_autoscaled_slots_hand_the_challengers_share_to_the_champion(
        champion: int, challenger: int, scale_up: bool, expected: Handover) -> None:
    cfg = slots({"min_replicas": 1, "max_replicas": 6})
    assert plan_handover(champion, challenger, cfg, scale_up) == expected  # type: ignore[arg-type]


def test_fixed_slots_scale_only_on_a_capacity_breach() -> None:
    cfg = slots(num_replicas=2)
    assert plan_handover(2, 2, cfg, scale_up=False) == Handover(None, None)  # type: ignore[arg-type]
    assert plan_handover(2, 2, cfg, scale_up=True) == Handover(3, None)  # type: ignore[arg-type]
    assert plan_handover(1, 2, cfg, scale_up=True) == Handover(3, None)  # type: ignore[arg-type]


class FakeScaler:
    """Slot counts; new champion replicas start running after `start_polls` polls."""

    def __init__(self, counts: dict[str, int], start_polls: int) -> None:
        self.targets = dict(counts)
        self.runs = dict(counts)
        self.start_polls = start_polls
        self.calls: list[tuple[str, str, int]] = []

    def count(self, slot: str) -> ReplicaCount:
        if self.runs[slot] < self.targets[slot]:
            self.start_polls -= 1
            if self.start_polls <= 0:
                self.runs[slot] = self.targets[slot]
        self.calls.append(("running", slot, self.runs[slot]))
        return ReplicaCount(self.runs[slot], self.targets[slot])

    def scale(self, slot: str, replicas: int) -> None:
        self.calls.append(("scale", slot, replicas))
        self.targets[slot] = replicas
        if replicas < self.runs[slot]:
            self.runs[slot] = replicas


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def sleep(self, s: float) -> None:
        self.t += s

    def monotonic(self) -> float:
        return self.t


def test_the_challenger_is_released_only_once_the_champion_runs_its_new_replicas() -> None:
    scaler = FakeScaler({"a": 1, "b": 2}, start_polls=3)
    clock = Clock()
    keeper = CapacityKeeper(scaler, slots({"max_replicas": 4}), wait_s=60,  # type: ignore[arg-type]
                            poll_s=0.5, sleep=clock.sleep, monotonic=clock.monotonic)
    plan = keeper.after_rollback("a", "b", scale_up=False)
    assert plan == Handover(3, 1)
    scales = [c for c in scaler.calls if c[0] == "scale"]
    assert scales == [("scale", "a", 3), ("scale", "b", 1)]
    first_release = scaler.calls.index(("scale", "b", 1))
    # Before the release, the champion was seen running all 3.
    assert ("running", "a", 3) in scaler.calls[:first_release]
    assert clock.t < 60


def test_a_champion_that_cannot_grow_releases_the_challenger_after_the_wait() -> None:
    scaler = FakeScaler({"a": 1, "b": 2}, start_polls=10**9)  # the cluster is full
    clock = Clock()
    keeper = CapacityKeeper(scaler, slots({"max_replicas": 4}), wait_s=30,  # type: ignore[arg-type]
                            poll_s=0.5, sleep=clock.sleep, monotonic=clock.monotonic)
    keeper.after_rollback("a", "b", scale_up=False)
    assert ("scale", "b", 1) in scaler.calls
    assert 30 <= clock.t < 31


class FlakyController(FakeScaler):
    """Serve's controller answering late (a timeout) the first `fails` calls."""

    def __init__(self, counts: dict[str, int], fails: int) -> None:
        super().__init__(counts, start_polls=1)
        self.fails = fails

    def _maybe_fail(self) -> None:
        if self.fails > 0:
            self.fails -= 1
            raise TimeoutError("controller busy")

    def count(self, slot: str) -> ReplicaCount:
        self._maybe_fail()
        return super().count(slot)

    def scale(self, slot: str, replicas: int) -> None:
        self._maybe_fail()
        super().scale(slot, replicas)


@pytest.mark.parametrize("fails", [1, 3, 6])
def test_a_slow_controller_is_asked_again_and_the_rollback_still_scales(fails: int) -> None:
    scaler = FlakyController({"a": 1, "b": 1}, fails=fails)
    clock = Clock()
    keeper = CapacityKeeper(scaler, slots(num_replicas=1), wait_s=60,  # type: ignore[arg-type]
                            poll_s=0.5, sleep=clock.sleep, monotonic=clock.monotonic)
    plan = keeper.after_rollback("a", "b", scale_up=True)
    assert plan == Handover(2, None)
    assert scaler.targets["a"] == 2
    assert clock.t < 60


def test_a_controller_that_never_answers_gives_up_after_the_wait() -> None:
    scaler = FlakyController({"a": 1, "b": 1}, fails=10**9)
    clock = Clock()
    keeper = CapacityKeeper(scaler, slots(num_replicas=1), wait_s=20,  # type: ignore[arg-type]
                            poll_s=0.5, sleep=clock.sleep, monotonic=clock.monotonic)
    with pytest.raises(TimeoutError):
        keeper.after_rollback("a", "b", scale_up=True)
    assert 20 <= clock.t < 26
