"""The supervisor handle the serving plane uses matches the supervisor actor's methods, and
the lookup waits for the actor to be registered."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

import pytest
import ray

from gateway.control.aggregator import DeltaAggregator
from gateway.control.supervisor import Supervisor
from gateway.wire.handles import RelayHandle, SupervisorHandle, get_supervisor

DECLARED = typing.get_type_hints(SupervisorHandle)


def test_the_handle_declares_what_the_serving_plane_calls() -> None:
    assert set(DECLARED) == {"get_table", "wait_for_table", "ingest", "ingest_hallucination",
                             "feedback", "report_slot", "slot_lost", "status", "operate",
                             "set_weights", "aggregator_for", "report"}


def _accepts(declared: Any, actual: Any) -> bool:
    """`actual` (the supervisor's parameter type) takes every `declared` value."""
    return declared == actual or (isinstance(actual, types.UnionType)
                                  and declared in typing.get_args(actual))


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_each_declared_method_is_the_supervisors(name: str) -> None:
    method = getattr(Supervisor, name)
    assert inspect.iscoroutinefunction(method)
    args, returns = typing.get_args(DECLARED[name])
    params = list(inspect.signature(method).parameters.values())[1:]  # without self
    required = [p for p in params if p.default is inspect.Parameter.empty]
    assert len(required) <= len(args) <= len(params)
    hints = typing.get_type_hints(method)
    for declared, param in zip(args, params, strict=False):
        assert _accepts(declared, hints[param.name]), (name, param.name)
    assert hints["return"] == returns


@pytest.mark.parametrize("name", sorted(typing.get_type_hints(RelayHandle)))
def test_the_node_aggregator_answers_what_a_replica_sends_the_supervisor(name: str) -> None:
    """An ingress replica flushing through its node's aggregator calls it as it would call
    the supervisor: same methods, same parameters."""
    ours, theirs = getattr(DeltaAggregator, name), getattr(Supervisor, name)
    assert inspect.iscoroutinefunction(ours)
    def params(method: object) -> list[str]:
        # Ray's tracing adds `_ray_trace_ctx` to an actor class's methods in place once the
        # class is made remote in this process (other tests do): not part of the contract.
        return [p for p in inspect.signature(method).parameters  # type: ignore[arg-type]
                if p != "_ray_trace_ctx"]

    assert params(ours) == params(theirs)
    assert typing.get_type_hints(RelayHandle)[name] == DECLARED[name]


def test_get_supervisor_waits_for_the_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str | None]] = []
    handle = object()

    def get_actor(name: str, namespace: str | None = None) -> object:
        calls.append((name, namespace))
        if len(calls) < 3:
            raise ValueError("not registered yet")
        return handle

    monkeypatch.setattr(ray, "get_actor", get_actor)
    assert get_supervisor("sup", "ns", wait_s=5.0) is handle
    assert calls == [("sup", "ns")] * 3


def test_get_supervisor_gives_up_after_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    def get_actor(name: str, namespace: str | None = None) -> object:
        raise ValueError(f"no actor {name}")

    monkeypatch.setattr(ray, "get_actor", get_actor)
    with pytest.raises(ValueError, match="no actor sup"):
        get_supervisor("sup", "ns", wait_s=0.0)
