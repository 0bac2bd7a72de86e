"""The rollout timeline, fed by a real Judge over real ArmWindows (no mocks)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from gateway.control.timeline import Timeline, distribution, judge_log_threshold
from guards.verdict import GuardState, Judge, Verdict, make_judge
from guards.window import DEFAULT_EDGES, ArmWindow
from tests.unit.guards.helpers import fill

T0 = 1_700_000_000.0  # wall-clock seconds, as the supervisor's clock gives


@dataclass
class Run:
    timeline: Timeline
    judge: Judge
    verdicts: list[Verdict] = field(default_factory=list)
    # the challenger's cumulative (requests, errors, p95) at each look
    seen: list[tuple[int, int, float | None]] = field(default_factory=list)


def rollout(*, fail: bool, looks: int = 12, dt: float = 2.0, n: int = 400, seed: int = 7,
            timeline: Timeline | None = None) -> Run:
    """A canary at 20%, then 50% from the middle look; a failing challenger errs at 20%,
    is slower and shifted, and is rolled back at the first FAIL verdict."""
    rng = np.random.default_rng(seed)
    run = Run(timeline or Timeline(), make_judge())
    tl, judge = run.timeline, run.judge
    tl.start(rollout_id="r-42", model="iris", champion="3", challenger="4", started_at=T0)
    tl.event(T0, "rollout_started", "challenger alias moved to 4", 0.0)
    tl.event(T0 + 1, "loaded", "", 0.2)
    thr = judge_log_threshold(judge)
    t, weight, step = T0 + 1, 20.0, 0  # percent, as the routing table
    for i in range(looks):
        t += dt
        if i == looks // 2:
            weight, step = 50.0, 1
            tl.event(t - dt / 2, "step_advanced", "step 1", weight)
        champion = fill(ArmWindow(), n, rng)
        challenger = fill(ArmWindow(), int(n * weight / 100), rng, err=0.2 if fail else 0.005,
                          lat_scale=1.5 if fail else 1.0, out_shift=1.0 if fail else 0.0)
        verdict = judge.observe(champion, challenger)
        run.verdicts.append(verdict)
        b = judge.challenger
        run.seen.append((b.n_requests, b.n_errors, b.quantile(0.95)))
        tl.look(t, "canary", step, weight, judge.champion, judge.challenger, verdict, thr)
        if verdict.state is GuardState.FAIL:
            tl.event(t, "rolled_back", "; ".join(verdict.reasons), 0.0)
            break
    tl.snapshot_distributions(judge.champion, judge.challenger)
    outcome = "rolled_back" if run.verdicts[-1].state is GuardState.FAIL else "promoted"
    tl.finish(t=t, outcome=outcome, reason=run.verdicts[-1].reasons[0])
    return run


def test_a_healthy_rollout_records_every_look_with_each_arm_and_guard() -> None:
    run = rollout(fail=False)
    points = run.timeline.points
    assert len(points) == len(run.verdicts) == 12
    for p, v, (n, e, p95) in zip(points, run.verdicts, run.seen, strict=True):
        assert (p.challenger.requests, p.challenger.errors, p.challenger.p95_s) == (n, e, p95)
        assert p.verdict == v.state.value
        assert list(p.guards) == [r.guard for r in v.results]
        for r in v.results:
            g = p.guards[r.guard]
            assert (g.state, g.value, g.statistic, g.signal) == \
                (r.state.value, r.value, r.statistic, r.signal)
        assert p.log_threshold == pytest.approx(math.log(1 / run.judge.alpha_per_test))
    last = points[-1]
    assert last.champion.requests == run.judge.champion.n_requests
    p50, p99 = last.champion.p50_s, last.champion.p99_s
    assert p50 is not None and p99 is not None and p50 < p99
    assert [(p.step, p.weight) for p in points[5:7]] == [(0, 20.0), (1, 50.0)]
    assert [e.name for e in run.timeline.events] == ["rollout_started", "loaded",
                                                     "step_advanced"]
    assert all(p.verdict != "fail" for p in points)
    assert run.timeline.meta["outcome"] == "promoted"
    assert run.timeline.verdict == run.verdicts[-1].to_dict()  # finish kept the latest


def test_a_failing_challenger_is_recorded_up_to_the_rollback() -> None:
    run = rollout(fail=True)
    tl = run.timeline
    last = tl.points[-1]
    assert last.verdict == "fail" and last.transition  # the look the rollback was taken on
    assert last.guards["error_rate"].state == "fail"
    stat, thr = last.guards["error_rate"].statistic, last.log_threshold
    assert stat is not None and thr is not None and stat >= thr
    assert last.challenger.errors == run.judge.challenger.n_errors > 0
    assert tl.events[-1].name == "rolled_back"
    assert tl.events[-1].reason == "; ".join(run.verdicts[-1].reasons)
    assert tl.meta["outcome"] == "rolled_back"
    assert tl.verdict is not None and tl.verdict["state"] == "fail"
    out = tl.distributions["output"]
    assert out is not None and out.psi is not None and out.psi > 0.25  # shifted by 1 sd
    same = rollout(fail=False).timeline.distributions["output"]
    assert same is not None and same.psi is not None and same.psi < 0.05


def test_looks_within_min_gap_merge_into_the_newest_but_transitions_stay() -> None:
    run = rollout(fail=False, looks=3, dt=5.0)
    judge, tl = run.judge, Timeline(min_gap_s=1.0)
    rng = np.random.default_rng(3)
    times = [100.0 + 0.25 * i for i in range(12)]  # 2.75 s of looks, 4 per second
    for i, t in enumerate(times):
        v = judge.observe(fill(ArmWindow(), 50, rng), fill(ArmWindow(), 20, rng))
        tl.look(t, "canary", 0, 0.2, judge.champion, judge.challenger, v)
        if i == 5:
            tl.event(t, "held", "both arms degraded", 0.2)
    ts = [p.t for p in tl.points]
    assert ts == [100.75, 101.25, 102.25, 102.75]
    assert [p.transition for p in tl.points] == [False, True, False, False]
    assert tl.points[-1].challenger.requests == judge.challenger.n_requests  # the newest
    assert tl.points[0].log_threshold is None  # not given


def test_a_routing_change_within_the_gap_is_its_own_point() -> None:
    run = rollout(fail=False, looks=2)
    j, tl = run.judge, Timeline(min_gap_s=10.0)
    v = run.verdicts[-1]
    tl.look(1.0, "canary", 0, 0.2, j.champion, j.challenger, v)
    tl.look(2.0, "canary", 1, 0.5, j.champion, j.challenger, v)
    tl.look(3.0, "paused", 1, 0.5, j.champion, j.challenger, v)
    tl.look(4.0, "paused", 1, 0.5, j.champion, j.challenger, v)
    assert [(p.t, p.phase, p.step) for p in tl.points] == [
        (1.0, "canary", 0), (2.0, "canary", 1), (4.0, "paused", 1)]


def test_past_max_points_every_other_point_goes_and_transitions_stay() -> None:
    run = rollout(fail=False, looks=2)
    j, v = run.judge, run.verdicts[-1]
    tl = Timeline(min_gap_s=0.0, max_points=10)
    for i in range(200):
        tl.look(float(i), "canary", 0, 0.2, j.champion, j.challenger, v)
        if i in (7, 150):
            tl.event(float(i), "alerted", "", 0.2)
        assert len(tl.points) <= 10
    ts = [p.t for p in tl.points]
    assert ts[0] == 0.0 and ts[-1] == 199.0  # the whole span, coarser
    assert {7.0, 150.0} <= set(ts)
    assert ts == sorted(ts)


def test_events_are_bounded_and_keep_the_first() -> None:
    tl = Timeline(max_events=5)
    for i in range(20):
        tl.event(float(i), "rollout_started" if i == 0 else f"held_{i}", "", 0.0)
    assert [e.name for e in tl.events] == ["rollout_started", "held_16", "held_17",
                                           "held_18", "held_19"]
    assert tl.dropped_events == 15


def test_to_dict_is_json_and_round_trips() -> None:
    tl = rollout(fail=True).timeline
    d = json.loads(json.dumps(tl.to_dict(), allow_nan=False))
    back = Timeline.from_dict(d)
    assert back.to_dict() == tl.to_dict()
    assert back.points == tl.points and back.events == tl.events
    assert back.distributions == tl.distributions and back.meta == tl.meta
    assert back.max_points == tl.max_points
    with pytest.raises(ValueError, match="schema"):
        Timeline.from_dict({**d, "v": 99})


def test_non_finite_guard_numbers_are_stored_as_none() -> None:
    run = rollout(fail=False, looks=2)
    v = run.verdicts[-1]
    bad = replace(v, results=tuple(replace(r, statistic=math.inf, value=math.nan)
                                   for r in v.results))
    tl = Timeline()
    tl.look(1.0, "canary", 0, 0.2, run.judge.champion, run.judge.challenger, bad)
    d = tl.to_dict()
    json.dumps(d, allow_nan=False)
    assert all(g["statistic"] is None and g["value"] is None
               for g in d["points"][0]["guards"].values())


def test_distribution_bins_and_psi() -> None:
    rng = np.random.default_rng(1)
    a = fill(ArmWindow(), 3000, rng)
    b = fill(ArmWindow(), 1000, rng, out_shift=0.8)
    d = distribution(a.output_hist, b.output_hist, DEFAULT_EDGES, n_groups=10)
    assert d is not None
    assert len(d.edges) == len(d.champion) + 1 == len(d.challenger) + 1
    assert d.edges[0] is None and d.edges[-1] is None
    inner = [e for e in d.edges[1:-1] if e is not None]
    assert len(inner) == len(d.edges) - 2 and inner == sorted(inner)
    assert (sum(d.champion), sum(d.challenger)) == (3000, 1000)
    # the champion's groups hold about equal mass; the shifted challenger's do not
    assert max(d.champion) < 0.35 * 3000 and d.psi is not None and d.psi > 0.25
    empty = ArmWindow()
    one = distribution(empty.output_hist, b.output_hist, DEFAULT_EDGES)
    assert one is not None and one.psi is None and sum(one.challenger) == 1000
    assert distribution(empty.output_hist, empty.output_hist, DEFAULT_EDGES) is None
    with pytest.raises(ValueError):
        distribution((1, 2), (1, 2), DEFAULT_EDGES)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        Timeline(max_points=1)
    with pytest.raises(ValueError):
        Timeline(min_gap_s=-1)
