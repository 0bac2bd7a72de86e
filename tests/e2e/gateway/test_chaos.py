"""Chaos end to end: the key cases of `benchmarks/chaos.py` under live traffic.

Each asserts the intended behaviour (issue 13): no client-visible error, no lost audit
record, verdict or feedback, and a rollout that holds and resumes rather than failing for
a fault of the infrastructure. The report of each case names the failed checks and the
evidence (audit events, transitions seen, client errors).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

import pytest

from benchmarks.chaos import (
    CaseResult,
    Env,
    case_bad_artifact,
    case_challenger_ray_kill,
    case_mlflow_down_with_server,
    case_supervisor,
)

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


@pytest.fixture
def env(ray_serve: str, registry: Any, models: dict[str, Any]) -> Env:
    return Env(ray_serve, os.environ["GATEWAY_ADMIN_TOKEN"], registry, rate=25.0,
               models={"v1": models["v1"], "v2": models["v2"]})


def check(result: CaseResult) -> None:
    failed = [name for name, ok in result.checks.items() if not ok]
    assert result.checks and not failed, (
        f"{result.name}: failed {failed}\n" + json.dumps(asdict(result), indent=1)[:6000])


def test_challenger_replica_killed_mid_canary_holds_and_resumes(env: Env) -> None:
    check(case_challenger_ray_kill(env))


def test_supervisor_killed_mid_step_resumes_the_same_step_once(env: Env) -> None:
    check(case_supervisor(env))


def test_mlflow_server_down_mid_rollout_holds_then_resumes(env: Env) -> None:
    check(case_mlflow_down_with_server(env))


def test_missing_or_corrupt_challenger_artifact_fails_the_load_cleanly(env: Env) -> None:
    check(case_bad_artifact(env))
