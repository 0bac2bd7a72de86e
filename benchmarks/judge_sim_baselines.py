"""Two baseline canary judges, fed the same requests as ours, analysing every `INTERVAL_S`.

- flagger: fixed thresholds on each interval's challenger data (Flagger's metric checks):
  error rate > 1% or p95 latency > 1.5x the champion's true p95 is a failed check; rollback
  after `THRESHOLD` = 5 failed checks (Flagger's example analysis).
- kayenta: Mann-Whitney U (scipy.stats.mannwhitneyu) on the cumulative challenger samples vs
  an equal-size sample of the champion's ("baseline"), for latency (greater), errors
  (greater) and output (two-sided), at 98% confidence; any failing metric fails the canary
  (score < 75%).

Each records the challenger requests seen when it would have rolled back (None: never).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.stats import mannwhitneyu

from benchmarks.judge_sim_traffic import ARM, LAT, OUT, OV
from guards.window import Outcome

Array = npt.NDArray[np.float64]
INTERVAL_S = 10.0
THRESHOLD = 5
CONFIDENCE = 0.98


@dataclass
class Baselines:
    true_p95: float
    flagger: int | None = None
    kayenta: int | None = None
    next_at: float = INTERVAL_S
    failed_checks: int = 0
    _a: list[Array] = field(default_factory=list)  # judged rows: latency(NaN), err, output
    _b: list[Array] = field(default_factory=list)
    _interval_b: list[Array] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.flagger is not None and self.kayenta is not None

    def add(self, rows: Array) -> None:
        judged = rows[rows[:, OUT] != Outcome.CLIENT_ERROR]
        if judged.size == 0:
            return
        ok = judged[:, OUT] == Outcome.OK
        x = np.column_stack([np.where(ok, judged[:, LAT], np.nan), (~ok).astype(np.float64),
                             judged[:, OV]])
        chal = judged[:, ARM] == 1
        if chal.any():
            self._b.append(x[chal])
            self._interval_b.append(x[chal])
        if not chal.all():
            self._a.append(x[~chal])

    def step(self, now: float, challenger_requests: int) -> None:
        if now < self.next_at:
            return
        self.next_at += INTERVAL_S
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if self.flagger is None and self._flagger_check():
                self.flagger = challenger_requests
            if self.kayenta is None and self._kayenta_check():
                self.kayenta = challenger_requests
        self._interval_b = []

    def _flagger_check(self) -> bool:
        if not self._interval_b:
            return False
        b = np.concatenate(self._interval_b)
        rate = float(b[:, 1].mean())
        lat = b[:, 0][~np.isnan(b[:, 0])]
        p95 = float(np.percentile(lat, 95)) if lat.size else 0.0
        if rate > 0.01 or p95 > 1.5 * self.true_p95:
            self.failed_checks += 1
        return self.failed_checks >= THRESHOLD

    def _kayenta_check(self) -> bool:
        if not self._a or not self._b:
            return False
        self._a = [np.concatenate(self._a)]
        self._b = [np.concatenate(self._b)]
        a, b = self._a[0], self._b[0]
        n = min(a.shape[0], b.shape[0])
        if n < 20:
            return False
        a = a[np.linspace(0, a.shape[0] - 1, n).astype(np.int64)]
        alpha = 1.0 - CONFIDENCE
        for col, alt in ((0, "greater"), (1, "greater"), (2, "two-sided")):
            xa, xb = a[:, col], b[:, col]
            if col == 0:  # failed requests have no latency: use the arm's median
                xa = np.where(np.isnan(xa), np.nanmedian(xa), xa)
                xb = np.where(np.isnan(xb), np.nanmedian(xb), xb)
            elif col == 2:
                xa, xb = xa[~np.isnan(xa)], xb[~np.isnan(xb)]
            if xa.size < 2 or xb.size < 2 or np.isnan(xa).any() or np.isnan(xb).any():
                continue
            p = float(mannwhitneyu(xb, xa, alternative=alt, method="asymptotic").pvalue)
            # two-sided p at 98% confidence; a one-sided "bad direction" p is half of it
            limit = alpha / 2 if alt == "greater" else alpha
            if p < limit:
                return True
        return False
