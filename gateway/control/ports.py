"""The seams of the supervisor: what it needs from the registry, the effect runner and the
resource sensor. The defaults are `ModelRegistry`, `EffectRunner` and `ResourceSensor`;
tests pass in-memory fakes with just these methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gateway.control import rollout as ro
from guards.context import ResourceReadings
from guards.verdict import Verdict
from guards.window import ArmWindow
from model_registry.refs import ModelRef

__all__ = ["Effects", "RolloutRegistry", "Sensors"]


class RolloutRegistry(Protocol):
    """The model registry calls of the control plane (`model_registry.ModelRegistry`)."""

    def alias_version(self, alias: str) -> str | None: ...

    def set_alias(self, alias: str, version: str | int, *, actor: str = ...,
                  reason: str = ...) -> str | None: ...

    def delete_alias(self, alias: str, *, actor: str = ..., reason: str = ...,
                     missing_ok: bool = ...) -> str | None: ...

    def aliases(self) -> dict[str, str]: ...

    def get_version(self, version: str | int) -> ModelRef: ...

    def get_version_tags(self, version: str | int) -> dict[str, str]: ...

    def set_version_tag(self, version: str | int, key: str, value: str) -> None: ...

    def get_model_tags(self) -> dict[str, str]: ...

    def set_model_tag(self, key: str, value: str) -> None: ...


class Effects(Protocol):
    """What the supervisor asks to be done after each decision (`EffectRunner`). The
    blocking ones are called from worker threads."""

    def record(self, old: ro.RolloutState, new: ro.RolloutState, event: ro.Event,
               table_to: int, table_from: int) -> None: ...

    def notify_and_track(self, old: ro.RolloutState, new: ro.RolloutState, event: ro.Event,
                         champion: ArmWindow, challenger: ArmWindow,
                         timeline: Mapping[str, Any] | None = None) -> None: ...

    def registry_pending(self) -> int: ...

    def retry_registry(self) -> int: ...

    def audit_manual(self, state: ro.RolloutState, actor: str, reason: str,
                     table_version: int) -> None: ...

    def record_verdict_metrics(self, verdict: Verdict) -> None: ...

    def record_event_metrics(self, event: ro.Event) -> None: ...

    def record_arm_metrics(self, state: ro.RolloutState, champion: ArmWindow,
                           challenger: ArmWindow, resources: ResourceReadings | None,
                           device: str = ...) -> None: ...

    def close(self) -> None: ...


class Sensors(Protocol):
    """What the supervisor reads about resources (`ResourceSensor`)."""

    def watch_pid(self, slot: str, replica_id: str, pid: Any) -> None: ...

    def device_label(self) -> str: ...

    def readings(self, state: ro.RolloutState, served: Mapping[str, int] | None = None,
                 engines: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 ) -> ResourceReadings | None: ...

    def close(self) -> None: ...
