"""Sticky keys and model-server batches: the design effect grows with per-key differences
and with batch sizes, and only then."""

from __future__ import annotations

import numpy as np
import pytest

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
    from gateway.wire.routing import sticky_bucket

    pairs = {(sticky_bucket(f"k{i}") < 500, key_bucket(f"k{i}")) for i in range(5000)}
    assert len(pairs) == 64  # challenger keys (5%) spread over every analysis bucket


def test_batches_cost_the_batch_size_an_average_request_sees(rng: np.random.Generator) -> None:
    sizes = np.repeat([1, 3, 6], [1, 3, 6])  # batches of 1, 3 and 6: sum m^2 / sum m = 4.6
    w = ArmWindow()
    w.record_batch(rng.lognormal(0, 1, sizes.size), np.zeros(sizes.size, dtype=np.int64),
                   batch_size=sizes)
    d = design_effect(w, ArmWindow())
    assert d.latency == d.rate == 4.6


def test_batches_and_keys_multiply() -> None:
    def keyed(batch: int) -> tuple[ArmWindow, ArmWindow]:
        rng = np.random.default_rng(7)  # the same requests each time, only batched or not
        a, b = _keyed(rng, 20_000, 300, 0.5), _keyed(rng, 2000, 30, 0.5)
        for w in (a, b):
            w.record_batch([0.1], [0], batch_size=[batch])
        return a, b

    alone, batched = design_effect(*keyed(1)), design_effect(*keyed(3))
    assert alone.latency > 3.0
    # one request of 22,002 ran in batches of 3 per arm: 1 + 2 * 2 / 22002
    factor = 1.0 + 4 / 22_002
    assert batched.latency == pytest.approx(alone.latency * factor)
    assert batched.rate == pytest.approx(alone.rate * factor)


def test_a_challenger_with_a_few_heavy_keys_is_not_hidden_by_the_champion() -> None:
    """At a 5% step the challenger holds a few keys, one of them heavy: its own clustering
    limits the comparison, however well mixed the champion's many keys are."""
    rng = np.random.default_rng(3)
    champion = _keyed(rng, 20_000, 5000, 0.5)
    keys = 30
    share = 1.0 / np.arange(1, keys + 1)  # Zipf: the first key sends ~25% of the requests
    users = rng.choice(keys, 300, p=share / share.sum())
    effects = rng.lognormal(0.0, 0.5, keys)
    buckets = np.array([key_bucket(f"c-{u}") for u in range(keys)])[users]
    lat = rng.lognormal(np.log(0.08), 0.5, users.size) * effects[users]
    challenger = ArmWindow()
    challenger.record_batch(lat, np.zeros(users.size, dtype=np.int64), key_bucket=buckets)
    # pooled with the champion this read 2.9; the challenger alone reads 4.7
    assert design_effect(champion, challenger).latency > 4.0
