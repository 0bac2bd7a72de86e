"""One MLflow run per rollout, on a real SQLite store in tmp_path, read back with MlflowClient."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from gateway.control.rollout_run import RolloutRun, RolloutRunError
from guards.results import GuardResult, GuardState
from model_registry.connectivity import FAST_FAIL_ENV

EXPERIMENT = "champion-gateway-rollouts"
POLICY = {
    "steps": [{"weight": 5, "min_requests": 200, "min_duration_s": 30},
              {"weight": 25, "min_requests": 500, "min_duration_s": 60}],
    "shadow": {"enabled": True, "min_requests": 100},
    "auto_promote": True,
    "rollback_window_s": 900,
    "notes": "n" * 7000,  # longer than MLflow's 6000-character param limit
}


def guard_results(step: int) -> list[GuardResult]:
    rate = 0.001 * (step + 1) * 10
    return [
        GuardResult("error_rate", GuardState.FAIL if step == 2 else GuardState.INCONCLUSIVE,
                    rate, 0.01, 1.5 * step, 100 * (step + 1), 10 * (step + 1),
                    f"challenger {rate:.1%}"),
        GuardResult("output_drift", GuardState.PASS, 0.02 * step, 0.25, None,
                    100 * (step + 1), 10 * (step + 1), "psi small"),
        GuardResult("kpi", GuardState.INCONCLUSIVE, None, 0.05, None, 0, 0,
                    "no data: no feedback", signal=False),
    ]


def verdict_dict() -> dict[str, object]:
    results = [r.to_dict() for r in guard_results(2)]
    return {"state": "fail", "action": "rollback", "severity": "critical",
            "reasons": ["error_rate: challenger 3.0%"], "results": results,
            "catastrophic": False}


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_rollout_run_holds_policy_guards_verdict_and_report(uri: str, tmp_path: Path) -> None:
    run = RolloutRun.start(uri, EXPERIMENT, "r-0001", "fraud", "6", "7", POLICY)
    for step in range(3):
        # dicts as the supervisor sends them, and GuardResult objects, are both accepted
        results = guard_results(step)
        mixed: list[Any] = [r.to_dict() for r in results[:2]]
        run.log_guards(step, mixed + results[2:])
    report = tmp_path / "evidently-out.html"
    report.write_text("<html><body>drift report</body></html>")
    run.finish("rolled_back", "error_rate breached", verdict_dict(),
               {"drift_report.html": report})

    client = MlflowClient(tracking_uri=uri)
    got = client.get_run(run.run_id)
    assert got.info.status == "FAILED" and got.info.run_name == "rollout-r-0001"
    assert got.info.artifact_uri.startswith(str(tmp_path / "mlruns"))  # next to the database
    params = got.data.params
    assert params["steps.0.weight"] == "5" and params["steps.1.min_requests"] == "500"
    assert params["shadow.enabled"] == "True" and params["rollback_window_s"] == "900"
    assert len(params["notes"]) == 6000
    tags = got.data.tags
    assert tags["gateway.rollout_id"] == "r-0001" and tags["gateway.model"] == "fraud"
    assert tags["gateway.champion_version"] == "6"
    assert tags["gateway.challenger_version"] == "7"
    assert tags["gateway.outcome"] == "rolled_back"
    assert tags["gateway.reason"] == "error_rate breached"
    assert tags["gateway.verdict.state"] == "fail"
    assert tags["gateway.verdict.action"] == "rollback"
    assert tags["gateway.verdict.severity"] == "critical"
    assert tags["gateway.verdict.reasons"] == "error_rate: challenger 3.0%"
    assert tags["gateway.guard.error_rate.state"] == "fail"
    assert tags["gateway.guard.error_rate.detail"] == "challenger 3.0%"

    history = client.get_metric_history(run.run_id, "guard.error_rate.value")
    assert [(m.step, round(m.value, 6)) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 0.01), (1, 0.02), (2, 0.03)]
    states = client.get_metric_history(run.run_id, "guard.error_rate.state")
    assert [m.value for m in sorted(states, key=lambda m: m.step)] == [1.0, 1.0, 2.0]
    n = client.get_metric_history(run.run_id, "guard.output_drift.n_challenger")
    assert sorted(m.value for m in n) == [10.0, 20.0, 30.0]
    # no signal, no value: nothing invented for the KPI guard
    assert client.get_metric_history(run.run_id, "guard.kpi.value") == []
    assert len(client.get_metric_history(run.run_id, "guard.kpi.state")) == 3

    names = {a.path for a in client.list_artifacts(run.run_id)}
    assert names == {"verdict.json", "drift_report.html"}
    local = Path(client.download_artifacts(run.run_id, "verdict.json", str(tmp_path / "dl")))
    assert json.loads(local.read_text()) == verdict_dict()
    html = Path(client.download_artifacts(run.run_id, "drift_report.html",
                                          str(tmp_path / "dl")))
    assert html.read_text() == report.read_text()


def test_restarted_supervisor_resumes_the_same_run(uri: str) -> None:
    first = RolloutRun.start(uri, EXPERIMENT, "r-0002", "fraud", "6", "7", POLICY)
    first.log_guards(0, guard_results(0))
    # a crash before the run id was persisted: start again finds the running run
    again = RolloutRun.start(uri, EXPERIMENT, "r-0002", "fraud", "6", "7", POLICY)
    assert again.run_id == first.run_id
    found = RolloutRun.find(uri, EXPERIMENT, "r-0002")
    assert found is not None and found.run_id == first.run_id
    assert RolloutRun.find(uri, EXPERIMENT, "r-none") is None

    resumed = RolloutRun.resume(uri, first.run_id)
    assert resumed.rollout_id == "r-0002"
    resumed.log_guards(1, guard_results(1))
    resumed.finish("promoted", "every guard passes", None)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["gateway.outcome"] == "promoted"
    assert "gateway.verdict.state" not in run.data.tags
    steps = client.get_metric_history(first.run_id, "guard.error_rate.value")
    assert sorted(m.step for m in steps) == [0, 1]
    assert client.list_artifacts(first.run_id) == []
    # a finished rollout's id starts a fresh run
    fresh = RolloutRun.start(uri, EXPERIMENT, "r-0002", "fraud", "6", "7", POLICY)
    assert fresh.run_id != first.run_id


def test_missing_artifact_still_ends_the_run_then_raises(uri: str, tmp_path: Path) -> None:
    run = RolloutRun.start(uri, EXPERIMENT, "r-0003", "fraud", "6", "7", POLICY)
    with pytest.raises(RolloutRunError, match=r"drift_report\.html"):
        run.finish("rolled_back", "drift", verdict_dict(),
                   {"drift_report.html": tmp_path / "never-written.html"})
    got = MlflowClient(tracking_uri=uri).get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run.run_id)} == {
        "verdict.json"}


def test_resume_of_unknown_run_is_a_clear_error(uri: str) -> None:
    RolloutRun.start(uri, EXPERIMENT, "r-0004", "fraud", "6", "7", {})
    with pytest.raises(RolloutRunError, match=r"resume run 'f0f0f0'.*mlflow\.db"):
        RolloutRun.resume(uri, "f0f0f0")


def test_mlflow_down_fails_fast_and_safe_methods_swallow(
        uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAST_FAIL_ENV.items():  # restored after the test
        monkeypatch.setenv(key, value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(RolloutRunError, match=r"127\.0\.0\.1"):
        RolloutRun.start(dead, EXPERIMENT, "r-0005", "fraud", "6", "7", POLICY)
    assert RolloutRun.safe_start(dead, EXPERIMENT, "r-0005", "fraud", "6", "7", POLICY) is None
    # a run whose server went away after it started
    live = RolloutRun.start(uri, EXPERIMENT, "r-0005", "fraud", "6", "7", POLICY)
    gone = RolloutRun(MlflowClient(tracking_uri=dead), dead, live.run_id, "r-0005")
    assert gone.safe_log_guards(0, guard_results(0)) is False
    assert gone.safe_finish("rolled_back", "x", verdict_dict()) is False
    assert time.monotonic() - start < 10.0
