"""One rollout's record over time, for its report (`gateway.report`).

The supervisor feeds a `Timeline` after every judge pass (`look`: both arms' cumulative
windows and the verdict) and on every transition (`event`); `to_dict` is the JSON the
report renders. Memory is bounded whatever the rollout's length:
- at most one point per `min_gap_s`: a look within the gap replaces the newest point (its
  cumulative counts are newer), unless that point is a transition's (the evidence a
  decision was taken on) or the routing changed;
- past `max_points` every other point is dropped (transitions stay), so a long rollout
  keeps its whole span at a coarser resolution;
- past `max_events` the oldest events but the first are dropped (and counted).
Distributions are not kept per look: `snapshot_distributions` computes them once, when
the supervisor asks (at the end of a rollout).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from guards.drift import grouped_psi
from guards.stats import equal_mass_groups, log_e_to_threshold, regroup
from guards.verdict import Judge, Verdict
from guards.window import ArmWindow

__all__ = [
    "ArmPoint",
    "Distribution",
    "GuardPoint",
    "Point",
    "Timeline",
    "TimelineEvent",
    "judge_log_threshold",
]

SCHEMA = 1
QUANTILES = (0.5, 0.95, 0.99)


def judge_log_threshold(judge: Judge) -> float:
    """The log e-value every sequential test of this judge rejects at: each test gets an
    equal share of alpha (`Judge.alpha_per_test`), and rejects at log(1 / share)."""
    return log_e_to_threshold(judge.alpha_per_test)


def _num(x: float | None) -> float | None:
    # JSON has no inf/nan: store them as None (a gap in a chart)
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True, slots=True)
class ArmPoint:
    """One arm's cumulative traffic at a look."""

    requests: int  # every request, client errors included
    errors: int  # server errors plus timeouts
    p50_s: float | None  # latency quantiles of OK responses; None before any
    p95_s: float | None
    p99_s: float | None

    @classmethod
    def of(cls, window: ArmWindow) -> ArmPoint:
        p50, p95, p99 = (window.quantile(q) for q in QUANTILES)
        return cls(window.n_requests, window.n_errors, p50, p95, p99)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "p50_s": _num(self.p50_s),
                "p95_s": _num(self.p95_s), "p99_s": _num(self.p99_s)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArmPoint:
        return cls(int(d["requests"]), int(d["errors"]), _opt(d.get("p50_s")),
                   _opt(d.get("p95_s")), _opt(d.get("p99_s")))


@dataclass(frozen=True, slots=True)
class GuardPoint:
    """One guard's finding at a look (`guards.results.GuardResult`, less its text)."""

    state: str
    value: float | None
    threshold: float | None
    statistic: float | None  # log e-value for sequential tests, None where not a test
    signal: bool

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "value": _num(self.value),
                "threshold": _num(self.threshold), "statistic": _num(self.statistic),
                "signal": self.signal}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GuardPoint:
        return cls(str(d["state"]), _opt(d.get("value")), _opt(d.get("threshold")),
                   _opt(d.get("statistic")), bool(d.get("signal", True)))


@dataclass(frozen=True)
class Point:
    """One look: where the rollout stood and what each arm and guard showed."""

    t: float
    phase: str
    step: int | None
    weight: float  # the challenger's share of traffic, percent (as the routing table)
    verdict: str  # the verdict's state
    champion: ArmPoint
    challenger: ArmPoint
    guards: Mapping[str, GuardPoint]  # in the verdict's order
    log_threshold: float | None  # what every sequential test rejects at (log e)
    transition: bool = False  # a transition followed this look: never merged or thinned

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "phase": self.phase, "step": self.step, "weight": self.weight,
                "verdict": self.verdict, "champion": self.champion.to_dict(),
                "challenger": self.challenger.to_dict(),
                "guards": {name: g.to_dict() for name, g in self.guards.items()},
                "log_threshold": _num(self.log_threshold), "transition": self.transition}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Point:
        step = d.get("step")
        return cls(float(d["t"]), str(d["phase"]), None if step is None else int(step),
                   float(d["weight"]), str(d.get("verdict", "")),
                   ArmPoint.from_dict(d["champion"]), ArmPoint.from_dict(d["challenger"]),
                   {str(k): GuardPoint.from_dict(g) for k, g in d.get("guards", {}).items()},
                   _opt(d.get("log_threshold")), bool(d.get("transition", False)))


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    t: float
    name: str  # rollout_started, loaded, step_advanced, rolled_back, promoted, held, ...
    reason: str
    weight: float  # the challenger's share of traffic after the transition, percent
    actor: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "name": self.name, "reason": self.reason, "weight": self.weight,
                "actor": self.actor}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TimelineEvent:
        return cls(float(d["t"]), str(d["name"]), str(d.get("reason", "")),
                   float(d.get("weight", 0.0)), str(d.get("actor", "")))


@dataclass(frozen=True)
class Distribution:
    """Both arms' values in the same bins: the reference arm's (the champion's, unless it
    has none) equal-mass groups of the window's fine bins, as the drift guards see them.

    `edges` has one more entry than each count list; None is an unbounded end.
    """

    edges: tuple[float | None, ...]
    champion: tuple[int, ...]
    challenger: tuple[int, ...]
    psi: float | None  # challenger against champion over the cumulative windows

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "champion": list(self.champion),
                "challenger": list(self.challenger), "psi": _num(self.psi)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Distribution:
        return cls(tuple(_opt(e) for e in d["edges"]), tuple(int(c) for c in d["champion"]),
                   tuple(int(c) for c in d["challenger"]), _opt(d.get("psi")))


def distribution(champion: tuple[int, ...], challenger: tuple[int, ...],
                 fine_edges: tuple[float, ...], n_groups: int = 10) -> Distribution | None:
    """Coarsen two fine histograms (`len(fine_edges) + 1` bins each) into `n_groups`
    equal-mass groups of the reference arm; None when neither arm has a value."""
    if len(champion) != len(challenger) or len(champion) != len(fine_edges) + 1:
        raise ValueError("both histograms need len(edges) + 1 bins")
    n_a, n_b = sum(champion), sum(challenger)
    if n_a == 0 and n_b == 0:
        return None
    starts = equal_mass_groups(champion if n_a else challenger, n_groups)
    # group g holds fine bins [starts[g], starts[g+1]); fine bin i starts at edge i-1
    edges: list[float | None] = [None, *(fine_edges[s - 1] for s in starts[1:]), None]
    psi = grouped_psi(champion, challenger, n_groups) if n_a and n_b else None
    return Distribution(tuple(edges), tuple(int(c) for c in regroup(champion, starts)),
                        tuple(int(c) for c in regroup(challenger, starts)), psi)


class Timeline:
    """A bounded record of one rollout (see the module doc). Not thread-safe: the
    supervisor's event loop is its only writer."""

    def __init__(self, *, min_gap_s: float = 1.0, max_points: int = 1800,
                 max_events: int = 500) -> None:
        if min_gap_s < 0 or max_points < 4 or max_events < 2:
            raise ValueError("Timeline needs min_gap_s >= 0, max_points >= 4, max_events >= 2")
        self.min_gap_s = float(min_gap_s)
        self.max_points = int(max_points)
        self.max_events = int(max_events)
        self.meta: dict[str, Any] = {
            "rollout_id": None, "model": None, "champion": None, "challenger": None,
            "started_at": None, "ended_at": None, "outcome": None, "reason": "",
        }
        self.verdict: dict[str, Any] | None = None  # the final one, or else the latest
        self.distributions: dict[str, Distribution | None] = {"output": None, "input": None}
        self.dropped_events = 0
        self._points: list[Point] = []
        self._events: list[TimelineEvent] = []
        self._slot_start = -math.inf  # when the newest point's min_gap_s slot began

    @property
    def points(self) -> tuple[Point, ...]:
        return tuple(self._points)

    @property
    def events(self) -> tuple[TimelineEvent, ...]:
        return tuple(self._events)

    def start(self, *, rollout_id: str, model: str, champion: str | None,
              challenger: str | None, started_at: float) -> None:
        """The rollout's identity: registered model name, and each arm's version."""
        self.meta.update(rollout_id=rollout_id, model=model, champion=champion,
                         challenger=challenger, started_at=float(started_at))

    def finish(self, *, t: float, outcome: str, reason: str = "",
               verdict: Verdict | Mapping[str, Any] | None = None) -> None:
        """How it ended (promoted, rolled_back, load_failed, aborted, ...). `verdict`
        defaults to the latest look's."""
        self.meta.update(ended_at=float(t), outcome=outcome, reason=reason)
        if isinstance(verdict, Verdict):
            self.verdict = verdict.to_dict()
        elif verdict is not None:
            self.verdict = dict(verdict)

    def look(self, t: float, phase: str, step: int | None, weight: float,
             champion: ArmWindow, challenger: ArmWindow, verdict: Verdict,
             log_threshold: float | None = None) -> None:
        """One judge pass. `champion`/`challenger` are the arms' cumulative windows
        (`Judge.champion`/`.challenger`); `log_threshold` is `judge_log_threshold(judge)`
        (a Verdict does not carry it)."""
        guards = {r.guard: GuardPoint(r.state.value, r.value, r.threshold, r.statistic,
                                      r.signal) for r in verdict.results}
        point = Point(float(t), str(phase), step, float(weight), verdict.state.value,
                      ArmPoint.of(champion), ArmPoint.of(challenger), guards, log_threshold)
        self.verdict = verdict.to_dict()
        last = self._points[-1] if self._points else None
        if (last is not None and not last.transition
                and point.t - self._slot_start < self.min_gap_s
                and (last.phase, last.step, last.weight) == (point.phase, point.step,
                                                             point.weight)):
            self._points[-1] = point
            return
        self._points.append(point)
        self._slot_start = point.t
        if len(self._points) > self.max_points:
            self._thin()

    def event(self, t: float, name: str, reason: str = "", weight: float = 0.0,
              actor: str = "") -> None:
        """A transition. The look just before it (what the decision saw) is kept."""
        if self._points and not self._points[-1].transition:
            self._points[-1] = replace(self._points[-1], transition=True)
        self._events.append(TimelineEvent(float(t), name, reason, float(weight), actor))
        if len(self._events) > self.max_events:
            del self._events[1]  # the first (rollout_started) says when it all began
            self.dropped_events += 1

    def snapshot_distributions(self, champion: ArmWindow, challenger: ArmWindow,
                               n_groups: int = 10) -> None:
        """Keep both arms' output and input distributions and their PSI (cheap: one pass
        over the windows' fixed bins; call it when the rollout ends)."""
        spec = champion.spec
        self.distributions = {
            "output": distribution(champion.output_hist, challenger.output_hist,
                                   spec.output_edges, n_groups),
            "input": distribution(champion.input_hist, challenger.input_hist,
                                  spec.input_edges, n_groups),
        }

    def _thin(self) -> None:
        # every other point, and every transition, and the newest
        last = len(self._points) - 1
        kept = [p for i, p in enumerate(self._points) if i % 2 == 0 or p.transition or i == last]
        if len(kept) > self.max_points:  # transitions alone would overflow: thin them too
            kept = [p for i, p in enumerate(self._points) if i % 2 == 0 or i == last]
        self._points = kept

    # ---- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "v": SCHEMA,
            **self.meta,
            "verdict": self.verdict,
            "min_gap_s": self.min_gap_s,
            "max_points": self.max_points,
            "max_events": self.max_events,
            "points": [p.to_dict() for p in self._points],
            "events": [e.to_dict() for e in self._events],
            "dropped_events": self.dropped_events,
            "distributions": {k: None if d is None else d.to_dict()
                              for k, d in self.distributions.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Timeline:
        if d.get("v") != SCHEMA:
            raise ValueError(f"timeline schema {d.get('v')!r} is not {SCHEMA}")
        tl = cls(min_gap_s=float(d["min_gap_s"]), max_points=int(d["max_points"]),
                 max_events=int(d["max_events"]))
        for key in tl.meta:
            tl.meta[key] = d.get(key, tl.meta[key])
        tl.verdict = None if d.get("verdict") is None else dict(d["verdict"])
        tl._points = [Point.from_dict(p) for p in d.get("points", [])]
        tl._events = [TimelineEvent.from_dict(e) for e in d.get("events", [])]
        tl.dropped_events = int(d.get("dropped_events", 0))
        for k, v in (d.get("distributions") or {}).items():
            tl.distributions[str(k)] = None if v is None else Distribution.from_dict(v)
        if tl._points:
            tl._slot_start = tl._points[-1].t
        return tl


def _opt(x: Any) -> float | None:
    return None if x is None else float(x)
