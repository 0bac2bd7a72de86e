"""The effect runner's registry writes while the registry is down: deferred, in order, none
lost; the audit record is written at once either way."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.config import parse_config
from gateway.control import rollout as ro
from gateway.control.effects import EffectRunner
from gateway.control.store import VERDICT_TAG
from model_registry.refs import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from tests.unit.gateway.control.supervisor_fakes import FakeRegistry


def test_registry_writes_wait_for_the_registry_and_keep_their_order(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    cfg = parse_config({"model": {"name": "fraud"},
                        "supervisor": {"audit_path": str(audit)}})
    registry = FakeRegistry()
    v1, v2, v3 = registry.add("1"), registry.add("2"), registry.add("3")
    registry.set_alias(CHAMPION, "1")
    registry.set_alias(CHALLENGER, "2")
    runner = EffectRunner(cfg, registry, "fake://registry")
    idle = ro.initial_state(v1)
    loading = ro.start(idle, v2, "r2", 0.0)
    canary = ro.loaded(loading.state, cfg.rollout, 1.0)

    registry.down = True
    rolled = ro.rollback(canary.state, 2.0, "supervisor", "error_rate")
    runner.record(canary.state, rolled.state, rolled.event, 3, 2)  # type: ignore[arg-type]
    assert runner.registry_pending() == 1
    assert runner.retry_registry() == 1  # still down
    registry.down = False
    # a later decision's writes wait for the earlier ones, then both go, in order
    again = ro.start(rolled.state, v3, "r3", 4.0)
    runner.record(rolled.state, again.state, again.event, 4, 3)  # type: ignore[arg-type]
    assert runner.registry_pending() == 0
    assert registry.alias_version(CHALLENGER) is None  # the rolled-back one's alias went
    assert registry.version_tags["2"][VERDICT_TAG] == "rolled_back"
    assert registry.alias_version(PREVIOUS_CHAMPION) is None
    events = [json.loads(line)["event"] for line in audit.read_text().splitlines()]
    assert events == ["rolled_back", "rollout_started"]  # written at once, down or not
    runner.close()


def test_only_an_unreachable_mlflow_is_worth_retrying() -> None:
    from gateway.control.effects import _unreachable

    assert _unreachable(ConnectionError("refused"))
    assert _unreachable(RuntimeError("API request to http://x failed: Max retries exceeded"))
    wrapped = RuntimeError("log_batch failed")
    wrapped.__cause__ = TimeoutError()
    assert _unreachable(wrapped)
    assert not _unreachable(FileNotFoundError("no such artifact"))
    assert not _unreachable(ValueError("bad metric"))


def test_the_drift_report_is_rendered_from_the_windows_wire_form_in_a_ray_worker(
        tmp_path: Path) -> None:
    """In a Ray worker that exits after (max_calls=1), so evidently's memory does not stay in
    the supervisor; here from the windows' bytes, as the worker gets them."""
    import numpy as np
    import ray

    from guards.window import ArmWindow
    from tests.unit.guards.helpers import fill

    rng = np.random.default_rng(3)
    champion, challenger = fill(ArmWindow(), 800, rng), fill(ArmWindow(), 300, rng, out_shift=0.8)
    mine = not ray.is_initialized()  # (the session's Ray of e2e tests may be up already)
    if mine:
        ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        got = EffectRunner._drift_report(champion, challenger, tmp_path)
    finally:
        if mine:
            ray.shutdown()
    page = got["drift_report.html"].read_text(encoding="utf-8")
    assert "<html" in page.lower() and "PSI" in page
    assert EffectRunner._drift_report(ArmWindow(), challenger, tmp_path) == {}
