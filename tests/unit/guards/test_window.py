from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guards.window import (
    DEFAULT_SPEC,
    KEY_BUCKETS,
    SCORE_BINS,
    ArmWindow,
    Observation,
    Outcome,
    WindowSpec,
    symlog_edges,
)

outcomes = st.sampled_from(list(Outcome))
finite = st.floats(min_value=-1e7, max_value=1e7, allow_nan=False)
observations = st.builds(
    Observation,
    latency_s=st.floats(min_value=0.0, max_value=1e5, allow_nan=False),
    outcome=outcomes,
    output_value=st.none() | finite,
    input_value=st.none() | finite,
    tokens_in=st.integers(0, 100_000),
    tokens_out=st.integers(0, 100_000),
    busy_s=st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
    ttft_s=st.none() | st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
    key_bucket=st.none() | st.integers(0, KEY_BUCKETS - 1),
    batch_size=st.integers(1, 16),
)


def window_of(obs: list[Observation], kpis: Sequence[float] = (),
              scores: Sequence[float] = ()) -> ArmWindow:
    w = ArmWindow()
    for o in obs:
        w.record(o)
    for k in kpis:
        w.record_kpi(k)
    for s in scores:
        w.record_hallucination(s)
    return w


def test_counts_and_accessors() -> None:
    w = ArmWindow()
    w.record(Observation(0.1, Outcome.OK, output_value=1.0, tokens_in=3, busy_s=0.05))
    w.record(Observation(0.2, Outcome.SERVER_ERROR))
    w.record(Observation(0.3, Outcome.TIMEOUT))
    w.record(Observation(0.01, Outcome.CLIENT_ERROR))
    assert w.n_requests == 4
    assert w.n_judged == 3
    assert w.n_errors == 2 and w.n_server_errors == 1
    assert w.count(Outcome.CLIENT_ERROR) == 1
    assert w.error_rate == pytest.approx(2 / 3)
    assert w.n_latency() == 1  # only OK responses are sketched
    assert w.quantile(0.5) == pytest.approx(0.1, rel=DEFAULT_SPEC.latency_accuracy)
    assert w.tokens_in == 3 and w.busy_s == pytest.approx(0.05)
    assert sum(w.output_hist) == 1 and sum(w.input_hist) == 0


def test_client_errors_do_not_break_or_extend_failure_runs() -> None:
    w = ArmWindow()
    for oc in (Outcome.SERVER_ERROR, Outcome.CLIENT_ERROR, Outcome.TIMEOUT, Outcome.SERVER_ERROR):
        w.record(Observation(0.1, oc))
    assert w.current_failure_run == 3 and w.max_failure_run == 3
    w.record(Observation(0.1, Outcome.OK))
    assert w.current_failure_run == 0 and w.max_failure_run == 3


def test_quantile_relative_accuracy() -> None:
    rng = np.random.default_rng(0)
    x = rng.lognormal(-2.0, 1.0, 50_000)
    w = ArmWindow()
    w.record_batch(x, np.zeros(x.size, dtype=int))
    for q in (0.5, 0.95, 0.99):
        assert w.quantile(q) == pytest.approx(np.quantile(x, q), rel=0.03)


@settings(max_examples=60, deadline=None)
@given(st.lists(observations, max_size=40), st.randoms(use_true_random=False))
def test_record_batch_equals_repeated_record(obs: list[Observation], rnd: object) -> None:
    one = window_of(obs)
    batch = ArmWindow()

    def col(name: str, default: float = math.nan) -> list[float]:
        return [default if getattr(o, name) is None else getattr(o, name) for o in obs]

    batch.record_batch(
        col("latency_s"), [int(o.outcome) for o in obs],
        output_value=col("output_value"), input_value=col("input_value"),
        tokens_in=col("tokens_in"), tokens_out=col("tokens_out"), busy_s=col("busy_s"),
        ttft_s=col("ttft_s"), key_bucket=col("key_bucket", -1),
        batch_size=col("batch_size"),
    )
    assert batch == one


@settings(max_examples=60, deadline=None)
@given(st.lists(observations, max_size=40), st.data())
def test_minus_gives_what_was_recorded_after_a_past_copy(obs: list[Observation],
                                                          data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(obs)))
    early, full = window_of(obs[:k]), window_of(obs)
    delta = full.minus(early)
    assert delta.n_requests == len(obs) - k
    rebuilt = early.copy()
    rebuilt.merge(delta)
    assert rebuilt._state() | {"run": 0, "mrun": 0} == full._state() | {"run": 0, "mrun": 0}
    if len(obs) > k:  # the other way round, a count goes down
        with pytest.raises(ValueError, match="cumulative"):
            early.minus(full)


def test_service_time_and_key_stats() -> None:
    w = ArmWindow()
    w.record(Observation(0.5, Outcome.OK, busy_s=0.1, key_bucket=3))
    w.record(Observation(0.5, Outcome.SERVER_ERROR, busy_s=0.1, key_bucket=3))
    w.record(Observation(0.5, Outcome.OK))  # unkeyed, no service time measured
    assert sum(w.sketch("service").values()) == 1 and sum(w.sketch("latency").values()) == 2
    assert w.n_keyed == 2 and w.key_stats()[3 * 5: 3 * 5 + 3] == [2, 1, 1]
    assert ArmWindow.from_bytes(w.to_bytes()) == w


def test_version_1_encoding_is_still_read() -> None:
    import json
    import zlib

    w = ArmWindow()
    w.record(Observation(0.5, Outcome.OK, 1.0, 2.0))
    state = json.loads(zlib.decompress(w.to_bytes()))
    for key in ("svc", "kb"):
        del state[key]
    state["v"] = 1
    old = ArmWindow.from_bytes(zlib.compress(json.dumps(state).encode()))
    assert old.n_judged == 1 and old.output_hist == w.output_hist


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=30),
       st.lists(st.floats(0.0, 1.0), max_size=30))
def test_kpi_and_score_batches_equal_repeated_record(kpis: list[float],
                                                     scores: list[float]) -> None:
    one = window_of([], kpis, scores)
    batch = ArmWindow()
    batch.record_kpi_batch(kpis)
    batch.record_hallucination_batch(scores)
    assert batch == one


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(observations, max_size=15), min_size=1, max_size=5), st.data())
def test_merge_in_any_order_gives_the_same_window(parts: list[list[Observation]],
                                                  data: st.DataObject) -> None:
    windows = [window_of(p, kpis=[len(p) * 0.37], scores=[min(len(p) / 20, 1.0)])
               for p in parts]
    order = data.draw(st.permutations(range(len(windows))))
    left = ArmWindow()
    for w in windows:
        left.merge(w)
    right = ArmWindow()
    for i in order:
        right.merge(windows[i])
    assert left == right
    # associativity: (a + b) + rest == a + (b + rest)
    if len(windows) >= 2:
        tail = ArmWindow()
        for w in windows[1:]:
            tail.merge(w)
        assoc = windows[0].copy()
        assoc.merge(tail)
        assert assoc == left
    # merged counts equal recording everything into one window (runs aside)
    everything = window_of(list(itertools.chain.from_iterable(parts)))
    assert left.n_requests == everything.n_requests
    assert left.latency_buckets() == everything.latency_buckets()
    assert left.output_hist == everything.output_hist
    assert left.max_failure_run <= everything.max_failure_run


@settings(max_examples=30, deadline=None)
@given(st.lists(observations, max_size=30))
def test_bytes_round_trip(obs: list[Observation]) -> None:
    w = window_of(obs, kpis=[1.0, 0.0], scores=[0.9])
    assert ArmWindow.from_bytes(w.to_bytes()) == w


def test_custom_spec_round_trips_and_refuses_foreign_merge() -> None:
    spec = WindowSpec(output_edges=(0.0, 0.5, 1.0), input_edges=(0.0,))
    w = ArmWindow(spec)
    w.record(Observation(0.1, Outcome.OK, output_value=0.7))
    back = ArmWindow.from_bytes(w.to_bytes())
    assert back.spec == spec and back.output_hist == (0, 0, 1, 0)
    with pytest.raises(ValueError, match="WindowSpec"):
        w.merge(ArmWindow())


def _max_size(spec: WindowSpec) -> int:
    # every bucket/bin occupied with a 20-digit count, before compression
    slots = spec.max_latency_buckets * 2 + len(spec.output_edges) + len(spec.input_edges) + 200
    return slots * 30


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.floats(0.1, 3.0))
def test_memory_and_size_do_not_grow_with_request_count(exp: int, sigma: float) -> None:
    rng = np.random.default_rng(exp)
    n = 10**exp
    w = ArmWindow()
    lat = rng.lognormal(-3.0, sigma, n)
    w.record_batch(lat, np.zeros(n, dtype=int), output_value=rng.normal(0, 100, n),
                   input_value=rng.standard_cauchy(n), busy_s=lat)
    w.record_kpi_batch(rng.normal(0, 1e3, n))
    w.record_hallucination_batch(rng.random(n))
    assert len(w.latency_buckets()) <= DEFAULT_SPEC.max_latency_buckets
    assert len(w.to_bytes()) <= _max_size(DEFAULT_SPEC)


def test_size_is_flat_from_ten_thousand_to_a_million_requests() -> None:
    rng = np.random.default_rng(3)
    sizes = []
    for n in (10_000, 1_000_000):
        w = ArmWindow()
        lat = rng.lognormal(-3.0, 0.8, n)
        w.record_batch(lat, np.zeros(n, dtype=int), output_value=rng.normal(size=n))
        sizes.append(len(w.to_bytes()))
    assert sizes[1] < 2 * sizes[0]  # 100x the traffic: a few more tail buckets, no more
    assert sizes[1] < 8_000


def test_extreme_latencies_are_clamped_into_the_bounded_range() -> None:
    w = ArmWindow()
    for x in (0.0, 1e-12, 1e9, 5.0):
        w.record(Observation(x, Outcome.OK))
    keys = sorted(w.latency_buckets())
    assert len(keys) == 3
    assert keys[0] == DEFAULT_SPEC.latency_index(0.0)
    assert keys[-1] == DEFAULT_SPEC.latency_index(1e9)


def test_take_delta_resets_but_carries_the_failure_run() -> None:
    replica = ArmWindow()
    supervisor = ArmWindow()
    for _ in range(3):  # three flushes of two consecutive failures each
        for _ in range(2):
            replica.record(Observation(0.1, Outcome.SERVER_ERROR))
        supervisor.merge(replica.take_delta())
        assert replica.n_requests == 0
    assert supervisor.n_errors == 6
    assert supervisor.max_failure_run == 6


def test_run_tracking_in_batches_matches_record() -> None:
    pattern = [2, 2, 0, 2, 2, 2, 1, 2, 0, 0, 2, 2]
    one = window_of([Observation(0.1, Outcome(o)) for o in pattern])
    for split in range(len(pattern) + 1):
        w = ArmWindow()
        w.record_batch([0.1] * split, pattern[:split])
        w.record_batch([0.1] * (len(pattern) - split), pattern[split:])
        assert (w.max_failure_run, w.current_failure_run) == (4, 2)
        assert w == one


def test_out_of_range_inputs_are_rejected() -> None:
    w = ArmWindow()
    with pytest.raises(ValueError):
        w.record_hallucination(1.5)
    with pytest.raises(ValueError):
        w.record_kpi(math.inf)
    with pytest.raises(ValueError):
        WindowSpec(output_edges=(1.0, 0.0))


def test_moments_of_linear_combination() -> None:
    w = ArmWindow()
    rng = np.random.default_rng(5)
    busy = rng.random(500)
    tin = rng.integers(0, 100, 500)
    tout = rng.integers(0, 300, 500)
    w.record_batch(np.full(500, 0.1), np.zeros(500, dtype=int), busy_s=busy, tokens_in=tin,
                   tokens_out=tout)
    cost = 2.0 * busy + 0.01 * tin + 0.03 * tout
    m = w.moments(2.0, 0.01, 0.03)
    assert m.n == 500
    assert m.mean == pytest.approx(cost.mean(), rel=1e-6)
    assert m.var == pytest.approx(cost.var(), rel=1e-4)


def test_hallucination_accessors() -> None:
    w = ArmWindow()
    for s in (0.1, 0.49, 0.5, 0.99, 1.0):
        w.record_hallucination(s)
    assert w.hallucination_n == 5
    assert w.hallucination_at_least(0.5) == 3
    assert w.hallucination_mean == pytest.approx(0.616)
    assert len(w.hallucination_hist) == SCORE_BINS


def test_symlog_edges_are_symmetric_and_increasing() -> None:
    e = symlog_edges(1e-2, 1e2, 4)
    assert e[len(e) // 2] == 0.0
    assert all(b > a for a, b in itertools.pairwise(e))
    assert e[0] == -e[-1]


def test_record_is_cheap() -> None:
    w = ArmWindow()
    obs = Observation(0.05, Outcome.OK, output_value=1.0, input_value=2.0, busy_s=0.04)
    n = 20_000
    t = time.perf_counter()
    for _ in range(n):
        w.record(obs)
    per_call = (time.perf_counter() - t) / n
    assert per_call < 20e-6  # a few microseconds normally; loose for slow CI machines


def test_batch_excess_counts_judged_requests_and_survives_encoding() -> None:
    w = ArmWindow()
    w.record(Observation(0.5, Outcome.OK, batch_size=4))
    w.record(Observation(0.5, Outcome.SERVER_ERROR, batch_size=4))  # a batch shares its fate
    w.record(Observation(0.5, Outcome.CLIENT_ERROR, batch_size=4))  # never judged
    w.record(Observation(0.5, Outcome.OK))
    assert w.batch_excess == 6
    assert ArmWindow.from_bytes(w.to_bytes()).batch_excess == 6
    earlier = w.copy()
    w.record(Observation(0.5, Outcome.OK, batch_size=2))
    assert w.minus(earlier).batch_excess == 1
