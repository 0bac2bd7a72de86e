from __future__ import annotations

import numpy as np
import pytest

from gateway.errors import ConfigError
from guards.context import JudgeContext
from guards.drift import InputDriftGuard, OutputDriftGuard, grouped_psi
from guards.results import GuardState
from guards.window import DEFAULT_SPEC, ArmWindow
from tests.unit.guards.conftest import ALPHA, CTX, trigger
from tests.unit.guards.helpers import fill


def _reference(rng: np.random.Generator, shift: float = 0.0) -> tuple[int, ...]:
    x = rng.normal(shift, 1.0, 100_000)
    idx = np.searchsorted(np.asarray(DEFAULT_SPEC.input_edges), x, side="right")
    return tuple(np.bincount(idx, minlength=len(DEFAULT_SPEC.input_edges) + 1).tolist())


def test_output_shift_fails_and_equal_outputs_pass(rng: np.random.Generator) -> None:
    g = OutputDriftGuard(trigger("output_drift", 0.25), CTX, ALPHA)
    r = g.evaluate(fill(ArmWindow(), 5000, rng), fill(ArmWindow(), 400, rng, out_shift=0.8),
                   None)
    assert r.state is GuardState.FAIL and r.value is not None and r.value > 0.4
    r = g.evaluate(fill(ArmWindow(), 5000, rng), fill(ArmWindow(), 400, rng), None)
    assert r.state is GuardState.PASS and r.value is not None and r.value < 0.1


def test_output_drift_waits_for_min_count(rng: np.random.Generator) -> None:
    g = OutputDriftGuard(trigger("output_drift", 0.25), CTX, ALPHA)
    r = g.evaluate(fill(ArmWindow(), 5000, rng), fill(ArmWindow(), 50, rng, out_shift=2.0),
                   None)
    assert r.state is GuardState.INCONCLUSIVE and r.value is not None and r.value > 1.0


def test_no_false_alarm_at_min_count_across_many_samples(rng: np.random.Generator) -> None:
    g = OutputDriftGuard(trigger("output_drift", 0.25), CTX, ALPHA)
    worst = max(
        g.evaluate(fill(ArmWindow(), 4000, rng), fill(ArmWindow(), 200, rng), None).value or 0
        for _ in range(100)
    )
    assert worst < 0.2


def test_grouped_psi_is_near_the_continuous_value(rng: np.random.Generator) -> None:
    edges = np.asarray(DEFAULT_SPEC.output_edges)

    def hist(x: np.ndarray) -> list[int]:
        return np.bincount(np.searchsorted(edges, x, side="right"),
                           minlength=len(edges) + 1).tolist()

    # two normals 0.6 sd apart: continuous PSI (J-divergence) = 0.36
    value = grouped_psi(hist(rng.normal(0, 1, 500_000)), hist(rng.normal(0.6, 1, 500_000)), 10)
    assert 0.28 < value < 0.36


def test_input_drift_against_reference(rng: np.random.Generator) -> None:
    ctx = JudgeContext(input_reference=_reference(rng, shift=1.0))
    g = InputDriftGuard(trigger("input_drift", 0.25), ctx, ALPHA)
    r = g.evaluate(ArmWindow(), fill(ArmWindow(), 500, rng), None)
    assert r.state is GuardState.FAIL and r.n_champion == 100_000
    ok = InputDriftGuard(trigger("input_drift", 0.25),
                         JudgeContext(input_reference=_reference(rng)), ALPHA)
    assert ok.evaluate(ArmWindow(), fill(ArmWindow(), 500, rng), None).state is GuardState.PASS


def test_input_drift_without_reference_is_no_signal_and_bad_reference_is_config_error(
    rng: np.random.Generator,
) -> None:
    g = InputDriftGuard(trigger("input_drift", 0.25), CTX, ALPHA)
    assert not g.evaluate(ArmWindow(), fill(ArmWindow(), 10, rng), None).signal
    bad = InputDriftGuard(trigger("input_drift", 0.25), JudgeContext(input_reference=(1, 2)),
                          ALPHA)
    with pytest.raises(ConfigError, match="input_reference"):
        bad.evaluate(ArmWindow(), fill(ArmWindow(), 10, rng), None)
