"""The supervisor's rollout records for the report: a timeline per rollout, fed by judge
passes and transitions, handed to the effects when the rollout ends, and rendered by
`Supervisor.report` (the current, the last, or one by id)."""

from __future__ import annotations

from html.parser import HTMLParser

from tests.unit.gateway.control.test_supervisor import HOLD_10, TWO_STEPS, World, run, until


class _Charts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.charts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg" and "chart" in (dict(attrs).get("class") or "").split():
            self.charts += 1


def _charts(page: str) -> int:
    parser = _Charts()
    parser.feed(page)
    return parser.charts


def test_a_rolled_back_rollout_is_recorded_and_its_report_rendered() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        assert await sup.report(None) is None  # no rollout yet
        await world.canary(sup)
        for _ in range(3):  # healthy looks first, then the failure
            world.clock.advance(1.5)
            await world.flush(sup)
        live = await sup.report(None)
        rollout_id = (await sup.status())["rollout_id"]
        assert live is not None and rollout_id in live  # the live rollout's report
        world.clock.advance(1.5)
        await world.flush(sup, challenger_err=0.5)
        status = await sup.status()
        assert status["phase"] == "rolled_back"
        await sup.effects_done()
        # The finished record went to the effects (for the MLflow run), once.
        assert len(world.effects.timelines) == 1
        timeline = world.effects.timelines[0]
        assert timeline["rollout_id"] == status["rollout_id"]
        assert timeline["outcome"] == "rolled_back" and "error_rate" in timeline["reason"]
        assert [e["name"] for e in timeline["events"]] == [
            "rollout_started", "loaded", "rolled_back"]
        assert len(timeline["points"]) >= 4  # one per look, 1.5 s apart
        assert timeline["points"][-1]["challenger"]["errors"] > 0
        assert timeline["points"][0]["challenger"]["errors"] == 0
        assert timeline["distributions"]["output"] is not None
        page = await sup.report(status["rollout_id"])
        assert page is not None and status["rollout_id"] in page
        assert _charts(page) >= 4
        assert await sup.report(None) == page  # the last one, when none is running
        assert await sup.report("gw-unit-v9-nosuchid") is None
        await sup.shutdown()

    run(scenario)


def test_a_promoted_rollout_records_every_step() -> None:
    async def scenario() -> None:
        world = World(TWO_STEPS)
        sup = world.supervisor()
        await world.canary(sup)
        await until(sup, world, lambda s: s["phase"] == "promoted")
        await sup.effects_done()
        assert len(world.effects.timelines) == 1
        timeline = world.effects.timelines[0]
        assert timeline["outcome"] == "promoted"
        weights = sorted({p["weight"] for p in timeline["points"]})
        assert weights == [20.0, 50.0]
        assert [e["name"] for e in timeline["events"]] == [
            "rollout_started", "loaded", "step_advanced", "promoted"]
        await sup.shutdown()

    run(scenario)
