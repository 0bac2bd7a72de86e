"""Shared incidents: is the champion healthy over the interval the challenger is judged on?

A stall, a slow downstream or a busy node hits both arms. Relative tests compare the arms
look by look and are not fooled; but the catastrophic fast path (a run of consecutive
failures) and the absolute ceilings (error rate > 1%, latency SLO, error budget) look at the
challenger alone. They may act only when the champion is healthy over the same interval.

`HealthMonitor` keeps both arms' counts over the most recent looks (at least `window`
champion requests) and says, at each look:
- `champion_healthy`: the champion itself meets the ceilings over the recent interval: its
  error rate (timeouts included: the ingress censors both arms at the challenger's
  deadline) is at most `error_rate`, or it has fewer than `min_errors` errors; with a
  latency SLO, its share of responses over the SLO is at most three times the quantile's
  tail share. Only then do the absolute ceilings count a look, and only then does the
  catastrophic path act;
- `champion_incident`: the champion got worse than its own usual: recent error rate above
  `max(error_rate, 3 x its baseline)` (the baseline counts only looks outside incidents, so
  a long incident does not become the new normal), or over the SLO as above;
- `challenger_degraded`: its recent error rate above `error_rate` (with `min_errors`), or
  over the SLO as above, or a run of `catastrophic_run` consecutive failures in this look;
- `both_degraded`: a champion incident and a degraded challenger at once, a shared
  incident: the judge holds the rollout. A champion that is chronically above a ceiling
  is no incident: the relative tests judge such a rollout, and it is not held forever.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guards.window import ArmWindow

# Per look: champion judged, errors, OK, over SLO; challenger judged, errors, OK, over SLO.
_CA_N, _CA_E, _CA_OK, _CA_S, _CB_N, _CB_E, _CB_OK, _CB_S = range(8)


@dataclass(frozen=True, slots=True)
class Health:
    champion_healthy: bool
    champion_incident: bool
    challenger_degraded: bool
    champion_recent: tuple[int, int]  # errors, judged over the recent interval
    challenger_recent: tuple[int, int]

    @property
    def both_degraded(self) -> bool:
        return self.champion_incident and self.challenger_degraded

    def describe(self) -> str:
        (ea, na), (eb, nb) = self.champion_recent, self.challenger_recent
        return (f"champion {ea}/{na} failed, challenger {eb}/{nb} failed over the last "
                f"{na + nb} requests")


class HealthMonitor:
    def __init__(self, *, error_rate: float, window: int, min_errors: int,
                 catastrophic_run: int, slo_s: float | None, slo_tail: float) -> None:
        self._rate = error_rate
        self._window = window
        self._min_errors = min_errors
        self._run = catastrophic_run
        self._slo = slo_s
        self._slo_tail = slo_tail
        self._looks: deque[list[int]] = deque()  # 8 counts + whether in a champion incident
        self._recent = [0] * 8
        self._baseline = [0, 0]  # champion errors, judged of looks outside incidents

    def update(self, champion: ArmWindow, challenger: ArmWindow) -> Health:
        row = [*self._counts(champion), *self._counts(challenger)]
        if any(row):
            for i, x in enumerate(row):
                self._recent[i] += x
            self._looks.append([*row, 0])
            self._trim()
        r = self._recent
        base = self._baseline
        base_rate = base[0] / base[1] if base[1] else 0.0
        slow_a = self._over_slo(r[_CA_S], r[_CA_OK])
        healthy = not (self._over(r[_CA_E], r[_CA_N], self._rate) or slow_a)
        incident = self._over(r[_CA_E], r[_CA_N], max(self._rate, 3.0 * base_rate)) or slow_a
        if incident and self._looks:
            self._looks[-1][8] = 1
        b_bad = (challenger.max_failure_run >= self._run
                 or self._over(r[_CB_E], r[_CB_N], self._rate)
                 or self._over_slo(r[_CB_S], r[_CB_OK]))
        return Health(healthy, incident, b_bad, (r[_CA_E], r[_CA_N]), (r[_CB_E], r[_CB_N]))

    def _counts(self, w: ArmWindow) -> tuple[int, int, int, int]:
        n_ok = w.n_latency()
        over = w.count_above(self._slo) if self._slo is not None and n_ok else 0
        return w.n_judged, w.n_errors, n_ok, over

    def _trim(self) -> None:
        # keep the shortest run of recent looks holding >= window champion requests
        while len(self._looks) > 1 and self._recent[_CA_N] - self._looks[0][_CA_N] >= \
                self._window:
            old = self._looks.popleft()
            for i in range(8):
                self._recent[i] -= old[i]
            if not old[8]:
                self._baseline[0] += old[_CA_E]
                self._baseline[1] += old[_CA_N]

    def _over(self, errors: int, n: int, rate: float) -> bool:
        return n > 0 and errors >= self._min_errors and errors / n > rate

    def _over_slo(self, over: int, n_ok: int) -> bool:
        return (self._slo is not None and n_ok > 0 and over >= self._min_errors
                and over / n_ok > min(3.0 * self._slo_tail, 0.5))

    def state(self) -> dict[str, Any]:
        return {"looks": [list(x) for x in self._looks], "base": list(self._baseline)}

    def load(self, d: Mapping[str, Any]) -> None:
        self._looks = deque([int(x) for x in row] for row in d["looks"])
        self._recent = [sum(row[i] for row in self._looks) for i in range(8)]
        self._baseline = [int(x) for x in d["base"]]
