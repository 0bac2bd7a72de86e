"""The Ray Serve ingress: HTTP API, arm choice, failover, shadow copies, observations."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import ray
from starlette.requests import Request
from starlette.responses import Response

from core.errors import InputError
from core.logs import get_logger
from gateway.config import parse_config
from gateway.metrics import get_metrics
from gateway.serving.calls import (
    ArmCall,
    Censor,
    Route,
    arm_headers,
    call_timeout,
    comparison_deadline,
    request_id_of,
    served_version,
)
from gateway.serving.feedback import parse_feedback
from gateway.serving.flushtimer import FlushTimer
from gateway.serving.http import (
    app_path,
    check_bearer,
    check_sticky_key,
    clean_actor,
    error_response,
    header_problem,
    json_response,
    parse_json_object,
    read_body,
)
from gateway.serving.llm.evaluator import EvaluatorPool
from gateway.serving.lost import LostSlots, describe_loss, is_replica_loss
from gateway.serving.openai_routes import OpenAIRoutes
from gateway.serving.openapi import (
    ADMIN_OPS,
    MAX_REASON,
    MAX_ROLLOUT_ID,
    ROLLOUT_ID,
    ROUTES,
    openapi_document,
)
from gateway.serving.tablewatch import TableWatcher
from gateway.wire.handles import RelayHandle, get_supervisor
from gateway.wire.replies import CallOutcome, SlotAnswer, SlotError
from gateway.wire.routing import Arm, Mode, RoutingTable, choose_arm, parse_weight_update
from guards.window import ArmWindow, Observation, Outcome, key_bucket

log = get_logger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
# A call's outcome in the comparison window (UNAVAILABLE: no model was called, none judged).
OUTCOMES = {CallOutcome.OK: Outcome.OK, CallOutcome.CLIENT_ERROR: Outcome.CLIENT_ERROR,
            CallOutcome.SERVER_ERROR: Outcome.SERVER_ERROR, CallOutcome.TIMEOUT: Outcome.TIMEOUT}
# Served request ids an ingress replica keeps to re-send to a restarted supervisor.
RESEND_LIMIT = 50_000
URGENT = frozenset({Outcome.SERVER_ERROR, Outcome.TIMEOUT})


class Ingress:
    """The HTTP entry point: routes each request to an arm by the RoutingTable, observes
    every call into the model version's comparison window, and flushes the windows to the
    supervisor. The OpenAI endpoints are an `OpenAIRoutes` it holds, served through the
    public methods of `IngressServices` (`table`, `route`, `serve`, `censor`, `observe`,
    `failover`, `remember_served`, `evaluator`)."""

    async def __init__(  # type: ignore[misc]  # Serve supports async constructors
            self, config: dict[str, Any], slot_a: Any, slot_b: Any,
            initial_table: dict[str, Any]) -> None:
        self._cfg = parse_config(config)
        # Raises ConfigError (the replica refuses to start) when no admin token is set and
        # unauthenticated admin was not explicitly allowed.
        self._token = self._cfg.admin_token()
        slots = {"a": slot_a, "b": slot_b}
        # With slots.batching, /v1/predict goes to the slots' batching entry point.
        slot_method = {"predict": "predict" if self._cfg.slots.batching is None
                       else "predict_batched", "generate": "generate"}
        self._handles = {method: {s: h.options(method_name=slot_method[method])
                                  for s, h in slots.items()}
                         for method in ("predict", "generate")}
        stream_handles = {s: h.options(method_name="stream", stream=True)
                          for s, h in slots.items()}
        self._evaluator_pool: EvaluatorPool | None = None
        self._sticky_header = self._cfg.routing.sticky_header.lower()
        self._sup = get_supervisor(self._cfg.control.supervisor_name, self._cfg.control.namespace)
        self._metrics = get_metrics()
        self._lost = LostSlots()  # before the table watcher: its first table may name one
        self._lost_in_table: set[str] = set()
        self._openai = OpenAIRoutes(self._cfg, self, stream_handles, self._metrics)
        self._relay = await self._relay_for_flushes()
        self._watcher = TableWatcher(self._relay, RoutingTable.from_dict(initial_table),
                                     poll_timeout_s=self._cfg.control.long_poll_timeout_s,
                                     on_change=self._on_table,
                                     on_new_supervisor=self._resend_served)
        try:  # start from the supervisor's current table, not the one baked into the app
            raw = await asyncio.wait_for(self._sup.get_table.remote(), 10)
            self._watcher.saw_supervisor(raw.get("supervisor"))
            await self._watcher.apply(RoutingTable.from_dict(raw))
        except Exception as exc:
            log.warning("supervisor not reachable at start (%s); using initial table", exc)
        self._watcher.start()
        self._background: set[asyncio.Task[Any]] = set()
        self.counts: Counter[tuple[str, str]] = Counter()
        # Per model version, so a delta is never attributed to the wrong rollout.
        self._windows: dict[str, ArmWindow] = {}
        # Per model version, observations sent to the supervisor so far, by outcome (describe).
        self._flushed: dict[str, Counter[str]] = {}
        self._served: list[tuple[str, str]] = []  # (request id, model version) for feedback
        # What was served lately, re-sent to a restarted supervisor (whose ledger was in
        # its memory), so feedback on requests served before the restart is not lost.
        self._recent: deque[tuple[str, str]] = deque(
            maxlen=min(self._cfg.feedback.capacity, RESEND_LIMIT))
        self._replica_id = uuid.uuid4().hex[:12]
        self._flush_timer = FlushTimer(self._cfg.control.flush_interval_s,
                                       self._cfg.control.urgent_flush_s)
        self._spawn(self._flush_loop())
        handlers: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/predict"): self._predict,
            ("POST", "/v1/feedback"): self._feedback,
            ("POST", "/v1/completions"): self._openai.completions,
            ("POST", "/v1/chat/completions"): self._openai.chat,
            ("GET", "/healthz"): self._healthz,
            ("GET", "/openapi.json"): self._openapi_json,
            ("GET", "/admin/rollout"): self._admin_rollout,
            ("GET", "/admin/rollout/report"): self._admin_report,
            ("POST", "/admin/weights"): self._admin_weights,
        }
        for op in ADMIN_OPS:
            handlers[("POST", f"/admin/rollout/{op}")] = self._admin_op
        # Served exactly as listed in ROUTES, the list the OpenAPI document describes.
        self._routes = {route: handlers[route] for route in ROUTES}

    async def __call__(self, request: Request) -> Response:
        # Header bounds first, on every path: Serve's proxy applies none of its own (see
        # http.HeaderGuard, which refuses the same earlier when installed in the proxy).
        problem = header_problem(request.headers.raw)
        if problem is not None:
            status, header, message = problem
            return error_response(status, "header_too_large", message, field=header or None)
        path = app_path(request)
        handler = self._routes.get((request.method, path))
        if handler is None:
            return self._no_route(request, path)
        try:
            check_sticky_key(request.headers.get(self._sticky_header), self._sticky_header)
            return await handler(request)
        except InputError as exc:
            return error_response(exc.status, "invalid_request", str(exc),
                                  request_id_of(request), exc.field)

    def _no_route(self, request: Request, path: str) -> Response:
        methods = sorted(m for (m, p) in self._routes if p == path)
        if methods:
            return error_response(405, "method_not_allowed",
                                  f"{request.method} {path}: use {', '.join(methods)}",
                                  headers={"allow": ", ".join(methods)})
        return error_response(404, "not_found", f"no route for {path}")

    # --- inference -------------------------------------------------------------------

    @property
    def table(self) -> RoutingTable:
        """The routing table this replica applies now."""
        return self._watcher.current

    def route(self, request: Request) -> Route:
        """The arm for `request` under the current table, by its sticky key if it has one."""
        table = self._watcher.current
        key = request.headers.get(self._sticky_header)
        bucket = None if key is None else key_bucket(key)
        arm = choose_arm(table, key)
        if arm is Arm.CHALLENGER and self._lost.avoid(
                table.slot_of(arm) or "", served_version(table, arm), time.perf_counter()):
            arm = Arm.CHAMPION  # its replica was just lost: Serve is replacing it
        return Route(table, arm, bucket)

    async def _predict(self, request: Request) -> Response:
        rid = request_id_of(request)
        body = parse_json_object(await read_body(request, self._cfg.http.max_body_bytes))
        if "inputs" not in body:
            raise InputError("inputs: missing required field", field="inputs")
        inputs = body["inputs"]
        route = self.route(request)
        table = route.table
        if table.mode is Mode.SHADOW and table.challenger_active:
            self._spawn(self._shadow(table, inputs, "predict", route.bucket))
        arm, call = await self.serve(route, inputs, "predict")
        answer = call.answer
        if answer is not None:
            self.remember_served(rid, answer.model.version)
        return self._answer(arm, call, rid)

    async def serve(self, route: Route, inputs: Any, method: str) -> tuple[Arm, ArmCall]:
        """Call the chosen arm (the champion on a challenger failure) and observe the calls.
        `method`: the slot method (`predict`, `generate`); `route.bucket`: the sticky key's
        analysis bucket, if the request has a key."""
        table, arm, bucket = route.table, route.arm, route.bucket
        compared = True
        if arm is Arm.CHALLENGER:
            call = await self._call(table, Arm.CHALLENGER, inputs, method)
            self._observe(table, Arm.CHALLENGER, call, bucket)
            if call.outcome in (CallOutcome.OK, CallOutcome.CLIENT_ERROR):
                return arm, call
            # Failover: the client gets the champion's answer; the failure stays counted
            # against the challenger. The retry is counted, but kept out of the champion's
            # window: it follows the challenger's failure, so it is no sample of the champion.
            self.failover(table)
            compared = False
        censor = self.censor(table, bucket) if compared else None
        try:
            call = await self._call(table, Arm.CHAMPION, inputs, method)
            if call.outcome is CallOutcome.REPLICA_LOST:
                # Its replica died under it: once more, on another replica (or on the
                # replacement Serve starts), rather than fail the client.
                call = await self._call(table, Arm.CHAMPION, inputs, method)
            current = self._watcher.current
            if call.outcome is CallOutcome.UNAVAILABLE and current.version != table.version:
                # The table changed while this request was in flight (roles flipped): ask the
                # champion of the new table.
                table = current
                call = await self._call(table, Arm.CHAMPION, inputs, method)
        finally:  # also when the request is cancelled (client gone) before the deadline
            if censor is not None and not censor.stop():
                compared = False
        if not compared:
            call = dataclasses.replace(call, compared=False)
        self._observe(table, Arm.CHAMPION, call, bucket)
        return Arm.CHAMPION, call

    def failover(self, table: RoutingTable) -> None:
        """Count a failover from `table`'s challenger to its champion."""
        self.counts[(Arm.CHALLENGER.value, "failover")] += 1
        self._metrics.failover(served_version(table, Arm.CHALLENGER))

    def censor(self, table: RoutingTable, bucket: int | None) -> Censor | None:
        """Arm the censoring of a champion call at the comparison deadline (see `Censor`)."""
        deadline = comparison_deadline(table, self._cfg.timeouts)
        if deadline is None:
            return None
        censor = Censor()
        censor.handle = asyncio.get_running_loop().call_later(
            deadline, self._censored, censor, served_version(table, Arm.CHAMPION), deadline,
            bucket)
        return censor

    def _censored(self, censor: Censor, version: str, deadline: float,
                  bucket: int | None) -> None:
        censor.fired = True
        self._record(Arm.CHAMPION, version,
                     Observation(deadline, Outcome.TIMEOUT, key_bucket=bucket))

    async def _call(self, table: RoutingTable, arm: Arm, inputs: Any,
                    method: str = "predict", timeout: float | None = None) -> ArmCall:
        slot = table.slot_of(arm)
        if slot is None:
            return ArmCall(None, CallOutcome.UNAVAILABLE, 0.0, f"no {arm.value} slot")
        if timeout is None:
            timeout = call_timeout(arm, self._cfg.timeouts)
        start = time.perf_counter()
        response = self._handles[method][slot].remote(inputs)
        try:
            async with asyncio.timeout(timeout):  # no extra Task per call, unlike wait_for
                reply = await response
        except TimeoutError:
            response.cancel()
            return self._failed(table, arm, slot, start, CallOutcome.TIMEOUT,
                                f"{arm.value} timed out after {timeout:g}s")
        except Exception as exc:  # dead replica, actor error, cancelled request
            if is_replica_loss(exc):
                self._replica_lost(table, arm, slot, exc)
                return ArmCall(None, CallOutcome.REPLICA_LOST, time.perf_counter() - start,
                               f"{arm.value} replica lost: {type(exc).__name__}")
            return self._failed(table, arm, slot, start, CallOutcome.SERVER_ERROR,
                                f"{arm.value} call failed: {type(exc).__name__}: {exc}")
        latency = time.perf_counter() - start
        if isinstance(reply, SlotAnswer):
            return ArmCall(reply, CallOutcome.OK, latency)
        if isinstance(reply, SlotError):
            return ArmCall(reply, reply.kind, latency, reply.message)
        return ArmCall(None, CallOutcome.SERVER_ERROR, latency,  # a slot broke its contract
                       f"{arm.value} replied with a {type(reply).__name__}, not a SlotReply")

    def _failed(self, table: RoutingTable, arm: Arm, slot: str, start: float,
                outcome: CallOutcome, message: str) -> ArmCall:
        """A call that got no reply; one the loss of its slot's replica caused (it was queued
        for the dead replica or its replacement) is not the challenger model's failure."""
        now = time.perf_counter()
        if arm is Arm.CHALLENGER and self._lost.excuses(slot, served_version(table, arm),
                                                        start, now):
            return ArmCall(None, CallOutcome.REPLICA_LOST, now - start,
                           f"{message} (its replica was lost)")
        return ArmCall(None, outcome, now - start, message)

    def _replica_lost(self, table: RoutingTable, arm: Arm, slot: str,
                      exc: BaseException) -> None:
        """Route past the slot for a moment, and tell the supervisor (once per replica)."""
        loss = describe_loss(slot, served_version(table, arm), exc)
        if self._lost.mark(loss, time.perf_counter()):
            log.warning("%s slot %s (version %s) lost a replica: %s", arm.value, slot,
                        loss.version, loss.message.splitlines()[-1][:300])
            self._sup.slot_lost.remote(loss.slot, loss.version, loss.actor_id, loss.message,
                                       loss.creation_failed)

    async def _shadow(self, table: RoutingTable, inputs: Any, method: str,
                      bucket: int | None = None) -> None:
        call = await self._call(table, Arm.CHALLENGER, inputs, method,
                                self._cfg.timeouts.shadow_s)
        self._observe(table, Arm.CHALLENGER, call, bucket)

    def _observe(self, table: RoutingTable, arm: Arm, call: ArmCall,
                 bucket: int | None = None) -> None:
        """One observation into the serving model version's window (the hot path); a call
        that is not `compared` is counted and measured, but not recorded in the window."""
        outcome = OUTCOMES.get(call.outcome)
        if outcome is None:  # UNAVAILABLE: no model was called, nothing to judge or measure
            self.counts[(arm.value, call.outcome.value)] += 1
            return
        answer = call.answer
        version = answer.model.version if answer else served_version(table, arm)
        self.observe(arm, version, call.outcome, call.latency_s,
                     _observation(call, outcome, answer, bucket) if call.compared else None)

    def observe(self, arm: Arm, version: str, outcome: CallOutcome, latency_s: float,
                observation: Observation | None) -> None:
        """Count and measure one outcome of `version`; `observation` (None for a call that is
        not compared) goes into the version's comparison window."""
        self.counts[(arm.value, outcome.value)] += 1
        if observation is not None:
            self._record(arm, version, observation)
        self._metrics.request(arm.value, version, outcome.value, latency_s)

    def _record(self, arm: Arm, version: str, observation: Observation) -> None:
        """Into the version's window; a failed challenger call asks for an early flush."""
        window = self._windows.get(version)
        if window is None:
            window = self._windows[version] = ArmWindow()
        window.record(observation)
        if arm is Arm.CHALLENGER and observation.outcome in URGENT:
            self._flush_timer.urge()

    def remember_served(self, request_id: str, version: str) -> None:
        """`request_id` was answered by `version`: sent with the next flush, so feedback on
        it reaches that version's rollout."""
        self._served.append((request_id, version))
        self._recent.append((request_id, version))

    def _resend_served(self) -> None:
        log.warning("the supervisor restarted: re-sending %d served request ids for feedback",
                    len(self._recent))
        pending = set(self._served)
        self._served = [p for p in self._recent if p not in pending] + self._served

    def evaluator(self) -> EvaluatorPool:
        """Hallucination scoring actors, started on the first LLM answer with a context."""
        if self._evaluator_pool is None:
            self._evaluator_pool = EvaluatorPool(self._cfg.hallucination, self._sup)
        return self._evaluator_pool

    async def _relay_for_flushes(self) -> RelayHandle:
        """The supervisor, or this node's aggregator (`control.aggregation: node`). Without
        one at start (the supervisor not up yet), flushes go to the supervisor: they are
        judged the same, only unmerged."""
        if self._cfg.control.aggregation != "node":
            return self._sup
        node = ray.get_runtime_context().get_node_id()
        try:
            relay: RelayHandle = await asyncio.wait_for(
                self._sup.aggregator_for.remote(node), 30)
            log.info("flushing through node %s's aggregator", node[:12])
            return relay
        except Exception as exc:
            log.warning("no aggregator on node %s (%s); flushing to the supervisor", node[:12],
                        exc)
            return self._sup

    async def _flush_loop(self) -> None:
        """Send window deltas to the supervisor, fire-and-forget: never awaited, so a slow or
        restarting supervisor never delays a request."""
        while True:
            await self._flush_timer.next_flush()
            try:
                self._flush()
            except Exception:  # a flush must never kill the loop
                log.exception("window flush failed")

    def _flush(self) -> None:
        self._metrics.flush_requests()
        deltas: dict[str, bytes] = {}
        for version, window in self._windows.items():
            if window.is_empty():
                continue
            delta = window.take_delta()
            deltas[version] = delta.to_bytes()
            flushed = self._flushed.setdefault(version, Counter())
            for outcome in Outcome:
                if delta.count(outcome):
                    flushed[outcome.name.lower()] += delta.count(outcome)
        served, self._served = self._served, []
        if deltas or served:
            self._relay.ingest.remote(self._replica_id, deltas, served)

    async def _on_table(self, table: RoutingTable) -> None:
        self._metrics.table(table.version, table.challenger_weight, table.mode.value)
        for slot in set(table.lost_slots) - self._lost_in_table:  # newly lost
            ref = table.slot_models.get(slot)
            if ref is not None:
                self._lost.note(slot, ref.version, time.perf_counter())
        self._lost_in_table = set(table.lost_slots)
        live = {r.version for r in table.slot_models.values() if r is not None}
        for version in [v for v, w in self._windows.items() if v not in live and w.is_empty()]:
            del self._windows[version]  # models no longer served: keep memory bounded
            self._flushed.pop(version, None)

    def _answer(self, arm: Arm, call: ArmCall, rid: str) -> Response:
        refused = call.client_error
        if refused is not None:
            return error_response(refused.status, "invalid_input", refused.message, rid,
                                  refused.field)
        answer = call.answer
        if answer is None:
            return error_response(502, "upstream_error",
                                  f"the champion model could not answer: {call.message}", rid)
        model = answer.model.to_dict()
        return json_response({"outputs": answer.outputs, "model": model}, 200,
                             arm_headers(arm, answer.model))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- health and admin ------------------------------------------------------------

    async def _openapi_json(self, request: Request) -> Response:
        return json_response(openapi_document(self._cfg))

    async def _healthz(self, request: Request) -> Response:
        table = self._watcher.current
        # Per replica: which table it applies (the rollback benchmark samples this).
        return json_response({"status": "ok", "replica": self._replica_id,
                              "table_version": table.version,
                              "challenger_weight": table.challenger_weight,
                              "mode": table.mode.value})

    async def _feedback(self, request: Request) -> Response:
        body = parse_json_object(await read_body(request, self._cfg.http.max_body_bytes))
        request_id, value = parse_feedback(body)
        try:
            status = await asyncio.wait_for(self._sup.feedback.remote(request_id, value), 5.0)
        except Exception as exc:
            return error_response(503, "unavailable", f"feedback not recorded: the supervisor "
                                  f"is unreachable ({type(exc).__name__}); retry later")
        if status == "unknown":
            return error_response(404, "not_found", f"request_id {request_id!r}: unknown "
                                  "(never served, or forgotten)", field="request_id")
        if status == "expired":
            return error_response(410, "expired", f"request_id {request_id!r}: too old for "
                                  "feedback", field="request_id")
        return json_response({"status": "recorded", "request_id": request_id}, 202)

    async def _admin_rollout(self, request: Request) -> Response:
        denied = check_bearer(request, self._token)
        if denied is not None:
            return denied
        try:
            view = await asyncio.wait_for(self._sup.status.remote(), 5.0)
        except Exception as exc:  # serve what this replica knows
            view = self._local_view(self._watcher.current)
            view["supervisor"] = f"unreachable: {type(exc).__name__}"
        view["replica_counts"] = self._replica_counts()
        return json_response(view)

    async def _admin_report(self, request: Request) -> Response:
        """The rollout report (one self-contained HTML page): the current or last rollout's,
        or `?rollout=ID`'s."""
        denied = check_bearer(request, self._token)
        if denied is not None:
            return denied
        rollout = request.query_params.get("rollout")
        if rollout is not None and not ROLLOUT_ID.fullmatch(rollout):
            raise InputError("rollout: expected a rollout id (letters, digits, . _ -, at most "
                             f"{MAX_ROLLOUT_ID} characters)", field="rollout")
        try:
            page = await asyncio.wait_for(self._sup.report.remote(rollout), 60.0)
        except Exception as exc:
            return _supervisor_unreachable("report", exc)
        if page is None:
            what = f"rollout {rollout}" if rollout else "any rollout yet"
            return error_response(404, "not_found", f"no report for {what}")
        # Inline styles and one inline script only; nothing is fetched from anywhere.
        return Response(page, media_type="text/html; charset=utf-8", headers={
            "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                       "script-src 'unsafe-inline'; img-src data:"})

    def describe(self) -> dict[str, Any]:
        """This replica's view, for `DeploymentHandle.broadcast("describe")` (benchmarks,
        debugging): which table it applies and what it has counted."""
        table = self._watcher.current
        return {"replica": self._replica_id, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id(),
                "flushes_to": "supervisor" if self._relay is self._sup else "aggregator",
                "table_version": table.version,
                "challenger_weight": table.challenger_weight, "mode": table.mode.value,
                "counts": self._replica_counts(), "windows": self._window_counts(),
                "evaluator": (dataclasses.asdict(self._evaluator_pool.stats())
                              if self._evaluator_pool else None)}

    def _window_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per model version, by outcome: observations recorded into the comparison window and
        sent to the supervisor (`flushed`), and recorded but not sent yet (`pending`)."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for version in sorted(set(self._windows) | set(self._flushed)):
            window = self._windows.get(version)
            out[version] = {
                "flushed": dict(self._flushed.get(version, {})),
                "pending": ({o.name.lower(): window.count(o) for o in Outcome if window.count(o)}
                            if window is not None else {})}
        return out

    def _replica_counts(self) -> dict[str, int]:
        return {f"{a}.{o}": n for (a, o), n in sorted(self.counts.items())}

    def _local_view(self, table: RoutingTable) -> dict[str, Any]:
        def ref(arm: Arm) -> dict[str, Any] | None:
            model = table.model_of(arm)
            return model.to_dict() if model else None

        return {"table": table.to_dict(), "champion": ref(Arm.CHAMPION),
                "challenger": ref(Arm.CHALLENGER)}

    async def _admin_op(self, request: Request) -> Response:
        denied = check_bearer(request, self._token)
        if denied is not None:
            return denied
        op = request.url.path.rsplit("/", 1)[-1]
        raw = await read_body(request, self._cfg.http.max_body_bytes)
        reason = parse_json_object(raw).get("reason", "") if raw.strip() else ""
        if not isinstance(reason, str):
            raise InputError("reason: expected a string", field="reason")
        if len(reason) > MAX_REASON:
            raise InputError(f"reason: at most {MAX_REASON} characters", field="reason")
        # Written to the audit trail: printable and bounded (see http.clean_actor).
        actor = clean_actor(request.headers.get("x-gateway-actor"), "admin-api")
        try:
            view = await asyncio.wait_for(self._sup.operate.remote(op, actor, reason), 30.0)
        except Exception as exc:
            return _supervisor_unreachable(op, exc)
        if "error" in view:
            return error_response(409, "conflict", f"{op}: {view['error']}")
        await self._watcher.apply(RoutingTable.from_dict(view["table"]))
        return json_response(view)

    async def _admin_weights(self, request: Request) -> Response:
        denied = check_bearer(request, self._token)
        if denied is not None:
            return denied
        body = parse_json_object(await read_body(request, self._cfg.http.max_body_bytes))
        weight, mode = parse_weight_update(body, self._watcher.current)
        try:
            raw = await asyncio.wait_for(
                self._sup.set_weights.remote(weight, mode.value, "admin-api"), 30.0)
        except Exception as exc:
            return _supervisor_unreachable("weights", exc)
        table = RoutingTable.from_dict(raw)
        await self._watcher.apply(table)
        return json_response(self._local_view(table))


def _supervisor_unreachable(what: str, exc: Exception) -> Response:
    """An admin operation the supervisor could not take (it is restarting, or gone): a 503
    to retry, not a 500; nothing was changed."""
    return error_response(503, "unavailable", f"{what}: the supervisor is unreachable "
                          f"({type(exc).__name__}); nothing was changed, retry later",
                          headers={"retry-after": "5"})


def _observation(call: ArmCall, outcome: Outcome, answer: SlotAnswer | None,
                 bucket: int | None) -> Observation:
    """What the window records of a call: the answer's summaries and service time when
    there is one (its batch is a cluster of requests: `Observation.batch_size`)."""
    if answer is None:
        return Observation(call.latency_s, outcome, key_bucket=bucket)
    return Observation(
        call.latency_s, outcome, answer.output_summary, answer.input_summary,
        answer.tokens_in, answer.tokens_out, answer.busy_s, key_bucket=bucket,
        batch_size=answer.batch_size)
