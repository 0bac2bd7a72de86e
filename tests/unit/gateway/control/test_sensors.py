"""The resource sensor: gpu_monitor samples of each slot's replicas become the judge's
ResourceReadings (a scripted source; no sampling thread is relied on)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.control import rollout as ro
from gateway.control.sensors import WARMUP_S, ResourceSensor, engine_profiles
from gpu_monitor import DeviceSample, ProcessSample, Sampler, Snapshot
from model_registry.refs import ModelRef

GIB = 2**30
V1, V2 = ModelRef("fraud", "1", "/m/1"), ModelRef("fraud", "2", "/m/2")


class ScriptedSource:
    """Each sample: the next timestamp, and `memory[pid]` for every pid asked about."""

    name = "scripted"

    def __init__(self) -> None:
        self.now = 0.0
        self.memory: dict[int, int] = {}
        self.broken = False

    def sample(self, pids: Sequence[int]) -> Snapshot:
        if self.broken:
            raise RuntimeError("no device")
        device = DeviceSample("cuda:0", 0, "test", sum(self.memory.values()), 80 * GIB, None,
                              None, None, self.now)
        procs = tuple(ProcessSample("cuda:0", p, self.memory[p], self.now)
                      for p in pids if p in self.memory)
        return Snapshot((device,), procs, self.name, self.now)

    def close(self) -> None:
        pass


def canary(loaded_at: float) -> ro.RolloutState:
    return ro.RolloutState(phase=ro.Phase.CANARY, slot_models={"a": V1, "b": V2},
                           challenger=V2, loaded_at=loaded_at, phase_started_at=loaded_at)


def test_readings_per_arm_from_samples_after_the_warmup() -> None:
    source = ScriptedSource()
    sampler = Sampler(source, interval_s=3600.0)  # the sensor's thread samples once
    sensor = ResourceSensor(2.0, sampler=sampler)
    try:
        assert sensor.device_label() in ("cpu", "cuda:0")
        sensor.watch_pid("a", "r1", 100)
        sensor.watch_pid("b", "r1", 200)
        sensor.watch_pid("b", "r2", "not a pid")  # ignored
        state = canary(loaded_at=0.0)
        for i, (used_a, used_b) in enumerate([(1, 1), (2, 3), (2, 4), (2, 5)]):
            source.now = WARMUP_S + i
            source.memory = {100: used_a * GIB, 200: used_b * GIB}
            sampler.sample_now()
            readings = sensor.readings(state, served={"a": 10 * i, "b": 5 * i})
        assert readings is not None
        champion, challenger = readings.champion, readings.challenger
        assert champion is not None and challenger is not None
        assert (champion.used_bytes, champion.total_bytes) == (2 * GIB, 80 * GIB)
        assert challenger.history[-3:] == (3 * GIB, 4 * GIB, 5 * GIB)
        assert challenger.requests[-3:] == (5, 10, 15)  # served at each sample
        assert sensor.device_label() == "cuda:0"
    finally:
        sensor.close()
    assert not sampler.running


def test_no_readings_before_a_sample_nor_for_a_slot_without_pids() -> None:
    source = ScriptedSource()
    source.broken = True  # the sampling thread's first sample fails
    sampler = Sampler(source, interval_s=3600.0)
    sensor = ResourceSensor(2.0, sampler=sampler)
    sensor.close()
    assert sensor.readings(canary(0.0)) is None
    source.broken = False
    source.memory = {100: GIB}
    sensor.watch_pid("a", "r1", 100)
    sampler.sample_now()
    readings = sensor.readings(canary(0.0))
    assert readings is not None and readings.champion is not None
    assert readings.challenger is None


def test_engine_profiles_only_from_replicas_serving_the_slots_model() -> None:
    state = canary(0.0)
    profile = {"reserved_fraction": 0.9, "engine_usage": 0.3}
    reports = {"b": {"r1": {"model": V2.to_dict(), "memory": profile},
                     "r2": {"model": V1.to_dict(), "memory": profile},  # still the old one
                     "r3": {"model": V2.to_dict(), "memory": None}}}
    assert engine_profiles(state, reports) == {"b": [profile]}
