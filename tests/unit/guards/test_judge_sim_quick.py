"""The judge simulation's quick run (CI): whole rollouts through the real judge and rollout
state machine, every A/A variant, and three detection checks.

Marked `judge_sim`: `make test` runs it after the rest of the suite, alone with both cores
(beside the e2e tests it slows their timing checks). Budget: ~10 minutes on 2 cores, which
buys `QUICK_AA` (60) rollouts per A/A variant (a simulated rollout costs ~2 s of CPU, most of
it in the judge's ~800 looks). The per-variant limit is the smallest L with P(more than L
false rollbacks | true rate 1%) <= 5%: at 60 rollouts L = 2, so a variant fails the test
with probability 2% at a true 1%, 27% at 3%, 58% at 5% and 95% at 10% (clearly above 1%).
`JUDGE_SIM_AA_ROLLOUTS=300` runs a more powerful check (L = 6: power 79% at a true 3%);
the full run (`python -m benchmarks.judge_sim`, `make bench`) is the real measure.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest

from benchmarks.judge_sim import AA_NAMES, QUICK, quick_limit, quick_power, run

ROLLOUTS = int(os.environ.get("JUDGE_SIM_AA_ROLLOUTS", "0")) or None
CFG = QUICK if ROLLOUTS is None else replace(QUICK, aa_rollouts={n: ROLLOUTS for n in AA_NAMES})

pytestmark = [pytest.mark.slow, pytest.mark.judge_sim,
              pytest.mark.timeout(2400 if ROLLOUTS is None else 7200)]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run(CFG)


@pytest.mark.parametrize("name", AA_NAMES)
def test_aa_variant_rarely_rolls_back(report: dict[str, Any], name: str) -> None:
    r = report["aa"][name]
    limit = quick_limit(r["rollouts"])
    assert r["false_rollbacks"] <= limit, (
        f"{r['false_rollbacks']}/{r['rollouts']} > {limit} (power at 3%: "
        f"{quick_power(r['rollouts'], limit)['0.03']:.0%}); fired {r['fired_guards']}; "
        f"e.g. {r['false_rollback_examples'][:2]}")


def test_total_failure_rolls_back_within_ten_requests(report: dict[str, Any]) -> None:
    r = report["detection"]["total_failure"]
    assert r["caught_share"] == 1.0
    assert r["median_challenger_requests"] is not None
    assert r["median_challenger_requests"] <= 10


def test_service_time_tail_is_caught_before_promotion(report: dict[str, Any]) -> None:
    r = report["detection"]["service_time_tail"]
    assert r["caught_share"] >= 0.9, r["missed_examples"]
    assert "latency_p95" in r["fired_guards"]


def test_memory_leak_is_caught_by_the_memory_guard(report: dict[str, Any]) -> None:
    r = report["detection"]["memory_leak"]
    assert r["caught_share"] == 1.0, r["missed_examples"]
    assert set(r["fired_guards"]) == {"memory"}


def test_quick_limit_matches_its_definition() -> None:
    assert quick_limit(20) == 1
    assert quick_limit(60) == 2
    assert quick_limit(300) == 6
    assert quick_power(300, 6)["0.01"] <= 0.05 < quick_power(300, 6)["0.03"]
