"""What engines say about their own memory reaches the memory guard."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.control.sensors import engine_memory
from gateway.serving.backends import MemoryProfile, memory_profile
from gateway.serving.backends.vllm import KvUsage, VllmBackend

GIB = 2**30


@dataclass
class SchedulerStats:  # the fields vLLM's scheduler stats carry, old and new names
    kv_cache_usage: float | None = None
    gpu_cache_usage: float | None = None


def test_backends_without_a_profile_reserve_nothing() -> None:
    assert memory_profile(object()) == MemoryProfile()


def test_vllm_reserves_its_gpu_memory_utilization() -> None:
    profile = memory_profile(VllmBackend(gpu_memory_utilization=0.9))
    assert profile.reserved_fraction == 0.9 and profile.live
    assert profile.engine_usage is None  # no engine running: no signal yet


def test_kv_usage_reads_both_field_names_and_clamps() -> None:
    usage = KvUsage()
    usage.observe(SchedulerStats(kv_cache_usage=0.42))
    assert usage.value == 0.42
    usage.observe(SchedulerStats(gpu_cache_usage=1.3))
    assert usage.value == 1.0
    usage.observe(object())  # nothing known: the last value stays
    assert usage.value == 1.0


def testengine_memory_sums_reservations_and_takes_the_worst_usage() -> None:
    profiles = [{"reserved_fraction": 0.45, "engine_usage": 0.2},
                {"reserved_fraction": 0.45, "engine_usage": 0.7}]
    reserved, usage = engine_memory(profiles, 80 * GIB)
    assert reserved == int(0.9 * 80 * GIB) and usage == 0.7
    assert engine_memory([{"reserved_fraction": 0.9}] * 2, GIB) == (GIB, None)
    assert engine_memory([], GIB) == (0, None)
