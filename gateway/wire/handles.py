"""The supervisor actor as the serving plane sees it: the methods it calls, and the lookup.

The supervisor lives in `gateway.control`, which the serving plane may not import; what the
two share is this contract. `tests/unit/gateway/wire/test_handles.py` holds it to the
supervisor's real methods.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, ParamSpec, Protocol, TypeVar, cast

P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)


class RemoteMethod(Protocol[P, R_co]):
    """An actor method on a handle: `.remote(...)` starts the call and returns its
    ObjectRef, to await for the result or to drop (fire-and-forget)."""

    def remote(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R_co]: ...


class RelayHandle(Protocol):
    """Where an ingress replica sends its window deltas and long-polls the routing table:
    the supervisor itself, or its node's aggregator (`control.aggregation: node`), which
    answers both with the supervisor's signatures. See `SupervisorHandle` for the methods."""

    wait_for_table: RemoteMethod[[int, float, str | None], dict[str, Any] | None]
    ingest: RemoteMethod[[str, dict[str, bytes], list[tuple[str, str]]], None]


class SupervisorHandle(Protocol):
    """What the serving plane calls on the supervisor actor (`Supervisor` in
    `gateway.control.supervisor`), and nothing more.

    - `get_table()`: the current RoutingTable, as a dict.
    - `wait_for_table(known_version, timeout_s, known_instance)`: a newer table than
      `known_version` (at once when the supervisor is not the instance `known_instance`;
      its answers carry its instance id as `supervisor`), or
      None when none came within `timeout_s` (the long poll of `TableWatcher`).
    - `ingest(replica_id, deltas, request_ids)`: an ingress replica's window deltas, by model
      version, and the (request id, model version) pairs it served since the last flush.
    - `ingest_hallucination(model_version, scores)`: hallucination scores of one version.
    - `feedback(request_id, value)`: "recorded", "unknown" or "expired".
    - `report_slot(slot, replica_id, report)`: a slot replica's health and memory.
    - `slot_lost(slot, version, actor_id, message, creation_failed)`: a slot replica died
      under a call (Ray's error text says why).
    - `status()`, `operate(op, actor, reason)`, `set_weights(weight, mode, actor)`: the
      admin API's view and operations (dicts with the table; `operate` may hold `error`).
    - `report(rollout_id)`: the rollout report's HTML (the current or last rollout's when
      None), or None when there is none.
    - `aggregator_for(node_id)`: the `RelayHandle` of node `node_id`'s aggregator (made on
      first ask, on that node).
    """

    get_table: RemoteMethod[[], dict[str, Any]]
    wait_for_table: RemoteMethod[[int, float, str | None], dict[str, Any] | None]
    ingest: RemoteMethod[[str, dict[str, bytes], list[tuple[str, str]]], None]
    ingest_hallucination: RemoteMethod[[str, list[float]], None]
    feedback: RemoteMethod[[str, float], str]
    report_slot: RemoteMethod[[str, str, dict[str, Any]], None]
    slot_lost: RemoteMethod[[str, str, str, str, bool], None]
    status: RemoteMethod[[], dict[str, Any]]
    operate: RemoteMethod[[str, str, str], dict[str, Any]]
    set_weights: RemoteMethod[[float, str, str], dict[str, Any]]
    report: RemoteMethod[[str | None], str | None]
    aggregator_for: RemoteMethod[[str], Any]


def get_supervisor(name: str, namespace: str, wait_s: float = 10.0) -> SupervisorHandle:
    """The named supervisor actor's handle; waits briefly, since the supervisor is created
    asynchronously (by `gateway.app`) and a replica may start before it is registered."""
    import ray  # here, so the wire's pure modules (routing, replies) stay free of Ray

    deadline = time.monotonic() + wait_s
    while True:
        try:
            # An ActorHandle is untyped; its methods are the supervisor's (see the tests).
            return cast(SupervisorHandle, ray.get_actor(name, namespace=namespace))
        except ValueError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
