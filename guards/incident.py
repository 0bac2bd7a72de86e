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
  latency SLO, its share of responses over the SLO is at most the quantile's tail share (the
  SLO itself: a champion at 10% over a p95 SLO is not meeting it, and a challenger beside
  it at the same 10% is no worse). Only then do the absolute ceilings count a look (a noisy
  "unhealthy" look only delays them: the choice depends on the champion's data alone);
- `champion_during_run`: the champion's requests over the looks of the challenger's current
  run of failures; the catastrophic path acts only when the champion answered well over
  that same interval (`champion_fine_during_run`);
- `champion_incident`: the champion is significantly worse than its own usual (one-sided
  binomial tail below `INCIDENT_P`, Chernoff bound) and above the ceiling; its usual is the
  rate of the looks outside incidents, so a long incident does not become the new normal;
- `challenger_degraded`: the challenger is significantly worse than the champion's usual in
  the same sense, or had a run of `catastrophic_run` consecutive failures in this look;
- `both_degraded`: a champion incident and a degraded challenger at once, a shared
  incident: the judge holds the rollout. Significance keeps ordinary noise (a few errors
  at once in a healthy stream) from holding healthy rollouts; a champion that is
  chronically above a ceiling is no incident either (the relative tests judge it).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guards.window import ArmWindow

INCIDENT_P = 1e-4  # how unlikely the recent failures must be under an arm's usual rate
RUN_SHARE = 0.1  # most champion failures during a challenger's run for it to be its own
_FLOOR = 1e-3  # least usual failure rate assumed (an arm with no failures so far)

# Per look: champion judged, errors, OK, over SLO; challenger judged, errors, OK, over SLO.
_CA_N, _CA_E, _CA_OK, _CA_S, _CB_N, _CB_E, _CB_OK, _CB_S = range(8)


@dataclass(frozen=True, slots=True)
class Health:
    champion_healthy: bool
    champion_incident: bool
    challenger_degraded: bool
    champion_recent: tuple[int, int]  # errors, judged over the recent interval
    challenger_recent: tuple[int, int]
    # errors, judged of the champion over the looks of the challenger's current failure run
    champion_during_run: tuple[int, int] = (0, 0)

    def champion_fine_during_run(self, min_requests: int) -> bool:
        """Whether the champion answered well while the challenger kept failing: at least
        `min_requests` judged, at most a tenth of them failed (the catastrophic path's
        condition; a shared stall fails the champion's requests of the same moments)."""
        errors, n = self.champion_during_run
        return n >= min_requests and errors <= RUN_SHARE * n and not self.champion_incident

    @property
    def both_degraded(self) -> bool:
        return self.champion_incident and self.challenger_degraded

    def describe(self) -> str:
        (ea, na), (eb, nb) = self.champion_recent, self.challenger_recent
        return (f"champion {ea}/{na} failed, challenger {eb}/{nb} failed over the last "
                f"{na + nb} requests")


def binomial_tail_bound(k: int, n: int, p: float) -> float:
    """Chernoff bound on P(X >= k) for X ~ Binomial(n, p): exp(-n KL(k/n || p)) when
    k/n > p (an upper bound, so a test using it is conservative), else 1."""
    if n <= 0 or k <= n * p:
        return 1.0
    q = k / n
    if q >= 1.0:
        return p**n
    kl = q * math.log(q / p) + (1.0 - q) * math.log((1.0 - q) / (1.0 - p))
    return math.exp(-n * kl)


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
        self._during_run = [0, 0]  # champion errors, judged since the challenger's last OK
        # champion errors, judged, over SLO, OK responses of the looks outside incidents
        self._baseline = [0, 0, 0, 0]

    def update(self, champion: ArmWindow, challenger: ArmWindow) -> Health:
        row = [*self._counts(champion), *self._counts(challenger)]
        if any(row):
            for i, x in enumerate(row):
                self._recent[i] += x
            self._looks.append([*row, 0])
            self._trim()
        # The challenger's current failure run began after its last OK response. A look
        # with one may hold the run's start, but its champion requests mostly came before
        # it: they are not counted (conservative); later looks are the run's interval.
        if challenger.n_latency() > 0:
            self._during_run = [0, 0]
        else:
            self._during_run[0] += champion.n_errors
            self._during_run[1] += champion.n_judged
        r, base = self._recent, self._baseline
        usual = max(base[0] / base[1] if base[1] else 0.0, _FLOOR)
        usual_slo = max(base[2] / base[3] if base[3] else 0.0, self._slo_tail)
        healthy = not (self._over(r[_CA_E], r[_CA_N], self._rate)
                       or self._over(r[_CA_S], r[_CA_OK], self._slo_tail))
        incident = self._worse(r[_CA_E], r[_CA_N], usual, self._rate) or \
            self._worse(r[_CA_S], r[_CA_OK], usual_slo, 2.0 * self._slo_tail)
        if incident and self._looks:
            self._looks[-1][8] = 1
        b_bad = (challenger.max_failure_run >= self._run
                 or self._worse(r[_CB_E], r[_CB_N], usual, self._rate)
                 or self._worse(r[_CB_S], r[_CB_OK], usual_slo, 2.0 * self._slo_tail))
        return Health(healthy, incident, b_bad, (r[_CA_E], r[_CA_N]), (r[_CB_E], r[_CB_N]),
                      (self._during_run[0], self._during_run[1]))

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
                for i, col in enumerate((_CA_E, _CA_N, _CA_S, _CA_OK)):
                    self._baseline[i] += old[col]

    def _over(self, events: int, n: int, rate: float) -> bool:
        return n > 0 and events >= self._min_errors and events / n > rate

    def _worse(self, events: int, n: int, usual: float, ceiling: float) -> bool:
        """Above the ceiling, and significantly above the usual rate."""
        return self._over(events, n, ceiling) and binomial_tail_bound(events, n, usual) \
            < INCIDENT_P

    def state(self) -> dict[str, Any]:
        return {"looks": [list(x) for x in self._looks], "base": list(self._baseline),
                "run": list(self._during_run)}

    def load(self, d: Mapping[str, Any]) -> None:
        self._looks = deque([int(x) for x in row] for row in d["looks"])
        self._recent = [sum(row[i] for row in self._looks) for i in range(8)]
        self._baseline = [int(x) for x in d["base"]]
        self._during_run = [int(x) for x in d.get("run", (0, 0))]
