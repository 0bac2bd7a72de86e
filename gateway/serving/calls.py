"""Calls to the arms, as the ingress sees them: shared by `/v1/predict` (`ingress`) and the
OpenAI endpoints (`openai_routes`), so neither module imports the other's internals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import Request

from gateway.config import TimeoutsConfig
from gateway.serving.http import REQUEST_ID_HEADER, new_request_id, valid_request_id
from gateway.wire.replies import CallOutcome, ServedModel, SlotAnswer, SlotError, SlotReply
from gateway.wire.routing import Arm, Mode, RoutingTable


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes: the table it is routed by (a snapshot: the table may change
    while it is in flight), the chosen arm, and its sticky key's analysis bucket, if any."""

    table: RoutingTable
    arm: Arm
    bucket: int | None


@dataclass(frozen=True, slots=True)
class ArmCall:
    """The outcome of one call to a model slot, as the ingress saw it."""

    reply: SlotReply | None
    outcome: CallOutcome
    latency_s: float
    message: str = ""
    # Whether the call is evidence in the arms' comparison: False for a failover retry and
    # for a champion call censored at the comparison deadline (see `comparison_deadline`).
    compared: bool = True

    @property
    def answer(self) -> SlotAnswer | None:
        """The slot's answer when the call succeeded, else None."""
        if self.outcome is CallOutcome.OK and isinstance(self.reply, SlotAnswer):
            return self.reply
        return None

    @property
    def client_error(self) -> SlotError | None:
        """The slot's refusal when the request was at fault (the client gets it), else None."""
        if self.outcome is CallOutcome.CLIENT_ERROR and isinstance(self.reply, SlotError):
            return self.reply
        return None


class Censor:
    """A champion call's place in the comparison window, armed for one request.

    The challenger's calls time out at the comparison deadline; a champion call still running
    then is censored: a TIMEOUT at the deadline goes into the champion's window at that moment
    (a timer callback, no task), so it is flushed with the challenger's timeouts of requests
    that started at the same time. Whatever the call does later stays out of the window.
    """

    __slots__ = ("fired", "handle")

    def __init__(self) -> None:
        self.fired = False
        self.handle: asyncio.TimerHandle | None = None

    def stop(self) -> bool:
        """The call finished: True when it did so before the deadline (it is compared)."""
        if self.handle is not None:
            self.handle.cancel()
        return not self.fired


def comparison_deadline(table: RoutingTable, timeouts: TimeoutsConfig) -> float | None:
    """The deadline both arms are judged at for a request routed by `table`: what the
    challenger's call may take (`challenger_s`, or `shadow_s` for a shadow copy). None when no
    challenger gets traffic, or when the champion's own timeout comes first."""
    if not table.challenger_active:
        return None
    deadline = timeouts.shadow_s if table.mode is Mode.SHADOW else timeouts.challenger_s
    return deadline if deadline < timeouts.champion_s else None


def call_timeout(arm: Arm, timeouts: TimeoutsConfig) -> float:
    """What a call to `arm` may take (a shadow copy has its own, `shadow_s`)."""
    return timeouts.champion_s if arm is Arm.CHAMPION else timeouts.challenger_s


def served_version(table: RoutingTable, arm: Arm) -> str:
    """The model version `table` assigns to `arm` ("none" without one): whom an outcome is
    attributed to when no answer named its model."""
    ref = table.model_of(arm)
    return ref.version if ref else "none"


def request_id_of(request: Request) -> str:
    """The client's `x-request-id` when it is valid (`http.REQUEST_ID_PATTERN`: at most 128
    URL-safe characters), else a generated one: an invalid id is replaced, as Envoy does,
    never echoed (Serve's proxy echoes the header it passes on; see `http.HeaderGuard`)."""
    given = request.headers.get(REQUEST_ID_HEADER)
    return given if given is not None and valid_request_id(given) else new_request_id()


def arm_headers(arm: Arm, model: ServedModel) -> dict[str, str]:
    """Which arm and model version answered (x-request-id is echoed, or generated, by Serve's
    proxy on every response)."""
    return {"x-gateway-arm": arm.value, "x-gateway-model-version": model.version}
