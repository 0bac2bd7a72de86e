"""One look of the judge: what every guard sees when new observations arrive.

The supervisor feeds the judge per-look deltas (what ingress replicas flushed since the last
look). `Looks` keeps everything derived from the stream that more than one guard needs:
both arms' cumulative windows, the time-matched champion (`guards.matched`), the shared-
incident monitor (`guards.incident`) and the sticky-key design effect
(`guards.clustering`), and hands each look to the guards as one `Look`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guards.clustering import DesignEffect, design_effect
from guards.context import JudgeContext, ResourceReadings
from guards.incident import Health, HealthMonitor
from guards.matched import MatchedChampion
from guards.window import DEFAULT_SPEC, ArmWindow, WindowSpec


@dataclass(frozen=True, slots=True)
class Look:
    """Cumulative windows of both arms, this look's deltas, and what is derived from them.

    `d_champion`/`d_challenger` are what arrived at this look (per-look strata for the
    sequential tests); `matched` compares the arms over the same looks; `health` says
    whether the champion is healthy over the recent interval (absolute ceilings and the
    catastrophic path act only then); `deff` tempers evidence from sticky-key traffic.
    """

    champion: ArmWindow
    challenger: ArmWindow
    d_champion: ArmWindow
    d_challenger: ArmWindow
    matched: MatchedChampion
    health: Health
    deff: DesignEffect
    resources: ResourceReadings | None
    number: int


class Looks:
    """Turns a stream of per-look deltas (or cumulative windows) into `Look`s."""

    def __init__(self, context: JudgeContext, error_ceiling: float, slo_s: float | None,
                 spec: WindowSpec = DEFAULT_SPEC) -> None:
        self.spec = spec
        self.champion, self.challenger = ArmWindow(spec), ArmWindow(spec)
        self.matched = MatchedChampion(spec)
        self.health = HealthMonitor(
            error_rate=error_ceiling, window=context.incident_window,
            min_errors=context.incident_min_errors, catastrophic_run=context.catastrophic_run,
            slo_s=slo_s, slo_tail=0.05)
        self.number = 0
        self._deff = DesignEffect()

    def observe(self, d_champion: ArmWindow, d_challenger: ArmWindow,
                resources: ResourceReadings | None = None) -> Look:
        self.champion.merge(d_champion)
        self.challenger.merge(d_challenger)
        self.matched.add(d_champion, d_challenger)
        health = self.health.update(d_champion, d_challenger)
        if (d_champion.n_keyed or d_challenger.n_keyed or d_champion.batch_excess
                or d_challenger.batch_excess):
            self._deff = design_effect(self.champion, self.challenger)
        if not (d_champion.is_empty() and d_challenger.is_empty()):
            self.number += 1  # looks with data (the supervisor also judges on its ticks)
        return Look(self.champion, self.challenger, d_champion, d_challenger, self.matched,
                    health, self._deff, resources, self.number)

    def from_cumulative(self, champion: ArmWindow, challenger: ArmWindow,
                        resources: ResourceReadings | None = None) -> Look:
        """For callers holding cumulative windows: the deltas are the difference from the
        previous call's windows (counts must never decrease)."""
        return self.observe(champion.minus(self.champion), challenger.minus(self.challenger),
                            resources)

    def state(self) -> dict[str, Any]:
        return {"a": self.champion.to_bytes().hex(), "b": self.challenger.to_bytes().hex(),
                "m": self.matched.state(), "h": self.health.state(), "n": self.number}

    def load(self, d: Mapping[str, Any]) -> None:
        self.champion = ArmWindow.from_bytes(bytes.fromhex(d["a"]))
        self.challenger = ArmWindow.from_bytes(bytes.fromhex(d["b"]))
        self.matched.load(d["m"])
        self.health.load(d["h"])
        self.number = int(d["n"])
        self._deff = design_effect(self.champion, self.challenger)
