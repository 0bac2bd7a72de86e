"""MLflow aliases moved by hand during a rollout, end to end: a moved `challenger`
supersedes the running rollout, a deleted one aborts it, a `champion` moved by hand aborts it
and serves that version; `/admin/rollout` shows the aliases beside what is served. Clients
see no error through any of it."""

from __future__ import annotations

import pytest

from gateway.admin_client import format_status
from gateway.control.audit import AuditLog
from gateway.control.store import VERDICT_TAG
from model_registry.refs import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import deployed, wait_for
from tests.e2e.gateway.rollout_helpers import (
    HOLD_50,
    Sink,
    Traffic,
    judged_config,
    register,
    start_rollout,
)

pytestmark = pytest.mark.slow


# These tests are about the aliases: the judge only rolls back a failing model here, so a
# latency test on a CI machine busy with the other test worker cannot end the first
# (healthy) rollout before the alias moves.
ALIAS_TRIGGERS = [{"guard": "error_rate"}]


def _challenger_in_canary(app, version: str) -> bool:  # type: ignore[no-untyped-def]
    status = app.status()
    return (status["phase"] == "canary" and (status.get("challenger") or {}).get("version")
            == version)


def test_moving_and_deleting_the_challenger_alias_mid_rollout(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink) -> None:
    first = register(registry, scale=1.01, what="first challenger")
    second = register(registry, scale=1.02, what="second challenger")
    cfg = judged_config("gw-aliases", sink, HOLD_50, triggers=ALIAS_TRIGGERS)
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=30) as traffic:
        start_rollout(app, first)
        wait_for(lambda: _challenger_in_canary(app, first.version), 90, "first in canary")
        registry.set_alias(CHALLENGER, second.version, actor="test", reason="first is bad")
        wait_for(lambda: _challenger_in_canary(app, second.version), 90, "second in canary")
        wait_for(lambda: registry.get_version_tags(first.version).get(VERDICT_TAG)
                 == "superseded", 20, "the superseded verdict tag",
                 detail=lambda: (registry.get_version_tags(first.version),
                                 [(r.event, r.challenger_version, r.reason[:200])
                                  for r in AuditLog(cfg.supervisor.audit_path).read()]))
        status = app.status()
        assert status["registry"]["aliases"][CHALLENGER] == second.version
        assert status["registry"]["aliases"][CHAMPION] == models["v1"].version
        assert status["registry"]["notes"] == []
        text = format_status(status)
        assert f"challenger: v{second.version}" in text and "registry aliases:" in text
        # the second one gets traffic now; the first none
        wait_for(lambda: any(app.predict().headers["x-gateway-model-version"]
                             == second.version for _ in range(10)),
                 30, "answers from the second challenger")

        registry.delete_alias(CHALLENGER, actor="test", reason="stop it")
        aborted = wait_for(lambda: (s := app.status())["phase"] == "rolled_back" and s, 30,
                           "the abort")
        assert "challenger alias deleted" in aborted["reason"]
        assert aborted["table"]["challenger_weight"] == 0.0
        wait_for(lambda: registry.get_version_tags(second.version).get(VERDICT_TAG)
                 == "aborted", 20, "the aborted verdict tag")
    audit = AuditLog(cfg.supervisor.audit_path)
    events = [(r.event, r.challenger_version, r.actor) for r in audit.read()]
    assert ("superseded", first.version, "registry") in events
    assert ("aborted", second.version, "registry") in events
    assert events.count(("rollout_started", second.version, "supervisor")) == 1
    assert traffic.statuses() == {200: len(traffic.answers)}, traffic.statuses()


def test_moving_the_champion_by_hand_mid_rollout_serves_the_new_champion(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink) -> None:
    challenger = register(registry, scale=1.01, what="challenger")
    hand_picked = register(registry, scale=0.99, what="champion chosen by hand")
    cfg = judged_config("gw-champion-moved", sink, HOLD_50, triggers=ALIAS_TRIGGERS)
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=30) as traffic:
        start_rollout(app, challenger)
        wait_for(lambda: _challenger_in_canary(app, challenger.version), 90, "canary")
        registry.set_alias(CHAMPION, hand_picked.version, actor="test", reason="hotfix")
        promoted = wait_for(lambda: (s := app.status())["phase"] == "promoted" and s, 90,
                            "the hand-picked champion to be served")
        assert promoted["champion"]["version"] == hand_picked.version
        assert "champion alias moved by hand" in promoted["reason"]
        wait_for(lambda: app.predict().headers["x-gateway-model-version"]
                 == hand_picked.version, 20, "the new champion answering")
        wait_for(lambda: registry.alias_version(PREVIOUS_CHAMPION) == models["v1"].version,
                 20, "previous_champion alias")
        assert registry.alias_version(CHALLENGER) is None  # the aborted rollout's alias went
        assert registry.get_version_tags(challenger.version).get(VERDICT_TAG) == "aborted"
        # (the aliases as of the supervisor's last registry read, every registry_poll_s)
        wait_for(lambda: app.status()["registry"]["notes"] == [], 10, "registry and served "
                 "to agree")
    audit = AuditLog(cfg.supervisor.audit_path)
    events = [r.event for r in audit.read()]
    assert events[-3:] == ["aborted", "champion_loading", "promoted"], events
    assert traffic.statuses() == {200: len(traffic.answers)}, traffic.statuses()
