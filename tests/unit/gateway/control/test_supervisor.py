"""The supervisor without Ray: an in-memory registry, recorded effects, a manual clock and
the real judge fed with real ArmWindows, as ingress replicas flush them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from gateway.control.store import JUDGE_TAG, STATE_TAG, VERDICT_TAG, decode_judge_state
from gateway.control.supervisor import Supervisor
from guards.window import ArmWindow, Observation, Outcome
from model_registry.refs import CHALLENGER, ModelRef
from tests.unit.gateway.control.supervisor_fakes import (
    FakeEffects,
    FakeRegistry,
    ManualClock,
    config,
    deltas,
    slot_report,
    supervisor,
)
from tests.unit.guards.helpers import fill

TWO_STEPS = [{"weight": 20.0, "min_requests": 100, "min_duration_s": 1.0},
             {"weight": 50.0, "min_requests": 100, "min_duration_s": 1.0}]
# The second step never ends by itself: the rollout stays in canary at step 1.
STAY_AT_50 = [{"weight": 20.0, "min_requests": 100, "min_duration_s": 0.0},
              {"weight": 50.0, "min_requests": 10**9, "min_duration_s": 10**6}]
HOLD_10 = [{"weight": 10.0, "min_requests": 10**9, "min_duration_s": 10**6}]


class World:
    """A registry with a champion (v1) and a challenger (v2), recorded effects, a clock."""

    def __init__(self, steps: list[dict[str, Any]], **extra: Any) -> None:
        self.registry = FakeRegistry()
        self.v1, self.v2 = self.registry.add("1"), self.registry.add("2")
        self.effects = FakeEffects()
        self.clock = ManualClock()
        self.cfg = config(steps, **extra)
        self.rng = np.random.default_rng(7)

    def supervisor(self, effects: FakeEffects | None = None) -> Supervisor:
        return supervisor(self.cfg, self.registry, effects or self.effects, self.clock,
                          self.v1)

    async def canary(self, sup: Supervisor) -> None:
        """Set the challenger alias; the supervisor loads it; its replica reports healthy."""
        self.registry.set_alias(CHALLENGER, self.v2.version)
        await sup.tick()
        assert (await sup.status())["phase"] == "loading"
        await sup.report_slot("b", "replica-1", slot_report(self.v2))
        assert (await sup.status())["phase"] == "canary"

    async def flush(self, sup: Supervisor, challenger_err: float = 0.0) -> None:
        await sup.ingest("ingress-1", deltas(self.v1, self.v2, self.rng,
                                             challenger_err=challenger_err))


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """For what a concurrent tick of the control loop (woken by the clock) may still be
    recording on a worker thread."""
    for _ in range(int(timeout_s / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


async def until(sup: Supervisor, world: World, done: Callable[[dict[str, Any]], bool],
                looks: int = 30, step_s: float = 0.5) -> dict[str, Any]:
    """Healthy flushes, `step_s` apart on the clock, until `done(status)`."""
    for _ in range(looks):
        status = await sup.status()
        if done(status):
            return status
        world.clock.advance(step_s)
        await world.flush(sup)
    raise AssertionError(f"not reached after {looks} looks: {await sup.status()}")


def test_a_challenger_alias_starts_a_rollout_that_reaches_canary_once_healthy() -> None:
    async def scenario() -> None:
        world = World(TWO_STEPS)
        sup = world.supervisor()
        first = await sup.get_table()
        assert first["slot_models"]["b"] is None and first["challenger_weight"] == 0
        world.registry.set_alias(CHALLENGER, "2")
        await sup.tick()
        loading = await sup.status()
        assert loading["phase"] == "loading" and loading["challenger"]["version"] == "2"
        table = loading["table"]
        # the slot gets the model, not yet any traffic
        assert table["slot_models"]["b"]["version"] == "2"
        assert (table["challenger_weight"], table["mode"]) == (0.0, "pinned")
        assert table["version"] > first["version"]
        # a report about another model does not count; the challenger's healthy one does
        await sup.report_slot("b", "replica-1", slot_report(world.v1))
        assert (await sup.status())["phase"] == "loading"
        await sup.report_slot("b", "replica-1", slot_report(world.v2))
        canary = await sup.status()
        assert (canary["phase"], canary["step"]) == ("canary", 0)
        assert (canary["table"]["challenger_weight"], canary["table"]["mode"]) == (20.0, "split")
        assert world.effects.events == ["rollout_started", "loaded"]
        started = world.effects.records[0]
        assert (started.phase_from.value, started.phase_to.value) == ("idle", "loading")
        await sup.effects_done()
        assert world.effects.notified == ["rollout_started", "loaded"]
        # persisted for a restart
        assert '"phase":"canary"' in world.registry.model_tags[f"{STATE_TAG}.gw-unit"]
        await sup.shutdown()

    run(scenario)


def test_a_failing_challenger_is_rolled_back_and_its_slot_released_last() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await world.canary(sup)
        before = (await sup.get_table())["version"]
        await world.flush(sup, challenger_err=0.5)
        status = await sup.status()
        assert status["phase"] == "rolled_back", status
        assert "error_rate" in status["reason"]
        assert status["verdict"]["state"] == "fail"
        table = status["table"]
        # traffic back on the champion at once...
        assert table["challenger_weight"] == 0.0 and table["version"] > before
        rolled = world.effects.records[-1]
        assert rolled.event.name == "rolled_back" and rolled.table_to == table["version"]
        assert rolled.event.verdict is not None and rolled.event.verdict["state"] == "fail"
        assert rolled.event.action is not None and rolled.event.action.rolls_back
        # ...then, after the record and the alert, the challenger's slot is released
        await sup.effects_done()
        assert world.effects.notified[-1] == "rolled_back"
        released = await sup.get_table()
        assert released["slot_models"]["b"] is None
        assert released["slot_models"]["a"]["version"] == "1"
        # the alias still names v2 (the real effects delete it): no second rollout of it
        world.clock.advance(5.0)
        await sup.tick()
        assert (await sup.status())["phase"] == "rolled_back"
        assert world.effects.events.count("rollout_started") == 1
        await sup.shutdown()

    run(scenario)


def test_a_healthy_challenger_walks_every_step_and_is_promoted() -> None:
    async def scenario() -> None:
        world = World(TWO_STEPS)
        sup = world.supervisor()
        await world.canary(sup)
        step1 = await until(sup, world, lambda s: s["step"] == 1)
        assert step1["table"]["challenger_weight"] == 50.0
        # the evidence is saved with the step (a restart resumes it)
        assert f"{JUDGE_TAG}.gw-unit" in world.registry.version_tags["2"]
        promoted = await until(sup, world, lambda s: s["phase"] == "promoted")
        table = promoted["table"]
        assert table["champion_slot"] == "b" and table["challenger_weight"] == 0.0
        assert table["slot_models"]["a"]["version"] == "1"  # kept warm for a rollback
        assert promoted["champion"]["version"] == "2"
        assert promoted["previous_champion"]["version"] == "1"
        await eventually(lambda: world.effects.events == [
            "rollout_started", "loaded", "step_advanced", "promoted"])
        # the old champion is released once the rollback window has passed
        world.clock.advance(30.0)
        await sup.tick()
        assert (await sup.get_table())["slot_models"]["a"] is not None
        world.clock.advance(31.0)
        await sup.tick()
        assert (await sup.get_table())["slot_models"]["a"] is None
        await eventually(lambda: world.effects.events[-1] == "released")
        await sup.shutdown()

    run(scenario)


def test_a_restarted_supervisor_resumes_the_rollout_and_the_judges_evidence() -> None:
    async def scenario() -> None:
        world = World(STAY_AT_50)
        sup = world.supervisor()
        await world.canary(sup)
        await until(sup, world, lambda s: s["step"] == 1)
        for _ in range(3):
            await world.flush(sup)
        world.clock.advance(6.0)  # past judge_persist_s: the next tick saves the evidence
        await sup.tick()
        before = await sup.status()

        def saved_state() -> dict[str, Any]:
            return decode_judge_state(world.registry.version_tags["2"][f"{JUDGE_TAG}.gw-unit"])

        # (the control loop, woken by the clock, may be the one saving it, on a worker thread)
        await eventually(lambda: saved_state()["looks"]["n"] == before["judge"]["looks_judged"])
        saved = saved_state()
        assert saved["looks"]["n"] >= 4
        await sup.shutdown()  # the actor dies; Ray builds a new one on the same registry

        effects = FakeEffects()
        again = world.supervisor(effects)
        after = await again.status()
        assert after["rollout_id"] == before["rollout_id"]
        assert (after["phase"], after["step"]) == ("canary", 1)
        assert after["table"]["challenger_weight"] == 50.0
        # the looks were not reset: the same e-processes go on
        assert after["judge"]["looks_judged"] == saved["looks"]["n"]
        assert after["requests"] == before["requests"]
        await world.flush(again)
        assert (await again.status())["judge"]["looks_judged"] == saved["looks"]["n"] + 1
        world.clock.advance(2.0)
        await again.tick()
        assert effects.events == []  # nothing started or recorded twice
        await again.shutdown()

    run(scenario)


def test_an_already_judged_challenger_is_not_rolled_out_again() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        world.registry.set_version_tag("2", VERDICT_TAG, "rolled_back")
        sup = world.supervisor()
        world.registry.set_alias(CHALLENGER, "2")
        await sup.tick()
        assert (await sup.status())["phase"] == "idle"
        assert world.effects.events == []
        await sup.shutdown()

    run(scenario)


def _stalled(ref_a: ModelRef, ref_b: ModelRef, rng: np.random.Generator,
             fail: bool) -> dict[str, bytes]:
    """190 champion and 10 challenger requests; all of them time out when `fail`."""
    out = {}
    for ref, n in ((ref_a, 190), (ref_b, 10)):
        window = ArmWindow()
        if fail:
            for _ in range(n):
                window.record(Observation(2.0, Outcome.TIMEOUT))
        else:
            fill(window, n, rng, err=0.0)
        out[ref.version] = window.to_bytes()
    return out


def test_both_arms_degraded_holds_the_rollout_and_status_says_so() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await world.canary(sup)
        for _ in range(40):
            await sup.ingest("ingress-1", _stalled(world.v1, world.v2, world.rng, False))
        assert not (await sup.status())["held"]
        await sup.ingest("ingress-1", _stalled(world.v1, world.v2, world.rng, True))
        status = await sup.status()
        assert status["held"] and status["held_since"] == world.clock.now, status
        assert status["phase"] == "canary" and "both arms degraded" in status["reason"]
        assert status["table"]["challenger_weight"] == 10.0  # holding, not acting
        assert world.effects.events[-1] == "held"
        assert f"{JUDGE_TAG}.gw-unit" in world.registry.version_tags["2"]
        await sup.shutdown()

    run(scenario)


def test_a_challenger_that_fails_its_health_check_never_gets_traffic() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        world.registry.set_alias(CHALLENGER, "2")
        await sup.tick()
        await sup.report_slot("b", "replica-1",
                              slot_report(world.v2, healthy=False, error="boom"))
        status = await sup.status()
        assert (status["phase"], status["reason"]) == ("failed", "boom")
        assert status["table"]["challenger_weight"] == 0.0
        assert world.effects.events == ["rollout_started", "load_failed"]
        await sup.effects_done()
        assert (await sup.get_table())["slot_models"]["b"] is None
        await sup.shutdown()

    run(scenario)


def test_a_load_that_takes_too_long_fails_on_the_clock() -> None:
    async def scenario() -> None:
        world = World(HOLD_10, rollout={"load_timeout_s": 30.0})
        sup = world.supervisor()
        world.registry.set_alias(CHALLENGER, "2")
        await sup.tick()
        world.clock.advance(29.0)
        await sup.tick()
        assert (await sup.status())["phase"] == "loading"
        world.clock.advance(2.0)
        await sup.tick()
        status = await sup.status()
        assert status["phase"] == "failed" and "30s" in status["reason"]
        await sup.shutdown()

    run(scenario)


def test_feedback_goes_to_the_arm_that_served_until_it_expires() -> None:
    async def scenario() -> None:
        world = World(HOLD_10, feedback={"ttl_s": 10.0})
        sup = world.supervisor()
        await world.canary(sup)
        await sup.ingest("ingress-1", {}, [("order-1", "2")])
        assert await sup.feedback("order-1", 12.5) == "ok"
        assert await sup.feedback("nope", 1.0) == "unknown"
        world.clock.advance(11.0)
        assert await sup.feedback("order-1", 1.0) == "expired"
        await sup.shutdown()

    run(scenario)


def test_operators_pause_resume_and_get_errors_not_exceptions() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        assert "error" in await sup.operate("promote", "cli")
        assert "unknown operation" in (await sup.operate("explode", "cli"))["error"]
        await world.canary(sup)
        paused = await sup.operate("pause", "admin-api", "look at it")
        assert (paused["phase"], paused["reason"]) == ("paused", "look at it")
        resumed = await sup.operate("resume", "admin-api")
        assert resumed["phase"] == "canary"
        table = await sup.set_weights(30.0, "split", actor="admin")
        assert table["challenger_weight"] == 30.0
        assert world.effects.manual == ["weights set to 30% split"]
        await sup.shutdown()

    run(scenario)


def test_the_control_loop_ticks_on_the_injected_clock() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await sup.get_table()  # any call starts the loop
        for _ in range(5):
            await asyncio.sleep(0)
        assert world.clock.sleeping == 1  # one tick ran, now waiting for the next
        world.registry.set_alias(CHALLENGER, "2")
        world.clock.advance(1.0)  # the tick period and the registry poll interval
        for _ in range(50):
            if (await sup.status())["phase"] == "loading":
                break
            await asyncio.sleep(0.01)  # the registry is read on worker threads
        assert (await sup.status())["phase"] == "loading"
        await sup.shutdown()

    run(scenario)
