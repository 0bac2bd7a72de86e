"""In-memory stand-ins for the supervisor's seams (no Ray, no MLflow, no sampler thread),
a clock moved by hand, and a builder for a supervisor wired to them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.control import rollout as ro
from gateway.control.supervisor import Supervisor
from gateway.wire.routing import Mode, RoutingTable
from guards.context import ResourceReadings
from guards.verdict import Verdict
from guards.window import ArmWindow
from model_registry.refs import ModelRef
from tests.unit.guards.helpers import fill

MODEL = "fraud"


class FakeRegistry:
    """The registry calls the supervisor makes, on dicts. Shared by supervisors that
    'restart' on it, as the real registry is."""

    def __init__(self) -> None:
        self.versions: dict[str, ModelRef] = {}
        self.alias_map: dict[str, str] = {}
        self.version_tags: dict[str, dict[str, str]] = {}
        self.model_tags: dict[str, str] = {}
        self._lock = threading.Lock()  # the supervisor calls it from worker threads
        self.down = False  # True: every call fails, as an unreachable MLflow server's do

    def _check_up(self) -> None:
        if self.down:
            raise ConnectionError("registry unreachable (test)")

    def add(self, version: str) -> ModelRef:
        ref = ModelRef(MODEL, version, f"/models/{version}", run_id=f"run-{version}")
        self.versions[version] = ref
        return ref

    def alias_version(self, alias: str) -> str | None:
        self._check_up()
        return self.alias_map.get(alias)

    def aliases(self) -> dict[str, str]:
        self._check_up()
        with self._lock:
            return dict(self.alias_map)

    def set_alias(self, alias: str, version: str | int, *, actor: str = "gateway",
                  reason: str = "") -> str | None:
        self._check_up()
        with self._lock:
            previous, self.alias_map[alias] = self.alias_map.get(alias), str(version)
        return previous

    def delete_alias(self, alias: str, *, actor: str = "gateway", reason: str = "",
                     missing_ok: bool = True) -> str | None:
        self._check_up()
        with self._lock:
            return self.alias_map.pop(alias, None)

    def get_version(self, version: str | int) -> ModelRef:
        self._check_up()
        return self.versions[str(version)]

    def get_version_tags(self, version: str | int) -> dict[str, str]:
        self._check_up()
        if str(version) not in self.versions:
            raise KeyError(f"no version {version}")
        with self._lock:
            return dict(self.version_tags.get(str(version), {}))

    def set_version_tag(self, version: str | int, key: str, value: str) -> None:
        self._check_up()
        with self._lock:
            self.version_tags.setdefault(str(version), {})[key] = str(value)

    def get_model_tags(self) -> dict[str, str]:
        self._check_up()
        with self._lock:
            return dict(self.model_tags)

    def set_model_tag(self, key: str, value: str) -> None:
        self._check_up()
        with self._lock:
            self.model_tags[key] = str(value)


@dataclass(frozen=True)
class Recorded:
    """One `EffectRunner.record` call: the durable record of a transition."""

    event: ro.Event
    phase_from: ro.Phase
    phase_to: ro.Phase
    table_to: int
    table_from: int


class FakeEffects:
    """Records what the supervisor asks for; does nothing else."""

    def __init__(self) -> None:
        self.records: list[Recorded] = []
        self.notified: list[str] = []
        self.timelines: list[dict[str, Any]] = []  # finished rollouts' records
        self.manual: list[str] = []
        self.verdicts: list[Verdict] = []
        self.closed = False

    @property
    def events(self) -> list[str]:
        return [r.event.name for r in self.records]

    def record(self, old: ro.RolloutState, new: ro.RolloutState, event: ro.Event,
               table_to: int, table_from: int) -> None:
        self.records.append(Recorded(event, old.phase, new.phase, table_to, table_from))

    def notify_and_track(self, old: ro.RolloutState, new: ro.RolloutState, event: ro.Event,
                         champion: ArmWindow, challenger: ArmWindow,
                         timeline: Mapping[str, Any] | None = None) -> None:
        self.notified.append(event.name)
        if timeline is not None:
            self.timelines.append(dict(timeline))

    def registry_pending(self) -> int:
        return 0

    def retry_registry(self) -> int:
        return 0

    def audit_manual(self, state: ro.RolloutState, actor: str, reason: str,
                     table_version: int) -> None:
        self.manual.append(reason)

    def record_verdict_metrics(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)

    def record_event_metrics(self, event: ro.Event) -> None:
        pass

    def record_arm_metrics(self, state: ro.RolloutState, champion: ArmWindow,
                           challenger: ArmWindow, resources: ResourceReadings | None,
                           device: str = "cpu") -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeSensors:
    """No readings (a CPU host before its first sample); remembers the PIDs it was given."""

    def __init__(self) -> None:
        self.pids: dict[tuple[str, str], Any] = {}

    def watch_pid(self, slot: str, replica_id: str, pid: Any) -> None:
        self.pids[(slot, replica_id)] = pid

    def device_label(self) -> str:
        return "cpu"

    def readings(self, state: ro.RolloutState, served: Mapping[str, int] | None = None,
                 engines: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 ) -> ResourceReadings | None:
        return None

    def close(self) -> None:
        pass


class ManualClock:
    """Time moves only on `advance`, which also wakes the sleepers whose time has come."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [(t, f) for t, f in self._sleepers if t <= self.now]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self.now]
        for _, future in due:
            if not future.done():
                future.set_result(None)

    @property
    def sleeping(self) -> int:
        return sum(not f.done() for _, f in self._sleepers)


def config(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A judged config: the default guards, these steps, promotion without an operator."""
    rollout = {"steps": steps, "auto_promote": True, "rollback_window_s": 60.0,
               **extra.pop("rollout", {})}
    return {"app_name": "gw-unit", "model": {"name": MODEL}, "rollout": rollout,
            "supervisor": {"tick_s": 0.25, "registry_poll_s": 1.0, "judge_persist_s": 5.0},
            **extra}


def supervisor(cfg: dict[str, Any], registry: FakeRegistry, effects: FakeEffects,
               clock: ManualClock, champion: ModelRef) -> Supervisor:
    table = RoutingTable(version=0, champion_slot="a", challenger_slot=None,
                         challenger_weight=0.0, mode=Mode.PINNED,
                         slot_models={"a": champion, "b": None})
    return Supervisor(cfg, "fake://registry", table.to_dict(), registry=registry,
                      effects=effects, sensors=FakeSensors(), clock=clock)


def deltas(champion: ModelRef, challenger: ModelRef, rng: np.random.Generator, *,
           n: int = 200, challenger_err: float = 0.0) -> dict[str, bytes]:
    """One ingress flush: `n` requests on each arm, as serialized window deltas."""
    return {champion.version: fill(ArmWindow(), n, rng, err=0.0).to_bytes(),
            challenger.version: fill(ArmWindow(), n, rng, err=challenger_err).to_bytes()}


def slot_report(ref: ModelRef, healthy: bool = True, error: str | None = None,
                pid: int = 4242) -> dict[str, Any]:
    """What a slot replica reports once it loaded `ref` (`ModelServer._report`)."""
    return {"healthy": healthy, "model": ref.to_dict(), "error": error, "pid": pid,
            "memory": None}
