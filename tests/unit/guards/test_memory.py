from __future__ import annotations

from guards.context import ArmResources, ResourceReadings
from guards.memory import MemoryGuard, creep_slope
from guards.results import GuardResult, GuardState
from guards.window import ArmWindow
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import Driven

GIB = 2**30
TOTAL = 16 * GIB


def _eval(challenger: ArmResources | None, champion: ArmResources | None = None
          ) -> GuardResult:
    g = Driven(MemoryGuard(trigger("memory", 0.9), CTX, ALPHA))
    return g.evaluate(ArmWindow(), ArmWindow(), ResourceReadings(champion, challenger))


def test_saturation_fails() -> None:
    r = _eval(ArmResources(int(0.95 * TOTAL), TOTAL))
    assert r.state is GuardState.FAIL and r.value is not None and r.value > 0.9


def test_steady_usage_passes() -> None:
    hist = tuple(int(0.5 * TOTAL) + (i % 2) * 2**20 for i in range(30))
    assert _eval(ArmResources(hist[-1], TOTAL, hist)).state is GuardState.PASS


def _leak(per_request: int, n: int = 30, rate: int = 20, base: float = 0.5
          ) -> ArmResources:
    """Samples of an arm serving `rate` requests per sample, growing per request."""
    requests = tuple(i * rate for i in range(n))
    hist = tuple(int(base * TOTAL) + r * per_request for r in requests)
    return ArmResources(hist[-1], TOTAL, hist, requests)


def test_memory_growing_per_request_fails_long_before_saturation() -> None:
    r = _eval(_leak(512 * 1024), champion=_leak(0))  # 0.5 MiB per request
    assert r.state is GuardState.FAIL and "per request" in r.detail
    assert r.value is not None and r.value < 0.6


def test_growth_shared_with_the_champion_is_not_blamed_on_the_challenger() -> None:
    arm = _leak(512 * 1024)
    assert _eval(arm, champion=arm).state is GuardState.PASS


def test_growth_is_per_request_so_a_champion_with_less_traffic_is_compared_fairly() -> None:
    # both leak 0.5 MiB a request; the champion serves a fifth of the challenger's requests
    # (the ramp moved its traffic away), so per sample it grows five times slower
    challenger, champion = _leak(512 * 1024, rate=50), _leak(512 * 1024, rate=10)
    assert _eval(challenger, champion=champion).state is GuardState.PASS


def test_small_growth_is_not_a_leak() -> None:
    assert _eval(_leak(1024), champion=_leak(0)).state is GuardState.PASS  # 1 KiB/request


def test_preallocating_engine_is_not_saturated() -> None:
    # vLLM reserves 90% of the device at start: by design, not a breach
    used = int(0.93 * TOTAL)
    vllm = ArmResources(used, TOTAL, reserved_bytes=int(0.9 * TOTAL))
    assert _eval(vllm, champion=vllm).state is GuardState.PASS
    assert _eval(vllm).state is GuardState.PASS
    beyond = ArmResources(int(0.995 * TOTAL), TOTAL, reserved_bytes=int(0.9 * TOTAL))
    r = _eval(beyond, champion=vllm)
    assert r.state is GuardState.FAIL and "preallocation" in r.detail


def test_engine_saturation_signal_relative_to_the_champion() -> None:
    full = ArmResources(int(0.92 * TOTAL), TOTAL, reserved_bytes=int(0.9 * TOTAL),
                        engine_usage=0.97)
    calm = ArmResources(int(0.92 * TOTAL), TOTAL, reserved_bytes=int(0.9 * TOTAL),
                        engine_usage=0.40)
    assert _eval(full, champion=calm).state is GuardState.FAIL
    assert _eval(full, champion=full).state is GuardState.PASS  # both saturated: shared load


def test_no_readings_is_no_signal() -> None:
    r = _eval(None)
    assert r.state is GuardState.INCONCLUSIVE and not r.signal


def test_creep_slope_ignores_plateaus_and_sawtooth() -> None:
    assert creep_slope([1, 2, 3, 4, 5, 6], 0.8) > 0
    assert creep_slope([1, 5, 1, 5, 1, 5, 1, 5], 0.8) == 0.0
    assert creep_slope([1, 2, 3, 3, 3, 3, 3, 3], 0.8) == 0.0


def test_allocator_jitter_is_not_a_creep() -> None:
    """A process whose memory rises a few kilobytes per sample (Python's allocator after a
    model load) is not leaking; steps under min_step_bytes do not count as rising."""
    from guards.memory import creep_slope

    mib = 2**20
    jitter = [500 * mib + 4096 * i for i in range(40)]
    assert creep_slope(jitter, 0.8, min_step=mib) == 0.0
    leak = [500 * mib + 8 * mib * i for i in range(40)]
    assert creep_slope(leak, 0.8, min_step=mib) > 7 * mib
