"""The supervisor against the registry and the infrastructure: aliases moved by hand during
a rollout, a registry that goes away and comes back, slot replicas that die."""

from __future__ import annotations

from gateway.control.replica_loss import REPEATED_LOSSES
from model_registry.refs import CHALLENGER, CHAMPION
from tests.unit.gateway.control.supervisor_fakes import slot_report
from tests.unit.gateway.control.test_supervisor import HOLD_10, STAY_AT_50, World, run

SIGKILL = ("The actor died unexpectedly before finishing this task.\nThe actor is dead because "
           "its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail: "
           "Worker unexpectedly exits with a connection error code 2. End of file. Some common "
           "causes include: (1) the process was killed by the OOM killer due to high memory "
           "usage, (2) ray stop --force was called, or (3) the worker crashed unexpectedly.")
MEMORY_MONITOR = ("The actor is dead because its worker process has died. Worker exit type: "
                  "USER_ERROR Worker exit detail: Task was killed due to the node running low "
                  "on memory.")


async def poll(world: World, sup) -> dict:  # type: ignore[no-untyped-def]
    """One registry poll (registry_poll_s is 1 s) and the control tick around it."""
    world.clock.advance(1.0)
    await sup.tick()
    await sup.effects_done()
    return await sup.status()


def test_moving_the_challenger_alias_supersedes_the_running_rollout() -> None:
    async def scenario() -> None:
        world = World(STAY_AT_50)
        v3 = world.registry.add("3")
        sup = world.supervisor()
        await world.canary(sup)
        await world.flush(sup)
        world.registry.set_alias(CHALLENGER, "3")
        status = await poll(world, sup)
        # v2 ended with verdict `superseded`, v3 is loading in its place
        assert status["phase"] == "loading" and status["challenger"]["version"] == "3"
        assert world.effects.events[-2:] == ["superseded", "rollout_started"]
        superseded = world.effects.records[-2]
        assert "moved to version 3" in superseded.event.reason
        assert superseded.event.actor == "registry"
        assert status["table"]["slot_models"]["b"]["version"] == "3"
        await sup.report_slot("b", "replica-2", slot_report(v3))
        assert (await sup.status())["phase"] == "canary"
        # and the next poll does not act again
        await poll(world, sup)
        assert world.effects.events.count("superseded") == 1
        await sup.shutdown()

    run(scenario)


def test_deleting_the_challenger_alias_aborts_the_rollout() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await world.canary(sup)
        world.registry.delete_alias(CHALLENGER)
        status = await poll(world, sup)
        assert status["phase"] == "rolled_back"
        assert world.effects.events[-1] == "aborted"
        assert status["table"]["challenger_weight"] == 0.0
        assert status["table"]["slot_models"]["b"] is None  # released
        await poll(world, sup)
        assert world.effects.events.count("aborted") == 1
        await sup.shutdown()

    run(scenario)


def test_moving_the_champion_by_hand_aborts_the_rollout_and_serves_the_new_champion() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        v3 = world.registry.add("3")
        world.registry.set_alias(CHAMPION, "1")
        sup = world.supervisor()
        await world.canary(sup)
        world.registry.set_alias(CHAMPION, "3")
        status = await poll(world, sup)
        assert world.effects.events[-2:] == ["aborted", "champion_loading"]
        assert "champion alias moved by hand to version 3" in world.effects.records[-2].event.reason
        # v1 still takes every request while v3 loads in the free slot
        assert status["phase"] == "loading" and status["table"]["challenger_weight"] == 0.0
        assert status["champion"]["version"] == "1"
        assert status["table"]["slot_models"]["b"]["version"] == "3"
        await sup.report_slot("b", "replica-3", slot_report(v3))
        served = await sup.status()
        assert served["phase"] == "promoted" and served["champion"]["version"] == "3"
        assert served["table"]["champion_slot"] == "b"
        assert world.effects.records[-1].event.actor == "registry"
        # the registry and what is served agree: nothing more happens
        await poll(world, sup)
        assert world.effects.events.count("champion_loading") == 1
        notes = (await sup.status())["registry"]["notes"]
        # (the fake effects leave the challenger alias on v2; the real ones delete it)
        assert not [n for n in notes if n.startswith("champion")], notes
        await sup.shutdown()

    run(scenario)


def test_moving_the_champion_to_the_challenger_promotes_it() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        world.registry.set_alias(CHAMPION, "1")
        sup = world.supervisor()
        await world.canary(sup)
        world.registry.set_alias(CHAMPION, "2")
        status = await poll(world, sup)
        assert status["phase"] == "promoted" and status["champion"]["version"] == "2"
        assert world.effects.events[-1] == "promoted"
        await sup.shutdown()

    run(scenario)


def test_status_shows_the_registrys_aliases_beside_what_is_served() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        world.registry.add("3")
        world.registry.set_alias(CHAMPION, "1")
        sup = world.supervisor()
        await world.canary(sup)
        status = await poll(world, sup)
        assert status["registry"]["aliases"] == {"champion": "1", "challenger": "2"}
        assert status["registry"]["reachable"] and status["registry"]["notes"] == []
        await sup.shutdown()

    run(scenario)


def test_an_unreachable_registry_holds_the_rollout_and_it_resumes_when_back() -> None:
    async def scenario() -> None:
        world = World([{"weight": 20.0, "min_requests": 100, "min_duration_s": 3.0},
                       {"weight": 50.0, "min_requests": 10**9, "min_duration_s": 10**6}])
        sup = world.supervisor()
        await world.canary(sup)
        world.registry.down = True
        status = await poll(world, sup)
        assert status["held"] and status["holds"] == ["registry_unreachable"]
        assert not status["registry"]["reachable"]
        # evidence keeps coming, the step's time passes: no step while held
        for _ in range(6):
            world.clock.advance(1.0)
            await world.flush(sup)
            await sup.tick()
        assert (await sup.status())["step"] == 0
        # a breach still rolls back while the registry is down (routing needs no registry)
        world.registry.down = False
        status = await poll(world, sup)
        assert status["holds"] == [] and status["registry"]["reachable"]
        assert world.effects.events[-2:] == ["held", "hold_released"]
        status = await poll(world, sup)
        for _ in range(8):
            if status["step"] == 1:
                break
            world.clock.advance(1.0)
            await world.flush(sup)
            status = await sup.status()
        assert status["step"] == 1, status
        await sup.shutdown()

    run(scenario)


def test_a_challenger_replica_lost_to_the_infrastructure_holds_at_zero_until_replaced() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await world.canary(sup)
        await sup.slot_lost("b", "2", "actor-1", SIGKILL, False)
        await sup.slot_lost("b", "2", "actor-1", SIGKILL, False)  # a second ingress's report
        status = await sup.status()
        assert status["phase"] == "canary" and status["holds"] == ["challenger_replica_lost"]
        assert status["table"]["challenger_weight"] == 0.0
        assert status["table"]["slot_models"]["b"]["version"] == "2"  # Serve reloads it
        assert "not the model's fault" in status["reason"]
        assert world.effects.events.count("held") == 1
        # the old replica's report does not end the hold; the replacement's does
        await sup.report_slot("b", "replica-1", slot_report(world.v2))
        assert (await sup.status())["holds"] == ["challenger_replica_lost"]
        await sup.report_slot("b", "replica-9", slot_report(world.v2))
        status = await sup.status()
        assert status["holds"] == [] and status["table"]["challenger_weight"] == 10.0
        assert status["phase"] == "canary"
        await sup.shutdown()

    run(scenario)


def test_a_replica_its_model_crashed_counts_against_the_model() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await world.canary(sup)
        await sup.slot_lost("b", "2", "actor-1", MEMORY_MONITOR, False)
        status = await sup.status()
        assert status["phase"] == "rolled_back"
        assert "challenger replica crashed: out of memory" in status["reason"]
        await sup.shutdown()

    run(scenario)


def test_repeated_losses_of_only_the_challengers_replicas_are_the_models_fault() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await world.canary(sup)
        for i in range(REPEATED_LOSSES):
            await sup.slot_lost("b", "2", f"actor-{i}", SIGKILL, False)
            if i < REPEATED_LOSSES - 1:
                await sup.report_slot("b", f"replica-new-{i}", slot_report(world.v2))
                assert (await sup.status())["phase"] == "canary"
        status = await sup.status()
        assert status["phase"] == "rolled_back"
        assert f"died {REPEATED_LOSSES} times" in status["reason"]
        await sup.shutdown()

    run(scenario)


def test_a_lost_replica_not_replaced_in_time_ends_the_rollout() -> None:
    async def scenario() -> None:
        world = World(HOLD_10, rollout={"load_timeout_s": 30.0})
        sup = world.supervisor()
        await world.canary(sup)
        await sup.slot_lost("b", "2", "actor-1", SIGKILL, False)
        world.clock.advance(31.0)
        await sup.tick()
        status = await sup.status()
        assert status["phase"] == "rolled_back"
        assert "not replaced within 30s" in status["reason"]
        await sup.shutdown()

    run(scenario)


def test_a_champion_replica_lost_does_not_touch_the_rollout() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await world.canary(sup)
        await sup.slot_lost("a", "1", "actor-7", SIGKILL, False)
        status = await sup.status()
        assert status["phase"] == "canary" and status["holds"] == []
        assert status["replica_losses"] == {"champion": 1}
        await sup.shutdown()

    run(scenario)


def test_a_breach_rolls_back_while_the_registry_is_down() -> None:
    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        await world.canary(sup)
        world.registry.down = True
        await poll(world, sup)
        await world.flush(sup, challenger_err=0.5)
        status = await sup.status()
        assert status["phase"] == "rolled_back" and status["table"]["challenger_weight"] == 0
        await sup.shutdown()

    run(scenario)


class _Method:
    def __init__(self, actor: _Actor) -> None:
        self._actor = actor

    def remote(self):  # type: ignore[no-untyped-def]
        async def ready() -> bool:
            if self._actor.dead is not None:
                raise self._actor.dead
            return True

        return ready()


class _Actor:
    """A slot replica's actor handle: `__ray_ready__` answers until the actor dies."""

    def __init__(self) -> None:
        self.dead: BaseException | None = None
        self.__ray_ready__ = _Method(self)


def test_a_challenger_replica_that_dies_with_no_request_on_it_is_noticed_by_the_probe() -> None:
    from ray.exceptions import ActorDiedError

    async def scenario() -> None:
        world = World(HOLD_10)
        sup = world.supervisor()
        world.registry.set_alias(CHALLENGER, "2")
        await sup.tick()
        actor = _Actor()
        await sup.report_slot("b", "replica-1", {**slot_report(world.v2), "actor": actor})
        status = await sup.status()
        assert status["phase"] == "canary" and "actor" not in status["slots"]["b"]["replica-1"]
        world.clock.advance(0.25)
        await sup.tick()
        assert (await sup.status())["holds"] == []  # alive
        actor.dead = ActorDiedError()
        world.clock.advance(0.25)
        await sup.tick()
        status = await sup.status()
        assert status["holds"] == ["challenger_replica_lost"], status["reason"]
        assert status["table"]["lost_slots"] == ["b"]
        assert status["table"]["challenger_weight"] == 0.0
        await sup.report_slot("b", "replica-2", {**slot_report(world.v2), "actor": _Actor()})
        status = await sup.status()
        assert status["holds"] == [] and status["table"]["lost_slots"] == []
        assert status["table"]["challenger_weight"] == 10.0
        await sup.shutdown()

    run(scenario)
