"""The pure helpers of the serving benchmarks: statistics, poll bounds, the RESULTS.md
writer and the profile summary. No Ray."""

from __future__ import annotations

import math
import random

import pytest

from benchmarks.common import (
    latency_summary_ms,
    median,
    percentile,
    ratio,
    replace_section,
    rounded,
)
from benchmarks.overhead import summarize_profile
from benchmarks.rollback_time import Poll, bounds


def test_percentile_matches_linear_interpolation() -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 1) for _ in range(101)]
    for q in (0, 1, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([3.0], 99) == 3.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError, match="q"):
        percentile([1.0], 101)


def test_latency_summary_in_ms() -> None:
    s = latency_summary_ms([0.001, 0.002, 0.003])
    assert s["p50_ms"] == pytest.approx(2.0)
    assert s["mean_ms"] == pytest.approx(2.0)
    assert s["n"] == 3


def test_ratio_and_rounding_make_valid_json_values() -> None:
    assert math.isnan(ratio(1.0, 0.0))
    assert rounded({"a": [1.23456, math.nan], "b": 2}) == {"a": [1.235, None], "b": 2}


def test_replace_section_rewrites_only_its_own_block() -> None:
    text = replace_section("# title\n", "one", "first")
    text = replace_section(text, "two", "second")
    text = replace_section(text, "one", "first, again")
    assert text.count("<!-- one:begin -->") == 1
    assert "first, again" in text and "first\n" not in text
    assert "second" in text and text.startswith("# title")


def test_bounds_bracket_the_first_instant_from_overlapping_polls() -> None:
    # Polls answered at unknown instants in [sent, received]; the event held from t = 10.
    polls = [Poll(0, 2, [0]), Poll(3, 9, [0]), Poll(5, 12, [1]), Poll(8, 11, [1])]
    found = bounds(polls, lambda p: p.values[0] == 1)
    assert found is not None
    lo, hi = found
    # After the latest send of a "not yet" poll (3), before the earliest "yes" answer (11).
    assert (lo, hi) == (3, 11)
    assert bounds(polls, lambda p: False) is None


def test_profile_summary_drops_idle_leaves_and_ranks_self_time() -> None:
    collapsed = "\n".join([
        "run (threading.py:1);main_loop (ray/_private/worker.py:9) 5",
        "run (threading.py:1);Worker.main_loop (ray/_private/worker.py:9) 50",
        "run (threading.py:1);_predict (/x/gateway/serving/ingress.py:3);"
        "loads (json/__init__.py:4) 30",
        "run (threading.py:1);_predict (/x/gateway/serving/ingress.py:3) 10",
    ])
    s = summarize_profile(collapsed)
    assert s["samples"] == 45 and s["idle_samples_dropped"] == 50
    assert s["self_pct"][0] == ["loads (json/__init__.py)", pytest.approx(66.7, abs=0.1)]
    inclusive = dict(map(tuple, s["gateway_inclusive_pct"]))
    assert inclusive["_predict (gateway/serving/ingress.py)"] == pytest.approx(88.9, abs=0.1)


def test_hot_path_steps_run_and_are_timed() -> None:
    from benchmarks.hotpath import _bare_ingress_steps, _ingress_steps, per_call_us

    steps = _ingress_steps() | _bare_ingress_steps()
    assert {"observe (window + metrics)", "parse body (json.loads)"} <= set(steps)
    for step in steps.values():
        assert per_call_us(step, loops=10, repeats=3) > 0.0
