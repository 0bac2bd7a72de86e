"""The supervisor: a named, detached, restartable Ray actor that runs the rollout.

It owns the RoutingTable (published to every ingress and slot replica by long-poll), merges
the window deltas that ingress replicas flush to it, runs the judge, moves the rollout state
machine (`gateway.control.rollout`) and carries out each decision in a fixed order:

    traffic to the champion on every replica -> persist state -> registry aliases and tags
    -> audit record and MLflow run -> alert -> release the challenger's slot

Its state is persisted in the registry (a model tag), so a restarted supervisor resumes the
same rollout step without flapping or acting twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
import zlib
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import ray

from core.logs import ROOT, get_logger
from gateway.config import GatewayConfig, parse_config
from gateway.control import rollout as ro
from gateway.control.effects import EffectRunner
from gateway.metrics import get_metrics
from gateway.wire.routing import Mode, RoutingTable
from guards.verdict import Judge, Verdict, make_judge
from guards.window import ArmWindow
from model_registry.refs import CHALLENGER, ModelRef
from model_registry.registry import ModelRegistry

log = get_logger(__name__)

STATE_TAG = "gateway.rollout_state"
VERDICT_TAG = "gateway.verdict"
# The judge's evidence (every e-process, the matched strata), on the challenger's version:
# version tags are unbounded text in MLflow's SQL store, registered-model tags are not.
JUDGE_TAG = "gateway.judge_state"
PERSIST_EVENTS = frozenset({"step_advanced", "held", "hold_released", "paused", "resumed",
                            "alerted", "awaiting_promotion"})


def encode_judge_state(state: dict[str, Any]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(state, separators=(",", ":")).encode(),
                                          6)).decode()


def decode_judge_state(text: str) -> dict[str, Any]:
    data = json.loads(zlib.decompress(base64.b64decode(text)))
    if not isinstance(data, dict):
        raise ValueError("judge state is not an object")
    return data


def next_version(previous: int) -> int:
    """Table versions are wall-clock milliseconds, forced monotonic, so a restarted
    supervisor never publishes a version that replicas already consider old."""
    return max(previous + 1, time.time_ns() // 1_000_000)


class Supervisor:
    """The control plane of one gateway app (see the module doc). An async Ray actor."""

    def __init__(self, config: dict[str, Any], tracking_uri: str,
                 initial_table: dict[str, Any]) -> None:
        _log_to_stderr()
        self._cfg: GatewayConfig = parse_config(config)
        self._policy = self._cfg.rollout
        self._state_tag = f"{STATE_TAG}.{self._cfg.app_name}"
        self._registry = ModelRegistry(self._cfg.model.name, tracking_uri=tracking_uri)
        self._effects = EffectRunner(self._cfg, self._registry, tracking_uri)
        self._state = self._restore_state(RoutingTable.from_dict(initial_table))
        self._table = ro.table_for(self._state, self._policy,
                                   next_version(int(initial_table["version"])))
        self._changed: asyncio.Condition | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._slot_reports: dict[str, dict[str, dict[str, Any]]] = {}
        self._windows: dict[str, ArmWindow] = {}  # per version, since the rollout began
        self._pending: dict[str, ArmWindow] = {}  # per version, not judged yet (next look)
        self._judge_tag = f"{JUDGE_TAG}.{self._cfg.app_name}"
        self._last_judge_persist = 0.0
        self._judge: Judge | None = (self._restore_judge() if self._state.phase in ro.JUDGED
                                     else None)
        self._verdict: Verdict | None = None
        self._requests: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._seen_challenger: str | None = None
        self._last_poll = 0.0
        self._lock = asyncio.Lock()
        self._effects_chain: asyncio.Future[None] | None = None
        get_metrics().phase(self._state.phase.value)

    # --- state persistence ---------------------------------------------------------------

    def _restore_state(self, initial: RoutingTable) -> ro.RolloutState:
        champion = initial.slot_models.get(initial.champion_slot)
        if champion is None:
            raise ValueError("initial table has no champion model")
        raw = self._registry.get_model_tags().get(self._state_tag)
        if raw:
            try:
                state = ro.RolloutState.from_dict(json.loads(raw))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("ignoring unreadable persisted state: %s", exc)
            else:
                # Resume an unfinished rollout; otherwise the registry's champion wins (it may
                # have been moved while the gateway was down).
                if state.phase in ro.ACTIVE or state.champion == champion:
                    log.info("resumed rollout %s in phase %s step %d", state.rollout_id,
                             state.phase.value, state.step)
                    return state
        return ro.initial_state(champion)

    def _persist(self, state: ro.RolloutState) -> None:
        self._registry.set_model_tag(self._state_tag, json.dumps(state.to_dict(),
                                                           separators=(",", ":")))

    # --- table long-poll -------------------------------------------------------------------

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:  # created lazily so it binds the actor's event loop
            self._changed = asyncio.Condition()
        return self._changed

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._control_loop())

    async def get_table(self) -> dict[str, Any]:
        self._ensure_loop()
        return self._table.to_dict()

    async def wait_for_table(self, known_version: int, timeout_s: float) -> dict[str, Any] | None:
        """Return the table as soon as its version is newer than `known_version`, or None
        after `timeout_s` (the caller simply asks again)."""
        self._ensure_loop()
        cond = self._cond()
        async with cond:
            try:
                await asyncio.wait_for(
                    cond.wait_for(lambda: self._table.version > known_version), timeout_s)
            except TimeoutError:
                return None
        return self._table.to_dict()

    async def _publish(self, table: RoutingTable) -> None:
        same = table.to_dict() | {"version": 0} == self._table.to_dict() | {"version": 0}
        if same:
            return
        cond = self._cond()
        async with cond:
            self._table = RoutingTable.from_dict(
                table.to_dict() | {"version": next_version(self._table.version)})
            cond.notify_all()
        t = self._table
        get_metrics().table(t.version, t.challenger_weight, t.mode.value)
        log.info("published routing table v%d: weight=%g mode=%s slots=%s", t.version,
                 t.challenger_weight, t.mode.value,
                 {s: (r.version if r else None) for s, r in t.slot_models.items()})

    # --- observations from ingress replicas -------------------------------------------------

    async def ingest(self, replica_id: str, deltas: dict[str, bytes],
                     request_ids: list[tuple[str, str]] | None = None) -> None:
        """Window deltas keyed by model version, flushed by an ingress replica."""
        self._ensure_loop()
        for version, blob in deltas.items():
            self._add(version, ArmWindow.from_bytes(blob))
        self._remember(request_ids or [])
        if self._state.phase in ro.JUDGED:
            await self._judge_now()

    async def ingest_hallucination(self, model_version: str, scores: list[float]) -> None:
        """Hallucination scores of sampled answers, from the evaluator actors."""
        self._ensure_loop()
        delta = ArmWindow()
        delta.record_hallucination_batch(scores)
        self._add(model_version, delta)
        if self._state.phase in ro.JUDGED:
            await self._judge_now()

    def _add(self, version: str, delta: ArmWindow) -> None:
        """Into the version's cumulative window and into the next look's delta."""
        for store in (self._windows, self._pending):
            window = store.get(version)
            if window is None:  # the pending store may own the delta itself
                store[version] = delta if store is self._pending else delta.copy()
            else:
                window.merge(delta)

    def _remember(self, request_ids: list[tuple[str, str]]) -> None:
        now = time.time()
        for rid, version in request_ids:
            self._requests[rid] = (version, now)
            self._requests.move_to_end(rid)
        while len(self._requests) > self._cfg.feedback.capacity:
            self._requests.popitem(last=False)

    async def feedback(self, request_id: str, value: float) -> str:
        """Attribute a business outcome to the model that served `request_id`:
        returns ok, unknown or expired."""
        found = self._requests.get(request_id)
        if found is None:
            return "unknown"
        version, at = found
        if time.time() - at > self._cfg.feedback.ttl_s:
            return "expired"
        delta = ArmWindow()
        delta.record_kpi(value)
        self._add(version, delta)
        return "ok"

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
            raw = self._registry.get_version_tags(challenger.version).get(self._judge_tag)
            if raw:
                judge.load(decode_judge_state(raw))
                for version, window in ((self._state.champion, judge.champion),
                                        (challenger, judge.challenger)):
                    if version is not None:
                        self._windows[version.version] = window.copy()
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
        self._last_judge_persist = time.monotonic()
        text = encode_judge_state(judge.state())
        try:
            await asyncio.to_thread(self._registry.set_version_tag, challenger.version,
                                    self._judge_tag, text)
        except Exception as exc:  # the registry may be down: the next interval retries
            log.warning("could not persist the judge's evidence: %s", exc)

    def _arm_windows(self) -> tuple[ArmWindow, ArmWindow]:
        champion, challenger = self._state.champion, self._state.challenger
        empty = ArmWindow()
        return (self._windows.get(champion.version, empty) if champion else empty,
                self._windows.get(challenger.version, empty) if challenger else empty)

    async def _judge_now(self) -> None:
        async with self._lock:
            if self._state.phase not in ro.JUDGED:
                return
            if self._judge is None:
                self._judge = self._new_judge()
            d_champion, d_challenger = self._take_pending()
            verdict = self._judge.observe(d_champion, d_challenger, self._resources())
            self._verdict = verdict
            self._effects.record_verdict_metrics(verdict)
            tr = ro.observe(self._state, self._policy, verdict,
                            self._judge.challenger.n_requests, time.time())
            await self._apply(tr)

    def _take_pending(self) -> tuple[ArmWindow, ArmWindow]:
        """This look's deltas of both arms; data of other versions is dropped."""
        pending, self._pending = self._pending, {}
        champion, challenger = self._state.champion, self._state.challenger
        return (pending.get(champion.version) if champion else None) or ArmWindow(), \
            (pending.get(challenger.version) if challenger else None) or ArmWindow()

    def _resources(self) -> Any:
        state = self._state
        served = {slot: self._windows[ref.version].n_requests
                  for slot, ref in state.slot_models.items()
                  if ref is not None and ref.version in self._windows}
        engines = {slot: [r["memory"] for r in reports.values()
                          if r.get("memory") and r.get("model")
                          and (ref := state.slot_models.get(slot)) is not None
                          and r["model"]["version"] == ref.version]
                   for slot, reports in self._slot_reports.items()}
        return self._effects.resources(state, served, engines)

    # --- transitions and their effects -------------------------------------------------------

    async def _apply(self, tr: ro.Transition) -> None:
        old, new = self._state, tr.state
        if tr.event is None and new == old:
            return
        event = tr.event
        before = self._table.version
        ends_rollout = event is not None and event.name in ("rolled_back", "load_failed",
                                                            "restored")
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
        try:
            await asyncio.to_thread(self._persist, new)
        except Exception:
            log.exception("could not persist rollout state")
        if event is None:
            return
        if event.name in PERSIST_EVENTS:
            await self._persist_judge()
        await asyncio.to_thread(self._effects.record, old, new, event, self._table.version,
                                before)
        # The rest (alerts, seconds of MLflow and report work) runs behind the control loop,
        # one transition after another, so the loop keeps judging and watching meanwhile.
        champion, challenger = self._arm_windows()
        previous = self._effects_chain
        self._effects_chain = asyncio.ensure_future(self._after(
            previous, old, new, event, champion.copy(), challenger.copy(), ends_rollout))

    async def _after(self, previous: asyncio.Future[None] | None, old: ro.RolloutState,
                     new: ro.RolloutState, event: ro.Event, champion: ArmWindow,
                     challenger: ArmWindow, release: bool) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await asyncio.to_thread(self._effects.notify_and_track, old, new, event, champion,
                                challenger)
        if release:  # last: release the challenger's slot (whatever the state is by now)
            await self._publish(ro.table_for(self._state, self._policy, 0))

    # --- the control loop ------------------------------------------------------------------

    async def _control_loop(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor tick failed")
            await asyncio.sleep(self._cfg.supervisor.tick_s)

    async def _tick(self) -> None:
        now = time.time()
        if now - self._last_poll >= self._cfg.supervisor.registry_poll_s:
            self._last_poll = now
            await self._watch_registry()
        phase = self._state.phase
        champion, challenger = self._arm_windows()
        self._effects.record_arm_metrics(self._state, champion, challenger, self._resources())
        if phase is ro.Phase.LOADING:
            await self._check_loading(now)
        elif phase in ro.JUDGED:
            await self._judge_now()
            if time.monotonic() - self._last_judge_persist >= \
                    self._cfg.supervisor.judge_persist_s:
                await self._persist_judge()
        elif phase is ro.Phase.PROMOTED:
            await self._apply(ro.release_old_champion(self._state, self._policy, now))

    async def _watch_registry(self) -> None:
        if self._state.phase in ro.ACTIVE:
            # A new challenger waits for the current rollout to end: no registry query
            # (with MLflow on SQL each one costs milliseconds of this actor's CPU).
            return
        version = await asyncio.to_thread(self._registry.alias_version, CHALLENGER)
        if version is None or version == self._seen_challenger:
            return
        state = self._state
        if state.phase in ro.ACTIVE or (state.champion and version == state.champion.version):
            return
        self._seen_challenger = version
        tags = await asyncio.to_thread(self._registry.get_version_tags, version)
        if VERDICT_TAG in tags:
            log.info("challenger alias points at version %s, already judged (%s); ignoring",
                     version, tags[VERDICT_TAG])
            return
        ref = await asyncio.to_thread(self._registry.get_version, version)
        await self._start(ref)

    async def _start(self, ref: ModelRef) -> None:
        async with self._lock:
            self._windows.clear()
            self._pending.clear()
            self._slot_reports.pop(self._state.free_slot, None)
            rollout_id = f"{ref.name}-v{ref.version}-{uuid.uuid4().hex[:8]}"
            await self._apply(ro.start(self._state, ref, rollout_id, time.time()))

    async def _check_loading(self, now: float) -> None:
        state = self._state
        slot, want = state.free_slot, state.challenger
        reports = [r for r in self._slot_reports.get(slot, {}).values()
                   if want and r.get("model") and r["model"]["version"] == want.version]
        failed = [r for r in reports if not r.get("healthy")]
        async with self._lock:
            if failed:
                await self._apply(ro.load_failed(state, str(failed[0].get("error")), now))
            elif len([r for r in reports if r.get("healthy")]) >= self._cfg.slots.num_replicas:
                self._windows.clear()
                self._pending.clear()
                self._judge = self._new_judge()
                await self._apply(ro.loaded(state, self._policy, now))
            elif now - state.phase_started_at > self._policy.load_timeout_s:
                await self._apply(ro.load_failed(
                    state, f"challenger not healthy within {self._policy.load_timeout_s:g}s",
                    now))

    async def report_slot(self, slot: str, replica_id: str, report: dict[str, Any]) -> None:
        """A model-slot replica reports what it has loaded, whether it is healthy, its PID."""
        self._ensure_loop()
        self._slot_reports.setdefault(slot, {})[replica_id] = report
        self._effects.watch_pid(slot, replica_id, report.get("pid"))
        if self._state.phase is ro.Phase.LOADING and slot == self._state.free_slot:
            await self._check_loading(time.time())

    # --- operators ----------------------------------------------------------------------

    async def operate(self, op: str, actor: str, reason: str = "") -> dict[str, Any]:
        """promote | rollback | pause | resume, from the admin API or the CLI."""
        self._ensure_loop()
        now = time.time()
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
        state, table = self._state, self._table
        champion, challenger = self._arm_windows()
        return {
            "phase": state.phase.value, "rollout_id": state.rollout_id,
            "step": state.step if state.phase in ro.JUDGED else None,
            "steps": [vars(s) for s in self._policy.steps],
            "paused_phase": state.paused_phase.value if state.paused_phase else None,
            "awaiting_promotion": state.awaiting_promotion, "reason": state.reason,
            "held": state.held_since is not None, "held_since": state.held_since,
            "judge": ({"looks_judged": self._judge.looks, "tests": self._judge.n_tests,
                       "alpha_per_test": self._judge.alpha_per_test}
                      if self._judge is not None else None),
            "table": table.to_dict(),
            "champion": state.champion.to_dict() if state.champion else None,
            "challenger": state.challenger.to_dict() if state.challenger else None,
            "previous_champion": (state.previous_champion.to_dict()
                                  if state.previous_champion else None),
            "requests": {"champion": champion.n_requests, "challenger": challenger.n_requests},
            "hallucination_scores": {"champion": champion.hallucination_n,
                                     "challenger": challenger.hallucination_n},
            "verdict": self._verdict.to_dict() if self._verdict else None,
            "slots": self._slot_reports,
        }

    async def set_weights(self, weight: float, mode: str, actor: str = "admin") -> dict[str, Any]:
        """Manual override of the live table (kept until the next rollout transition)."""
        self._ensure_loop()
        table = self._table.evolve(challenger_weight=weight, mode=Mode(mode))
        await self._publish(table)
        self._effects.audit_manual(self._state, actor, f"weights set to {weight:g}% {mode}",
                                   self._table.version)
        return self._table.to_dict()

    async def shutdown(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        await asyncio.to_thread(self._effects.close)


def _log_to_stderr() -> None:
    """Rollout events as JSON lines on the actor's stderr, which the Ray dashboard shows."""
    root = logging.getLogger(ROOT)
    root.setLevel(logging.INFO)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)


def get_or_create_supervisor(cfg: GatewayConfig, tracking_uri: str,
                             initial_table: RoutingTable) -> Any:
    """The one supervisor actor of a gateway app: created if missing, else reused. Ray
    restarts it if it dies; it then resumes from the state persisted in the registry."""
    import dataclasses

    actor_cls = ray.remote(Supervisor)
    return actor_cls.options(
        name=cfg.control.supervisor_name, namespace=cfg.control.namespace,
        lifetime="detached", get_if_exists=True, num_cpus=0, max_restarts=-1,
        max_task_retries=-1, max_concurrency=10_000,
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
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
