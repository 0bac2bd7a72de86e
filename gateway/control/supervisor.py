"""The supervisor: a named, detached, restartable Ray actor that runs the rollout.

It owns the RoutingTable (published to every ingress and slot replica by long-poll,
`gateway.control.longpoll`), merges the window deltas that ingress replicas flush to it
(`gateway.control.evidence`), runs the judge, moves the rollout state machine
(`gateway.control.rollout`) and carries out each decision in a fixed order:

    traffic to the champion on every replica -> persist state -> registry aliases and tags
    -> audit record and MLflow run -> alert -> release the challenger's slot

Its state is persisted in the registry (`gateway.control.store`), so a restarted supervisor
resumes the same rollout step without flapping or acting twice.

The registry, the effect runner (`gateway.control.effects`), the resource sensor
(`gateway.control.sensors`) and the clock are constructor seams (`gateway.control.ports`):
the defaults are the real ones, tests pass in-memory fakes and a manual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any

import ray

from core.logs import ROOT, get_logger
from gateway.config import GatewayConfig, parse_config
from gateway.control import rollout as ro
from gateway.control.aggregator import aggregator_prefix, get_or_create_aggregator
from gateway.control.aliases import AliasChange, Change, Seen, describe, reconcile
from gateway.control.clock import Clock, SystemClock
from gateway.control.coalesce import Coalesced
from gateway.control.effects import EffectRunner
from gateway.control.evidence import Evidence
from gateway.control.feedback import RequestLedger
from gateway.control.longpoll import TableHost, next_version
from gateway.control.ports import Effects, RolloutRegistry, Sensors
from gateway.control.replica_loss import Fault, classify, judge_repeats
from gateway.control.reports import RolloutReports, load_timeline
from gateway.control.rollout_run import RolloutRun
from gateway.control.sensors import ResourceSensor, engine_profiles
from gateway.control.store import RolloutStore, encode_judge_state
from gateway.metrics import get_metrics
from gateway.report import render_report
from gateway.wire.routing import Mode, RoutingTable
from guards.context import ResourceReadings
from guards.verdict import Judge, Verdict, make_judge
from guards.window import ArmWindow
from model_registry.refs import CHAMPION, ModelRef
from model_registry.registry import ModelRegistry

__all__ = ["Supervisor", "get_or_create_supervisor", "get_supervisor", "kill_supervisor"]

log = get_logger(__name__)

# Events after which the judge's evidence is saved at once (not only every judge_persist_s).
PERSIST_EVENTS = frozenset({"step_advanced", "held", "hold_released", "paused", "resumed",
                            "alerted", "awaiting_promotion"})
ENDS_ROLLOUT = frozenset({"rolled_back", "load_failed", "restored", "superseded", "aborted"})


class Supervisor:
    """The control plane of one gateway app (see the module doc). An async Ray actor.

    `registry`, `effects`, `sensors` and `clock` default to the real ones (built from
    `config` and `tracking_uri`); Ray creates it with the first three arguments only.
    """

    def __init__(self, config: dict[str, Any], tracking_uri: str,
                 initial_table: dict[str, Any], *, registry: RolloutRegistry | None = None,
                 effects: Effects | None = None, sensors: Sensors | None = None,
                 clock: Clock | None = None) -> None:
        _log_to_stderr()
        self._cfg: GatewayConfig = parse_config(config)
        self._policy = self._cfg.rollout
        self._clock: Clock = SystemClock() if clock is None else clock
        self._registry: RolloutRegistry = ModelRegistry(
            self._cfg.model.name, tracking_uri=tracking_uri) if registry is None else registry
        self._effects: Effects = EffectRunner(
            self._cfg, self._registry, tracking_uri) if effects is None else effects
        self._sensors: Sensors = ResourceSensor(
            self._cfg.supervisor.resource_interval_s) if sensors is None else sensors
        self._store = RolloutStore(self._registry, self._cfg.app_name)
        first = RoutingTable.from_dict(initial_table)
        champion = first.slot_models.get(first.champion_slot)
        if champion is None:
            raise ValueError("initial table has no champion model")
        self._state = self._store.load_state(champion)
        self._tables = TableHost(
            ro.table_for(self._state, self._policy,
                         next_version(first.version, self._clock.time())), self._clock)
        self._loop_task: asyncio.Task[None] | None = None
        self._instance = uuid.uuid4().hex[:12]  # a restarted actor is another instance
        self._slot_reports: dict[str, dict[str, dict[str, Any]]] = {}
        self._evidence = Evidence()  # per version, since the rollout began
        self._last_judge_persist = 0.0
        self._judge: Judge | None = (self._restore_judge() if self._state.phase in ro.JUDGED
                                     else None)
        self._verdict: Verdict | None = None
        self._requests = RequestLedger(self._cfg.feedback.capacity, self._cfg.feedback.ttl_s)
        # The registry as last read (every registry_poll_s, one call for all aliases).
        self._seen = Seen.of(self._state)
        self._aliases: dict[str, str] | None = None
        self._aliases_at: float | None = None
        self._registry_error: str | None = None
        self._state_unsaved = False
        # Bumped around each decision's registry writes: a poll that overlapped one is stale.
        self._epoch = 0
        self._writing = 0
        self._last_poll = 0.0
        # Replica deaths in this rollout, by arm, and the replicas known when the
        # challenger's was lost (a new one reporting healthy ends the hold).
        self._losses: Counter[str] = Counter()
        self._lost_actors: set[str] = set()
        self._replicas_at_loss: set[str] = set()
        # Slot replicas' actor handles (from their reports), probed every tick for death.
        self._replica_actors: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._looks = Coalesced(self._judge_now)  # ingests' judge passes (`_judge_soon`)
        self._effects_chain: asyncio.Future[None] | None = None
        self._tracking_uri = tracking_uri
        self._reports = RolloutReports(self._cfg.model.name)  # for `report`
        get_metrics().phase(self._state.phase.value)

    # --- table long-poll -------------------------------------------------------------------

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._control_loop())

    async def get_table(self) -> dict[str, Any]:
        self._ensure_loop()
        return self._answer(self._tables.table)

    async def wait_for_table(self, known_version: int, timeout_s: float,
                             known_instance: str | None = None) -> dict[str, Any] | None:
        """Return the table as soon as its version is newer than `known_version`, or None
        after `timeout_s` (the caller simply asks again). A caller that names another
        supervisor instance (this one restarted) gets the table at once."""
        self._ensure_loop()
        if known_instance is not None and known_instance != self._instance:
            return self._answer(self._tables.table)
        table = await self._tables.wait_newer(known_version, timeout_s)
        return None if table is None else self._answer(table)

    def _answer(self, table: RoutingTable) -> dict[str, Any]:
        """A table as replicas get it: with this instance's id (a new one means a restart)."""
        return {**table.to_dict(), "supervisor": self._instance}

    async def _publish(self, table: RoutingTable) -> None:
        t = self._tables.publish(table)
        if t is None:  # nothing but the version would change
            return
        get_metrics().table(t.version, t.challenger_weight, t.mode.value)
        log.info("published routing table v%d: weight=%g mode=%s slots=%s", t.version,
                 t.challenger_weight, t.mode.value,
                 {s: (r.version if r else None) for s, r in t.slot_models.items()})

    # --- observations from ingress replicas -------------------------------------------------

    async def ingest(self, replica_id: str, deltas: dict[str, bytes],
                     request_ids: list[tuple[str, str]] | None = None) -> None:
        """Window deltas keyed by model version, flushed by an ingress replica. Returns once
        a judge pass has looked at them: passes are coalesced (`_judge_soon`), so under load
        judging costs a pass per pass's duration, not one per flush."""
        self._ensure_loop()
        for version, blob in deltas.items():
            self._evidence.add(version, ArmWindow.from_bytes(blob))
        self._requests.remember(request_ids or [], self._clock.time())
        if self._state.phase in ro.JUDGED:
            await self._judge_soon()

    async def ingest_hallucination(self, model_version: str, scores: list[float]) -> None:
        """Hallucination scores of sampled answers, from the evaluator actors."""
        self._ensure_loop()
        delta = ArmWindow()
        delta.record_hallucination_batch(scores)
        self._evidence.add(model_version, delta)
        if self._state.phase in ro.JUDGED:
            await self._judge_soon()

    async def feedback(self, request_id: str, value: float) -> str:
        """Attribute a business outcome to the model that served `request_id`:
        returns ok, unknown or expired."""
        status, version = self._requests.lookup(request_id, self._clock.time())
        if version is not None:
            delta = ArmWindow()
            delta.record_kpi(value)
            self._evidence.add(version, delta)
        return status

    # --- the judge ----------------------------------------------------------------------

    def _new_judge(self) -> Judge:
        ctx = self._cfg.judge
        # no sampling of LLM answers: the hallucination test can have no signal
        scoring = ctx.hallucination_scoring and self._cfg.hallucination.sample_rate > 0
        return make_judge(self._cfg.trigger_specs(), replace(ctx, hallucination_scoring=scoring))

    def _restore_judge(self) -> Judge:
        """The judge of the rollout being resumed, with the evidence it had persisted (so a
        restart neither resets the tests nor spends alpha twice), else a fresh one."""
        judge = self._new_judge()
        challenger = self._state.challenger
        if challenger is None:
            return judge
        try:
            saved = self._store.load_judge(challenger.version)
            if saved:
                judge.load(saved)
                for version, window in ((self._state.champion, judge.champion),
                                        (challenger, judge.challenger)):
                    if version is not None:
                        self._evidence.seed(version.version, window)
                log.info("resumed the judge's evidence for version %s", challenger.version)
        except Exception as exc:  # unreadable or made for another config: start afresh
            log.warning("judge state for version %s not restored (%s); starting afresh",
                        challenger.version, exc)
            judge = self._new_judge()
        return judge

    async def _persist_judge(self) -> None:
        judge, challenger = self._judge, self._state.challenger
        if judge is None or challenger is None or self._state.phase not in ro.JUDGED:
            return
        self._last_judge_persist = self._clock.monotonic()
        text = encode_judge_state(judge.state())  # here: the judge's state is live data
        try:
            await asyncio.to_thread(self._store.save_judge, challenger.version, text)
        except Exception as exc:  # the registry may be down: the next interval retries
            log.warning("could not persist the judge's evidence: %s", exc)

    def _arm_windows(self) -> tuple[ArmWindow, ArmWindow]:
        return self._evidence.arms(self._state.champion, self._state.challenger)

    async def _judge_soon(self) -> None:
        """A judge pass over everything merged so far: the next one to start, shared by every
        caller until it starts; it starts as soon as the running one (if any) ends. A lone
        flush is judged at once; flushes that arrive during a pass share one look."""
        await self._looks()

    async def _judge_now(self) -> None:
        """One judge pass (one look), now; passes never overlap."""
        async with self._lock:
            if self._state.phase not in ro.JUDGED:
                return
            if self._judge is None:
                self._judge = self._new_judge()
            d_champion, d_challenger = self._evidence.take_pending(self._state.champion,
                                                                   self._state.challenger)
            verdict = self._judge.observe(d_champion, d_challenger, self._resources())
            self._verdict = verdict
            self._effects.record_verdict_metrics(verdict)
            self._reports.on_look(self._state, ro.routing_for(self._state, self._policy)[0],
                                  self._judge, verdict, self._clock.time())
            tr = ro.observe(self._state, self._policy, verdict,
                            self._judge.challenger.n_requests, self._clock.time())
            await self._apply(tr)

    def _resources(self) -> ResourceReadings | None:
        state = self._state
        return self._sensors.readings(state, self._evidence.served(state.slot_models),
                                      engine_profiles(state, self._slot_reports))

    # --- transitions and their effects -------------------------------------------------------

    async def _apply(self, tr: ro.Transition) -> None:
        old, new = self._state, tr.state
        if tr.event is None and new == old:
            return
        event = tr.event
        before = self._tables.table.version
        ends_rollout = event is not None and event.name in ENDS_ROLLOUT
        if ends_rollout:
            # First, and at once: every replica routes by the new state, while every model
            # the old state served stays loaded, so no request in flight loses its slot.
            # The slot is released last, after the registry, audit and alert.
            kept = {s: new.slot_models.get(s) or old.slot_models.get(s)
                    for s in set(old.slot_models) | set(new.slot_models)}
            await self._publish(ro.table_for(replace(new, slot_models=kept), self._policy, 0))
        else:
            await self._publish(ro.table_for(new, self._policy, 0))
        self._state = new
        judge = self._judge
        if new.phase not in ro.JUDGED:
            self._judge = None
        get_metrics().phase(new.phase.value)
        if event is not None:
            self._effects.record_event_metrics(event)
            log.info(json.dumps({"event": "rollout." + event.name, "rollout_id": new.rollout_id,
                                 "phase_from": old.phase.value, "phase_to": new.phase.value,
                                 "actor": event.actor, "reason": event.reason}))
        # Durable before anything else runs: persisted state (a restart resumes exactly
        # here), registry aliases and tags, the audit record.
        self._epoch += 1
        self._writing += 1
        try:
            await self._save_state(new)
            if event is None:
                return
            if event.name in PERSIST_EVENTS:
                await self._persist_judge()
            await asyncio.to_thread(self._effects.record, old, new, event,
                                    self._tables.table.version, before)
        finally:
            self._writing -= 1
            self._epoch += 1
        if event.name in ENDS_ROLLOUT or event.name == "rollout_started":
            self._losses.clear()
        timeline = self._reports.on_transition(
            old, new, event, self._clock.time(), ro.routing_for(new, self._policy)[0], judge)
        # The rest (alerts, seconds of MLflow and report work) runs behind the control loop,
        # one transition after another, so the loop keeps judging and watching meanwhile.
        champion, challenger = self._arm_windows()
        previous = self._effects_chain
        self._effects_chain = asyncio.ensure_future(self._after(
            previous, old, new, event, champion.copy(), challenger.copy(), ends_rollout,
            timeline))

    async def _save_state(self, state: ro.RolloutState) -> None:
        try:
            await asyncio.to_thread(self._store.save_state, state)
            self._state_unsaved = False
        except Exception as exc:  # the registry is down: saved when it is back
            self._state_unsaved = True
            log.warning("could not persist rollout state (saved when the registry is back): "
                        "%s", exc)

    async def _after(self, previous: asyncio.Future[None] | None, old: ro.RolloutState,
                     new: ro.RolloutState, event: ro.Event, champion: ArmWindow,
                     challenger: ArmWindow, release: bool,
                     timeline: dict[str, Any] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await asyncio.to_thread(self._effects.notify_and_track, old, new, event, champion,
                                challenger, timeline)
        if release:  # last: release the challenger's slot (whatever the state is by now)
            await self._publish(ro.table_for(self._state, self._policy, 0))

    async def effects_done(self) -> None:
        """Wait until the effects of every decision so far (alerts, MLflow run, the slot
        release after a rollback) have run; their failures are logged, not raised."""
        while (chain := self._effects_chain) is not None:
            await asyncio.gather(chain, return_exceptions=True)
            if chain is self._effects_chain:
                return

    # --- the control loop ------------------------------------------------------------------

    async def _control_loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor tick failed")
            await self._clock.sleep(self._cfg.supervisor.tick_s)

    async def tick(self) -> None:
        """One round of the control loop (every `supervisor.tick_s`): watch the challenger
        alias, judge, time out a load, release an old champion."""
        now = self._clock.time()
        if now - self._last_poll >= self._cfg.supervisor.registry_poll_s:
            self._last_poll = now
            await self._watch_registry()
        phase = self._state.phase
        champion, challenger = self._arm_windows()
        self._effects.record_arm_metrics(self._state, champion, challenger, self._resources(),
                                         self._sensors.device_label())
        if phase is ro.Phase.LOADING:
            await self._check_loading(now)
        elif phase in ro.JUDGED:
            await self._probe_challenger_replicas()
            await self._check_replica_recovery(now)
            await self._judge_now()
            if self._clock.monotonic() - self._last_judge_persist >= \
                    self._cfg.supervisor.judge_persist_s:
                await self._persist_judge()
        elif phase is ro.Phase.PROMOTED:
            await self._apply(ro.release_old_champion(self._state, self._policy, now))

    async def _watch_registry(self) -> None:
        """Read every alias (one registry call) and act on what changed (see
        `gateway.control.aliases`); an unreachable registry holds the rollout."""
        epoch, now = self._epoch, self._clock.time()
        try:
            aliases = dict(await asyncio.to_thread(self._registry.aliases))
        except Exception as exc:
            await self._registry_unreachable(exc, now)
            return
        if not await self._registry_reachable(now):
            return
        self._aliases, self._aliases_at = aliases, now
        if epoch != self._epoch or self._writing or self._effects.registry_pending():
            return  # a decision moved the registry meanwhile: the next poll reads it anew
        state = self._state
        if state.champion is not None and aliases.get(CHAMPION) == state.champion.version:
            self._seen = replace(self._seen, champion=state.champion.version)
        change = reconcile(state, aliases, self._seen)
        if change is not None:
            await self._on_alias_change(change, now)

    async def _registry_unreachable(self, exc: Exception, now: float) -> None:
        if self._registry_error is None:
            log.warning("model registry unreachable; the rollout holds: %s", exc)
        self._registry_error = f"{type(exc).__name__}: {exc}"[:500]
        async with self._lock:
            await self._apply(ro.hold_for(
                self._state, ro.HoldKind.REGISTRY, "model registry unreachable "
                f"({type(exc).__name__}); the rollout holds until it is back", now))

    async def _registry_reachable(self, now: float) -> bool:
        """After an outage: write what was deferred, then release the hold. False while
        writes still fail."""
        if (self._registry_error is None and not self._state_unsaved
                and not self._effects.registry_pending()):
            return True
        waiting = await asyncio.to_thread(self._effects.retry_registry)
        if self._state_unsaved:
            await self._save_state(self._state)
        if waiting or self._state_unsaved:
            return False
        if self._registry_error is not None:
            log.info("model registry reachable again; the rollout resumes")
        self._registry_error = None
        async with self._lock:
            await self._apply(ro.release_hold(
                self._state, ro.HoldKind.REGISTRY,
                "model registry reachable again; the step clock resumed", now))
        return True

    async def _on_alias_change(self, change: AliasChange, now: float) -> None:
        log.info("registry: %s", change.reason)
        if change.change is Change.CHAMPION:
            self._seen = replace(self._seen, champion=change.version)
            await self._champion_moved(change, now)
            return
        self._seen = replace(self._seen, challenger=change.version)
        if change.change in (Change.SUPERSEDE, Change.ABORT):
            async with self._lock:
                state = self._state
                if state.phase in ro.ACTIVE:  # (it may have ended meanwhile)
                    await self._apply(ro.supersede(state, change.version, now)
                                      if change.version is not None
                                      else ro.abort(state, now, change.reason))
        if change.version is not None and change.change in (Change.START, Change.SUPERSEDE):
            await self._start_challenger(change.version)

    async def _start_challenger(self, version: str) -> None:
        verdict = await asyncio.to_thread(self._store.verdict, version)
        if verdict is not None:
            log.info("challenger alias points at version %s, already judged (%s); ignoring",
                     version, verdict)
            return
        ref = await asyncio.to_thread(self._registry.get_version, version)
        await self._start(ref)

    async def _champion_moved(self, change: AliasChange, now: float) -> None:
        """The champion alias was moved by hand: serve that version (a running rollout is
        aborted, unless the new champion is its challenger: then that is promoted)."""
        version = change.version
        assert version is not None
        async with self._lock:
            state = self._state
            challenger = state.challenger.version if state.challenger else None
            if state.phase in ro.JUDGED and challenger == version:
                await self._apply(ro.promote(state, now, "registry",
                                             f"{change.reason}: the challenger; promoted"))
                return
            previous = state.previous_champion
            if (state.phase is ro.Phase.PROMOTED and previous is not None
                    and previous.version == version
                    and state.slot_models.get(state.free_slot) == previous):
                await self._apply(ro.rollback(state, now, "registry", f"{change.reason}: the "
                                              "previous champion, still loaded"))
                return
            if state.phase in ro.ACTIVE:
                await self._apply(ro.abort(state, now, f"{change.reason}; the rollout is "
                                           "aborted"))
        try:
            ref = await asyncio.to_thread(self._registry.get_version, version)
        except Exception as exc:
            log.error("champion alias points at version %s, which cannot be read: %s",
                      version, exc)
            return
        await self._start(ref, replaces_champion=True)

    async def _start(self, ref: ModelRef, replaces_champion: bool = False) -> None:
        async with self._lock:
            if self._state.phase in ro.ACTIVE:
                log.info("version %s waits: a rollout is %s", ref.version,
                         self._state.phase.value)
                return
            self._evidence.clear()
            self._slot_reports.pop(self._state.free_slot, None)
            kind = "champion-" if replaces_champion else ""
            rollout_id = f"{ref.name}-v{ref.version}-{kind}{uuid.uuid4().hex[:8]}"
            await self._apply(ro.start(self._state, ref, rollout_id, self._clock.time(),
                                       replaces_champion))

    async def _check_loading(self, now: float) -> None:
        state = self._state
        slot, want = state.free_slot, state.challenger
        reports = [r for r in self._slot_reports.get(slot, {}).values()
                   if want and r.get("model") and r["model"]["version"] == want.version]
        failed = [r for r in reports if not r.get("healthy")]
        async with self._lock:
            if failed:
                await self._apply(ro.load_failed(state, str(failed[0].get("error")), now))
            elif len([r for r in reports if r.get("healthy")]) >= self._cfg.slots.min_replicas():
                self._evidence.clear()
                self._judge = self._new_judge()
                await self._apply(ro.loaded(state, self._policy, now))
            elif now - state.phase_started_at > self._policy.load_timeout_s:
                await self._apply(ro.load_failed(
                    state, f"challenger not healthy within {self._policy.load_timeout_s:g}s",
                    now))

    async def report_slot(self, slot: str, replica_id: str, report: dict[str, Any]) -> None:
        """A model-slot replica reports what it has loaded, whether it is healthy, its PID."""
        self._ensure_loop()
        actor = report.pop("actor", None)
        if actor is not None:
            self._replica_actors.setdefault(slot, {})[replica_id] = actor
        self._slot_reports.setdefault(slot, {})[replica_id] = report
        self._sensors.watch_pid(slot, replica_id, report.get("pid"))
        state = self._state
        if state.phase is ro.Phase.LOADING and slot == state.free_slot:
            await self._check_loading(self._clock.time())
        elif (ro.HoldKind.REPLICA_LOST in state.holds and slot == state.free_slot
              and replica_id not in self._replicas_at_loss and report.get("healthy")
              and state.challenger is not None and report.get("model")
              and report["model"].get("version") == state.challenger.version):
            async with self._lock:
                await self._apply(ro.release_hold(
                    self._state, ro.HoldKind.REPLICA_LOST, "the challenger's lost replica was "
                    "replaced and is healthy; its traffic and the step clock resumed",
                    self._clock.time()))

    async def slot_lost(self, slot: str, version: str, actor_id: str, message: str,
                        creation_failed: bool = False) -> None:
        """An ingress replica saw a slot replica die under a call (Ray's `message` says why;
        each ingress replica reports a death once). The challenger's: an infrastructure
        loss holds the rollout, challenger at 0%, until Serve's replacement reports healthy
        (or `rollout.load_timeout_s` passes); a crash of its model rolls it back."""
        self._ensure_loop()
        if actor_id and actor_id in self._lost_actors:
            return  # another ingress replica saw the same death
        if len(self._lost_actors) > 1024:
            self._lost_actors.clear()
        self._lost_actors.add(actor_id)
        state, now = self._state, self._clock.time()
        arm = "challenger" if slot == state.free_slot else "champion"
        self._losses[arm] += 1
        loss = classify(message, creation_failed)
        lines = [line for line in message.splitlines() if line.strip()]
        log.warning(json.dumps({"event": "replica_lost", "slot": slot, "arm": arm,
                                "version": version, "fault": loss.fault.value,
                                "cause": loss.cause, "ray": lines[-1][:300] if lines else ""}))
        if (arm != "challenger" or state.phase not in ro.JUDGED or state.challenger is None
                or state.challenger.version != version):
            return  # the champion's: Serve replaces it, the ingress retried the calls
        loss = judge_repeats(loss, self._losses["challenger"], self._losses["champion"])
        async with self._lock:
            if loss.fault is Fault.MODEL:
                await self._apply(ro.rollback(self._state, now, "supervisor",
                                              f"challenger replica crashed: {loss.cause}"))
                return
            self._replicas_at_loss = set(self._slot_reports.get(slot, {}))
            await self._apply(ro.hold_for(
                self._state, ro.HoldKind.REPLICA_LOST, f"challenger replica lost: "
                f"{loss.cause}; held at 0% while Serve replaces it (not the model's fault)",
                now))

    async def _probe_challenger_replicas(self) -> None:
        """Ask each challenger replica's actor whether it is alive (a no-op call). A dead one
        fails at once with Ray's reason, also when no request was on it (then Serve just
        queues the next calls for its replacement, and they would time out against the
        model); it is handled as an ingress's report of the loss would be."""
        state = self._state
        slot = state.free_slot
        actors = self._replica_actors.get(slot)
        if not actors or state.challenger is None or ro.HoldKind.REPLICA_LOST in state.holds:
            return
        version = state.challenger.version
        items = list(actors.items())
        results = await asyncio.gather(
            *(asyncio.wait_for(_ready(actor), self._cfg.supervisor.tick_s * 4)
              for _, actor in items), return_exceptions=True)
        for (replica_id, _), result in zip(items, results, strict=True):
            if isinstance(result, BaseException) and _is_actor_death(result):
                actors.pop(replica_id, None)
                self._slot_reports.get(slot, {}).pop(replica_id, None)
                await self.slot_lost(slot, version, str(getattr(result, "actor_id", "") or
                                                        replica_id), str(result),
                                     bool(getattr(result, "actor_init_failed", False)))

    async def _check_replica_recovery(self, now: float) -> None:
        """A lost challenger replica that is not replaced in time ends the rollout."""
        state = self._state
        if (ro.HoldKind.REPLICA_LOST not in state.holds or state.holds_since is None
                or now - state.holds_since <= self._policy.load_timeout_s):
            return
        async with self._lock:
            await self._apply(ro.rollback(
                self._state, now, "supervisor", "the challenger's lost replica was not replaced "
                f"within {self._policy.load_timeout_s:g}s (rollout.load_timeout_s)"))

    # --- operators ----------------------------------------------------------------------

    async def operate(self, op: str, actor: str, reason: str = "") -> dict[str, Any]:
        """promote | rollback | pause | resume, from the admin API or the CLI."""
        self._ensure_loop()
        now = self._clock.time()
        async with self._lock:
            state = self._state
            _, challenger = self._arm_windows()
            try:
                if op == "promote":
                    tr = ro.promote(state, now, actor, reason or f"promoted by {actor}")
                elif op == "rollback":
                    tr = ro.rollback(state, now, actor, reason or f"rolled back by {actor}")
                elif op == "pause":
                    tr = ro.pause(state, actor, reason or f"paused by {actor}")
                elif op == "resume":
                    tr = ro.resume(state, now, actor, challenger.n_requests)
                else:
                    return {"error": f"unknown operation {op!r}"}
            except ro.TransitionError as exc:
                return {"error": str(exc)}
            await self._apply(tr)
        return await self.status()

    async def status(self) -> dict[str, Any]:
        self._ensure_loop()
        state, table = self._state, self._tables.table
        champion, challenger = self._arm_windows()
        return {
            "phase": state.phase.value, "rollout_id": state.rollout_id,
            "step": state.step if state.phase in ro.JUDGED else None,
            "steps": [vars(s) for s in self._policy.steps],
            "paused_phase": state.paused_phase.value if state.paused_phase else None,
            "awaiting_promotion": state.awaiting_promotion, "reason": state.reason,
            "held": state.held_since is not None or bool(state.holds),
            "held_since": state.held_since if state.held_since is not None else state.holds_since,
            "holds": list(state.holds),
            "registry": {
                "aliases": self._aliases, "read_at": self._aliases_at,
                "reachable": self._registry_error is None, "error": self._registry_error,
                "pending_writes": self._effects.registry_pending(),
                "notes": describe(state, self._aliases) if self._aliases is not None else []},
            "replica_losses": dict(self._losses),
            "judge": ({"looks_judged": self._judge.looks, "tests": self._judge.n_tests,
                       "alpha_per_test": self._judge.alpha_per_test}
                      if self._judge is not None else None),
            "table": table.to_dict(),
            "champion": state.champion.to_dict() if state.champion else None,
            "challenger": state.challenger.to_dict() if state.challenger else None,
            "previous_champion": (state.previous_champion.to_dict()
                                  if state.previous_champion else None),
            "requests": {"champion": champion.n_requests, "challenger": challenger.n_requests},
            # the count the step gate uses: the judge's (requests it has looked at)
            "progress": self._progress(self._judge.challenger.n_requests
                                       if self._judge is not None else challenger.n_requests),
            "hallucination_scores": {"champion": champion.hallucination_n,
                                     "challenger": challenger.hallucination_n},
            "verdict": self._verdict.to_dict() if self._verdict else None,
            "slots": self._slot_reports,
        }

    def _progress(self, challenger_requests: int) -> dict[str, Any] | None:
        """The current step's gate and how far along it is (None outside shadow/canary)."""
        state = self._state
        gate: Any
        if state.phase is ro.Phase.SHADOW and self._policy.shadow is not None:
            gate = self._policy.shadow
        elif state.phase is ro.Phase.CANARY and state.step < len(self._policy.steps):
            gate = self._policy.steps[state.step]
        else:
            return None
        return {"requests": max(0, challenger_requests - state.step_base_requests),
                "min_requests": gate.min_requests,
                "elapsed_s": max(0.0, self._clock.time() - state.phase_started_at),
                "min_duration_s": gate.min_duration_s,
                "weight": getattr(gate, "weight", 0.0)}

    async def report(self, rollout_id: str | None = None) -> str | None:
        """The rollout report's HTML: the current or last rollout's (None), or that
        rollout's, from memory or else from its MLflow run; None when there is none."""
        data = self._reports.get(rollout_id)
        if data is None and rollout_id is not None:
            data = await asyncio.to_thread(self._stored_timeline, rollout_id)
        if data is None:
            return None
        return await asyncio.to_thread(render_report, data)

    def _stored_timeline(self, rollout_id: str) -> dict[str, Any] | None:
        try:
            run = RolloutRun.find(self._tracking_uri, self._cfg.supervisor.rollout_experiment,
                                  rollout_id)
            return load_timeline(run) if run is not None else None
        except Exception as exc:  # MLflow down, or an unreadable record: no report
            log.warning("report of rollout %s: its MLflow record is unreadable: %s",
                        rollout_id, exc)
            return None

    async def aggregator_for(self, node_id: str) -> Any:
        """Node `node_id`'s aggregator (`control.aggregation: node`): the ingress replicas
        there flush to it and long-poll it instead of this actor."""
        c = self._cfg.control
        return await asyncio.to_thread(
            get_or_create_aggregator, c.supervisor_name, c.namespace, node_id,
            c.flush_interval_s, c.urgent_flush_s, c.long_poll_timeout_s)

    async def set_weights(self, weight: float, mode: str, actor: str = "admin") -> dict[str, Any]:
        """Manual override of the live table (kept until the next rollout transition)."""
        self._ensure_loop()
        table = self._tables.table.evolve(challenger_weight=weight, mode=Mode(mode))
        await self._publish(table)
        self._effects.audit_manual(self._state, actor, f"weights set to {weight:g}% {mode}",
                                   self._tables.table.version)
        return self._tables.table.to_dict()

    async def shutdown(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        await asyncio.to_thread(self._effects.close)
        await asyncio.to_thread(self._sensors.close)


async def _ready(actor: Any) -> Any:
    return await actor.__ray_ready__.remote()


def _is_actor_death(exc: BaseException) -> bool:
    from ray.exceptions import RayActorError

    return isinstance(exc, RayActorError)


def _log_to_stderr() -> None:
    """Rollout events as JSON lines on the actor's stderr, which the Ray dashboard shows."""
    root = logging.getLogger(ROOT)
    root.setLevel(logging.INFO)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)


HEAD_RESOURCE = "node:__internal_head__"


def get_or_create_supervisor(cfg: GatewayConfig, tracking_uri: str,
                             initial_table: RoutingTable) -> Any:
    """The one supervisor actor of a gateway app: created if missing, else reused. Ray
    restarts it if it dies; it then resumes from the state persisted in the registry."""
    import dataclasses

    actor_cls = ray.remote(Supervisor)
    # Every Ray head node has this resource; a sliver of it pins the actor there.
    placement = ({"resources": {HEAD_RESOURCE: 0.001}}
                 if cfg.control.supervisor_placement == "head" else {})
    return actor_cls.options(
        name=cfg.control.supervisor_name, namespace=cfg.control.namespace,
        lifetime="detached", get_if_exists=True, num_cpus=0, max_restarts=-1,
        max_task_retries=-1, max_concurrency=10_000, **placement,
    ).remote(dataclasses.asdict(cfg), tracking_uri, initial_table.to_dict())


def get_supervisor(name: str, namespace: str, wait_s: float = 10.0) -> Any:
    """The supervisor's handle; waits briefly, since its creation is asynchronous."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return ray.get_actor(name, namespace=namespace)
        except ValueError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def kill_supervisor(name: str, namespace: str) -> None:
    """The supervisor and its node aggregators (detached too: they would outlive it)."""
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    prefix = aggregator_prefix(name)
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == namespace and actor["name"].startswith(prefix):
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(actor["name"], namespace=namespace), no_restart=True)
