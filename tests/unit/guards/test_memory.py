from __future__ import annotations

from guards.context import ArmResources, ResourceReadings
from guards.memory import MemoryGuard, creep_slope
from guards.results import GuardResult, GuardState
from guards.window import ArmWindow
from tests.unit.guards.conftest import ALPHA, CTX, trigger

GIB = 2**30
TOTAL = 16 * GIB


def _eval(challenger: ArmResources | None, champion: ArmResources | None = None
          ) -> GuardResult:
    g = MemoryGuard(trigger("memory", 0.9), CTX, ALPHA)
    return g.evaluate(ArmWindow(), ArmWindow(), ResourceReadings(champion, challenger))


def test_saturation_fails() -> None:
    r = _eval(ArmResources(int(0.95 * TOTAL), TOTAL))
    assert r.state is GuardState.FAIL and r.value is not None and r.value > 0.9


def test_steady_usage_passes() -> None:
    hist = tuple(int(0.5 * TOTAL) + (i % 2) * 2**20 for i in range(30))
    assert _eval(ArmResources(hist[-1], TOTAL, hist)).state is GuardState.PASS


def test_creeping_memory_fails_before_saturation() -> None:
    hist = tuple(int(0.5 * TOTAL) + i * 64 * 2**20 for i in range(30))  # +64 MiB per sample
    r = _eval(ArmResources(hist[-1], TOTAL, hist))
    assert r.state is GuardState.FAIL and "creeping" in r.detail


def test_creep_shared_with_the_champion_is_not_blamed_on_the_challenger() -> None:
    hist = tuple(int(0.5 * TOTAL) + i * 64 * 2**20 for i in range(30))
    arm = ArmResources(hist[-1], TOTAL, hist)
    assert _eval(arm, champion=arm).state is GuardState.PASS


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
