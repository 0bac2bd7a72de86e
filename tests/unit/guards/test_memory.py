from __future__ import annotations

import numpy as np

from guards.context import ArmResources, ResourceReadings
from guards.memory import NO_GROWTH, MemoryGuard, growth_per_request
from guards.results import GuardResult, GuardState
from guards.window import ArmWindow
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import Driven

GIB = 2**30
MIB = 2**20
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


def test_growth_ignores_allocator_steps_and_jitter(rng: np.random.Generator) -> None:
    """A caching allocator's occasional step up (2-32 MiB) and a few MiB of jitter are not
    growth per request: the median interval does not move."""
    requests = np.cumsum(rng.integers(1, 6, 80))
    steps = np.cumsum(np.where(rng.random(80) < 0.05, rng.uniform(2, 32, 80), 0.0)) * MIB
    hist = (8 * GIB + steps + rng.normal(0, 2 * MIB, 80)).astype(int)
    g = growth_per_request(hist.tolist(), requests.tolist())
    assert g.sign_z < 3.0
    r = _eval(ArmResources(int(hist[-1]), TOTAL, tuple(hist.tolist()),
                           tuple(requests.tolist())), champion=_leak(0))
    assert r.state is GuardState.PASS


def test_a_leak_at_low_traffic_is_still_growth_per_request() -> None:
    leak = [500 * MIB + 8 * MIB * i for i in range(40)]
    g = growth_per_request(leak, [2 * i for i in range(40)])
    assert g.per_request == 4 * MIB and g.sign_z > 6 and g.total == 4 * MIB * 78


def test_no_requests_served_is_no_growth() -> None:
    assert growth_per_request([1, 2, 3], [5, 5, 5]) == NO_GROWTH
    assert growth_per_request([1, 2, 3], []) == NO_GROWTH
