"""The chaos suite's pure helpers: the audit check against the transitions a poller saw."""

from __future__ import annotations

from typing import Any

from benchmarks.chaos import Snapshot, audit_check

RID = "m-v2-abc"


def snap(at: float, phase: str, step: int | None = 0, held: bool = False) -> Snapshot:
    return Snapshot(at, phase, step, held, 30.0, RID, True)


def rec(event: str, phase_to: str, table: int, rid: str = RID) -> dict[str, Any]:
    return {"event": event, "phase_to": phase_to, "table_version_to": table,
            "rollout_id": rid, "reason": f"why {event}"}


def test_a_complete_record_has_nothing_missing_or_duplicated() -> None:
    seen = [snap(0, "loading", None), snap(1, "canary", 0), snap(2, "canary", 1),
            snap(3, "canary", 1, held=True), snap(4, "canary", 1)]
    records = [rec("rollout_started", "loading", 1), rec("loaded", "canary", 2),
               rec("step_advanced", "canary", 3), rec("held", "canary", 3),
               rec("hold_released", "canary", 3), rec("loaded", "canary", 9, rid="other")]
    out = audit_check(records, seen, RID)
    assert out["missing"] == [] and out["duplicates"] == []
    assert out["events"] == ["rollout_started", "loaded", "step_advanced", "held",
                             "hold_released"]


def test_missing_phase_step_and_hold_are_named() -> None:
    seen = [snap(1, "canary", 0), snap(2, "canary", 1, held=True), snap(3, "rolled_back", None)]
    out = audit_check([rec("loaded", "canary", 2)], seen, RID)
    assert out["missing"] == ["phase rolled_back", "step_advanced to step 1 (records: 0)",
                              "held"]


def test_one_transition_recorded_twice_is_a_duplicate() -> None:
    seen = [snap(1, "canary", 0), snap(2, "canary", 1)]
    records = [rec("loaded", "canary", 2), rec("step_advanced", "canary", 3),
               rec("step_advanced", "canary", 4), rec("loaded", "canary", 5)]
    out = audit_check(records, seen, RID)
    assert "2 step_advanced records for steps [0, 1]" in out["duplicates"]
    assert "2 loaded records" in out["duplicates"]
