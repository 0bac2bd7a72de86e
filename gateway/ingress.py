"""The Ray Serve ingress: HTTP API, arm choice, failover, shadow copies, observations."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.config import parse_config
from gateway.errors import InputError
from gateway.http import (
    check_bearer,
    error_response,
    json_response,
    parse_json_object,
    read_body,
)
from gateway.routing import Arm, Mode, RoutingTable, choose_arm, parse_weight_update
from gateway.supervisor import get_supervisor
from gateway.tablewatch import TableWatcher

log = logging.getLogger("champion_gateway.ingress")

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class ArmCall:
    """The outcome of one call to a model slot, as the ingress saw it."""

    reply: dict[str, Any] | None
    outcome: str  # ok | client_error | server_error | timeout | unavailable
    latency_s: float
    message: str = ""


class Ingress:
    async def __init__(  # type: ignore[misc]  # Serve supports async constructors
            self, config: dict[str, Any], slot_a: Any, slot_b: Any,
            initial_table: dict[str, Any]) -> None:
        self._cfg = parse_config(config)
        # Raises ConfigError (the replica refuses to start) when no admin token is set and
        # unauthenticated admin was not explicitly allowed.
        self._token = self._cfg.admin_token()
        self._slots = {"a": slot_a.options(method_name="predict"),
                       "b": slot_b.options(method_name="predict")}
        self._sticky_header = self._cfg.routing.sticky_header.lower()
        self._sup = get_supervisor(self._cfg.control.supervisor_name, self._cfg.control.namespace)
        self._watcher = TableWatcher(self._sup, RoutingTable.from_dict(initial_table),
                                     poll_timeout_s=self._cfg.control.long_poll_timeout_s)
        try:  # start from the supervisor's current table, not the one baked into the app
            await self._watcher.apply(RoutingTable.from_dict(
                await asyncio.wait_for(self._sup.get_table.remote(), 10)))
        except Exception as exc:
            log.warning("supervisor not reachable at start (%s); using initial table", exc)
        self._watcher.start()
        self._background: set[asyncio.Task[Any]] = set()
        self.counts: Counter[tuple[str, str]] = Counter()
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/predict"): self._predict,
            ("GET", "/healthz"): self._healthz,
            ("GET", "/admin/rollout"): self._admin_rollout,
            ("POST", "/admin/weights"): self._admin_weights,
        }

    async def __call__(self, request: Request) -> Response:
        handler = self._routes.get((request.method, request.url.path))
        if handler is None:
            return self._no_route(request)
        try:
            return await handler(request)
        except InputError as exc:
            return error_response(exc.status, "invalid_request", str(exc),
                                  _request_id(request), exc.field)

    def _no_route(self, request: Request) -> Response:
        methods = sorted(m for (m, p) in self._routes if p == request.url.path)
        if methods:
            return error_response(405, "method_not_allowed",
                                  f"{request.method} {request.url.path}: use {', '.join(methods)}",
                                  headers={"allow": ", ".join(methods)})
        return error_response(404, "not_found", f"no route for {request.url.path}")

    # --- inference -------------------------------------------------------------------

    async def _predict(self, request: Request) -> Response:
        request_id = _request_id(request)
        body = parse_json_object(await read_body(request, self._cfg.http.max_body_bytes))
        if "inputs" not in body:
            raise InputError("inputs: missing required field", field="inputs")
        inputs = body["inputs"]
        table = self._watcher.current
        arm = choose_arm(table, request.headers.get(self._sticky_header))
        if table.mode is Mode.SHADOW and table.challenger_active:
            self._spawn(self._shadow(table, inputs))
        arm, call = await self._serve(table, arm, inputs)
        return self._answer(arm, call, request_id)

    async def _serve(self, table: RoutingTable, arm: Arm, inputs: Any) -> tuple[Arm, ArmCall]:
        if arm is Arm.CHALLENGER:
            call = await self._call(table, Arm.CHALLENGER, inputs)
            self._observe(Arm.CHALLENGER, call)
            if call.outcome in ("ok", "client_error"):
                return arm, call
            # Failover: the client gets the champion's answer; the failure stays counted
            # against the challenger.
            self.counts[("challenger", "failover")] += 1
        call = await self._call(table, Arm.CHAMPION, inputs)
        self._observe(Arm.CHAMPION, call)
        return Arm.CHAMPION, call

    async def _call(self, table: RoutingTable, arm: Arm, inputs: Any) -> ArmCall:
        slot = table.slot_of(arm)
        if slot is None:
            return ArmCall(None, "unavailable", 0.0, f"no {arm.value} slot")
        timeout = (self._cfg.timeouts.champion_s if arm is Arm.CHAMPION
                   else self._cfg.timeouts.challenger_s)
        start = time.perf_counter()
        response = self._slots[slot].remote(inputs)
        try:
            reply = await asyncio.wait_for(response, timeout)
        except TimeoutError:
            response.cancel()
            return ArmCall(None, "timeout", time.perf_counter() - start,
                           f"{arm.value} timed out after {timeout:g}s")
        except Exception as exc:  # dead replica, actor error, cancelled request
            return ArmCall(None, "server_error", time.perf_counter() - start,
                           f"{arm.value} call failed: {type(exc).__name__}: {exc}")
        latency = time.perf_counter() - start
        if reply.get("ok"):
            return ArmCall(reply, "ok", latency)
        return ArmCall(reply, reply.get("kind", "server_error"), latency, reply.get("message", ""))

    async def _shadow(self, table: RoutingTable, inputs: Any) -> None:
        call = await self._call(table, Arm.CHALLENGER, inputs)
        self._observe(Arm.CHALLENGER, call)

    def _observe(self, arm: Arm, call: ArmCall) -> None:
        self.counts[(arm.value, call.outcome)] += 1

    def _answer(self, arm: Arm, call: ArmCall, request_id: str) -> Response:
        reply = call.reply
        if call.outcome == "client_error" and reply is not None:
            return error_response(int(reply.get("status", 422)), "invalid_input",
                                  str(reply.get("message")), request_id, reply.get("field"))
        if call.outcome != "ok" or reply is None:
            return error_response(502, "upstream_error",
                                  f"the champion model could not answer: {call.message}",
                                  request_id)
        model = reply["model"]
        # x-request-id is echoed (or generated) by Serve's proxy on every response.
        headers = {"x-gateway-arm": arm.value, "x-gateway-model-version": str(model["version"])}
        return json_response({"outputs": reply["outputs"], "model": model}, 200, headers)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- health and admin ------------------------------------------------------------

    async def _healthz(self, request: Request) -> Response:
        table = self._watcher.current
        return json_response({"status": "ok", "table_version": table.version})

    async def _admin_rollout(self, request: Request) -> Response:
        denied = check_bearer(request, self._token)
        if denied is not None:
            return denied
        table = self._watcher.current
        return json_response(self._rollout_view(table))

    def _rollout_view(self, table: RoutingTable) -> dict[str, Any]:
        def ref(arm: Arm) -> dict[str, Any] | None:
            model = table.model_of(arm)
            return model.to_dict() if model else None

        return {"table": table.to_dict(), "champion": ref(Arm.CHAMPION),
                "challenger": ref(Arm.CHALLENGER),
                "replica_counts": {f"{a}.{o}": n for (a, o), n in sorted(self.counts.items())}}

    async def _admin_weights(self, request: Request) -> Response:
        denied = check_bearer(request, self._token)
        if denied is not None:
            return denied
        body = parse_json_object(await read_body(request, self._cfg.http.max_body_bytes))
        weight, mode = parse_weight_update(body, self._watcher.current)
        raw = await self._sup.set_weights.remote(weight, mode.value, "admin-api")
        table = RoutingTable.from_dict(raw)
        await self._watcher.apply(table)
        return json_response(self._rollout_view(table))


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given and len(given) <= 128 and given.isprintable():
        return given
    return uuid.uuid4().hex
