"""The supervisor's record of each rollout for its report (`gateway.report`): a `Timeline`
fed at every judge pass and transition, kept in memory for the current rollout and the last
few, and logged to the rollout's MLflow run (`timeline.json`, `report.html`) when it ends,
where older ones are read back from.

A supervisor restarted mid-rollout starts the timeline afresh from where it resumed (the
judge's evidence survives a restart, this history does not): the report then says so
in its events.
"""

from __future__ import annotations

import json
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.logs import get_logger
from gateway.control import rollout as ro
from gateway.control.timeline import Timeline, judge_log_threshold
from guards.verdict import Judge, Verdict

__all__ = ["TERMINAL", "RolloutReports"]

log = get_logger(__name__)

TERMINAL = frozenset({ro.Phase.PROMOTED, ro.Phase.ROLLED_BACK, ro.Phase.FAILED})
TIMELINE_ARTIFACT = "timeline.json"


class RolloutReports:
    """Timelines by rollout id: the live one and the last `keep` ended ones."""

    def __init__(self, model: str, keep: int = 5) -> None:
        self._model = model
        self._keep = keep
        self._live: Timeline | None = None
        self._ended: OrderedDict[str, Timeline] = OrderedDict()

    def on_transition(self, old: ro.RolloutState, new: ro.RolloutState, event: ro.Event,
                      now: float, weight: float, judge: Judge | None) -> dict[str, Any] | None:
        """Record a transition; returns the finished timeline (as a dict) when this one
        ended the rollout, for the rollout's MLflow run."""
        rid = new.rollout_id or old.rollout_id
        if rid is None:
            return None
        timeline = self._timeline(rid, old, new, now)
        timeline.event(now, event.name, event.reason, weight, event.actor)
        if new.phase in TERMINAL and old.phase not in TERMINAL:
            if judge is not None:
                timeline.snapshot_distributions(judge.champion, judge.challenger)
            timeline.finish(t=now, outcome=event.name, reason=event.reason,
                            verdict=event.verdict)
            self._end(rid, timeline)
            return timeline.to_dict()
        if event.name == "restored":  # rolled back after its promotion: the record says so
            timeline.meta["outcome"] = "restored"
        return None

    def on_look(self, state: ro.RolloutState, weight: float, judge: Judge, verdict: Verdict,
                now: float) -> None:
        if self._live is None or self._live.meta["rollout_id"] != state.rollout_id:
            return
        self._live.look(now, state.phase.value, state.step, weight, judge.champion,
                        judge.challenger, verdict, judge_log_threshold(judge))

    def get(self, rollout_id: str | None) -> dict[str, Any] | None:
        """The live or the latest ended timeline (`rollout_id` None), or that rollout's, if
        held in memory."""
        if rollout_id is None:
            latest = self._live or (next(reversed(self._ended.values())) if self._ended
                                    else None)
            return latest.to_dict() if latest is not None else None
        if self._live is not None and self._live.meta["rollout_id"] == rollout_id:
            return self._live.to_dict()
        ended = self._ended.get(rollout_id)
        return ended.to_dict() if ended is not None else None

    def _timeline(self, rid: str, old: ro.RolloutState, new: ro.RolloutState,
                  now: float) -> Timeline:
        if self._live is not None and self._live.meta["rollout_id"] == rid:
            return self._live
        if rid in self._ended:
            return self._ended[rid]
        timeline = Timeline()
        champion = new.champion or old.champion
        challenger = new.challenger or old.challenger
        timeline.start(rollout_id=rid, model=self._model,
                       champion=champion.version if champion else None,
                       challenger=challenger.version if challenger else None, started_at=now)
        if old.phase is not ro.Phase.IDLE and old.rollout_id == rid:
            # Resumed by a restarted supervisor: what came before is not in this record.
            timeline.event(now, "resumed_here", f"record starts in phase {old.phase.value}")
        if new.phase in TERMINAL and old.phase in TERMINAL:
            self._end(rid, timeline)
        else:
            self._live = timeline
        return timeline

    def _end(self, rid: str, timeline: Timeline) -> None:
        if self._live is timeline:
            self._live = None
        self._ended[rid] = timeline
        self._ended.move_to_end(rid)
        while len(self._ended) > self._keep:
            self._ended.popitem(last=False)


def timeline_artifacts(timeline: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """`timeline.json` and the rendered `report.html`, written under `folder`."""
    from gateway.report import render_report

    data = folder / TIMELINE_ARTIFACT
    data.write_text(json.dumps(timeline), encoding="utf-8")
    page = folder / "report.html"
    page.write_text(render_report(timeline), encoding="utf-8")
    return {TIMELINE_ARTIFACT: data, "report.html": page}


def load_timeline(run: Any) -> dict[str, Any] | None:
    """A `RolloutRun`'s stored timeline, or None if it has none."""
    with tempfile.TemporaryDirectory(prefix="gateway-report-") as tmp:
        path = run.download_artifact(TIMELINE_ARTIFACT, Path(tmp))
        if path is None:
            return None
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        return data
