"""The observations of each model version during a rollout: cumulative windows (since the
rollout began, for status, metrics and reports) and the deltas not judged yet (the judge's
next look)."""

from __future__ import annotations

from collections.abc import Mapping

from guards.window import ArmWindow
from model_registry.refs import ModelRef

__all__ = ["Evidence"]


class Evidence:
    """Windows keyed by model version."""

    def __init__(self) -> None:
        self._windows: dict[str, ArmWindow] = {}
        self._pending: dict[str, ArmWindow] = {}

    def add(self, version: str, delta: ArmWindow) -> None:
        """Into the version's cumulative window and into the next look's delta (which may
        own `delta` itself)."""
        cumulative = self._windows.get(version)
        if cumulative is None:
            self._windows[version] = delta.copy()
        else:
            cumulative.merge(delta)
        pending = self._pending.get(version)
        if pending is None:
            self._pending[version] = delta
        else:
            pending.merge(delta)

    def clear(self) -> None:
        self._windows.clear()
        self._pending.clear()

    def seed(self, version: str, window: ArmWindow) -> None:
        """Start `version`'s cumulative window at `window` (a resumed judge's evidence)."""
        self._windows[version] = window.copy()

    def take_pending(self, champion: ModelRef | None,
                     challenger: ModelRef | None) -> tuple[ArmWindow, ArmWindow]:
        """This look's deltas of both arms; data of other versions is dropped."""
        pending, self._pending = self._pending, {}
        return ((pending.get(champion.version) if champion else None) or ArmWindow(),
                (pending.get(challenger.version) if challenger else None) or ArmWindow())

    def arms(self, champion: ModelRef | None,
             challenger: ModelRef | None) -> tuple[ArmWindow, ArmWindow]:
        """Both arms' cumulative windows (live: copy before handing them to another
        thread)."""
        empty = ArmWindow()
        return (self._windows.get(champion.version, empty) if champion else empty,
                self._windows.get(challenger.version, empty) if challenger else empty)

    def served(self, slot_models: Mapping[str, ModelRef | None]) -> dict[str, int]:
        """Slot -> requests its model has served since the rollout began."""
        return {slot: self._windows[ref.version].n_requests
                for slot, ref in slot_models.items()
                if ref is not None and ref.version in self._windows}
