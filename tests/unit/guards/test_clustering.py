"""Sticky keys: the design effect grows with per-key differences, and only then."""

from __future__ import annotations

import numpy as np

from guards.clustering import design_effect
from guards.window import ArmWindow, key_bucket


def _keyed(rng: np.random.Generator, n: int, keys: int, key_sigma: float) -> ArmWindow:
    effects = rng.lognormal(0.0, key_sigma, keys)
    users = rng.integers(0, keys, n)
    buckets = np.array([key_bucket(f"user-{u}") for u in range(keys)])[users]
    lat = rng.lognormal(np.log(0.08), 0.5, n) * effects[users]
    w = ArmWindow()
    w.record_batch(lat, np.zeros(n, dtype=np.int64), key_bucket=buckets)
    return w


def test_no_keys_no_effect(rng: np.random.Generator) -> None:
    w = ArmWindow()
    w.record_batch(rng.lognormal(0, 1, 1000), np.zeros(1000, dtype=np.int64))
    d = design_effect(w, w.copy())
    assert d.rate == 1.0 and d.latency == 1.0


def test_keys_without_differences_cost_little(rng: np.random.Generator) -> None:
    d = design_effect(_keyed(rng, 20_000, 5000, 0.0), _keyed(rng, 2000, 500, 0.0))
    assert d.latency < 1.6


def test_keys_that_differ_inflate_the_variance(rng: np.random.Generator) -> None:
    d = design_effect(_keyed(rng, 20_000, 300, 0.5), _keyed(rng, 2000, 30, 0.5))
    assert d.latency > 3.0


def test_key_bucket_is_stable_and_independent_of_routing() -> None:
    assert key_bucket("user-1") == key_bucket("user-1")
    from gateway.routing import sticky_bucket

    pairs = {(sticky_bucket(f"k{i}") < 500, key_bucket(f"k{i}")) for i in range(5000)}
    assert len(pairs) == 64  # challenger keys (5%) spread over every analysis bucket
