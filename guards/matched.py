"""Time-matched comparison: the champion reweighted to the challenger's share of each look.

The challenger's share of traffic changes from step to step (5% -> 25% -> 50%), so its
cumulative data lean towards late looks and the champion's towards early ones. Anything
both arms see that changes during the rollout (traffic mix, load, time of day) then looks
like a difference between the arms if cumulative windows are compared directly.

Direct standardisation fixes that: each look is a stratum; the champion's data in stratum t
get the weight w_t = n_B,t / n_A,t, so the reweighted champion has the challenger's profile
over the looks, and a shift both arms see cancels. A look where only one arm has data is
held back and merged into the next (the grouping depends on exposures only, never on
outcomes). The weighted champion's effective sample size is (sum w n)^2 / sum w^2 n, which
is what its estimates' variances use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guards.stats import log_e_log_ratio
from guards.window import (
    ArmWindow,
    Moments,
    WindowSpec,
    combine_moment_sums,
    sketch_quantile_index,
)

SKETCHES = ("latency", "service", "ttft")


class MatchedChampion:
    """The champion's data reweighted to the challenger's profile over the looks (see
    module doc), beside the challenger's data over the same (closed) strata."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.challenger = ArmWindow(spec)  # challenger data of closed strata
        self._pa, self._pb = ArmWindow(spec), ArmWindow(spec)  # the open stratum
        self._sk: dict[str, dict[int, float]] = {k: {} for k in SKETCHES}
        self._out = [0.0] * (len(spec.output_edges) + 1)
        self._in = [0.0] * (len(spec.input_edges) + 1)
        self._busy = [0.0, 0.0, 0.0, 0.0]  # sum w n, sum w^2 n, weighted sum, sum of squares
        self._m: list[float] = []  # weighted moment sums (busy, tokens; see moments())
        self._kpi = [0.0, 0.0, 0.0, 0.0]  # same four for KPI outcomes (own strata)
        self._pk = [0, 0, 0, 0, 0, 0]  # open KPI stratum: n, sum, sumsq per arm (fixed pt)
        self._kpi_b = [0, 0, 0]  # challenger KPI over closed KPI strata (fixed point)

    # ---- adding looks --------------------------------------------------------------
    def add(self, champion: ArmWindow, challenger: ArmWindow) -> None:
        self._pa.merge(champion)
        self._pb.merge(challenger)
        n_a, n_b = self._pa.n_judged, self._pb.n_judged
        if n_a > 0 and n_b > 0:
            self._close(self._pa, self._pb, n_b / n_a)
            self._pa, self._pb = ArmWindow(self.spec), ArmWindow(self.spec)
        self._add_kpi(champion, challenger)

    def _close(self, a: ArmWindow, b: ArmWindow, w: float) -> None:
        self.challenger.merge(b)
        for kind in SKETCHES:
            dst = self._sk[kind]
            for i, c in a.sketch(kind).items():
                dst[i] = dst.get(i, 0.0) + w * c
        for dst_l, src in ((self._out, a.output_hist), (self._in, a.input_hist)):
            for i, c in enumerate(src):
                if c:
                    dst_l[i] += w * c
        n = a.n_judged
        st = a.moment_sums()
        if not self._m:
            self._m = [0.0] * len(st)
        for i, x in enumerate(st):
            self._m[i] += w * x
        self._busy[0] += w * n
        self._busy[1] += w * w * n

    def _add_kpi(self, a: ArmWindow, b: ArmWindow) -> None:
        pk = self._pk
        for off, arm in ((0, a), (3, b)):
            n, s, ss = arm.kpi_sums()
            pk[off] += n
            pk[off + 1] += s
            pk[off + 2] += ss
        if pk[0] > 0 and pk[3] > 0:
            w = pk[3] / pk[0]
            k = self._kpi
            k[0] += w * pk[0]
            k[1] += w * w * pk[0]
            k[2] += w * pk[1] / _F
            k[3] += w * pk[2] / _F / _F
            for i in range(3):
                self._kpi_b[i] += pk[3 + i]
            self._pk = [0, 0, 0, 0, 0, 0]

    # ---- reading -------------------------------------------------------------------
    @property
    def weight(self) -> float:
        """Sum of weights times champion requests: the challenger's closed request count."""
        return self._busy[0]

    @property
    def n_eff(self) -> float:
        return self._busy[0] ** 2 / self._busy[1] if self._busy[1] > 0 else 0.0

    def sketch(self, kind: str) -> dict[int, float]:
        return self._sk[kind]

    def quantile_index(self, q: float, kind: str = "latency") -> int | None:
        return sketch_quantile_index(self._sk[kind], q)

    def quantile(self, q: float, kind: str = "latency") -> float | None:
        i = self.quantile_index(q, kind)
        return None if i is None else self.spec.latency_value(i)

    @property
    def output_hist(self) -> tuple[float, ...]:
        return tuple(self._out)

    @property
    def input_hist(self) -> tuple[float, ...]:
        return tuple(self._in)

    def moments(self, busy: float, tok_in: float = 0.0, tok_out: float = 0.0) -> Moments:
        """Like `ArmWindow.moments`, for the reweighted champion."""
        wn = self._busy[0]
        if wn <= 0 or not self._m:
            return Moments(0.0, 0.0, 0.0)
        mean, second = combine_moment_sums(self._m, wn, busy, tok_in, tok_out)
        return Moments(self.n_eff, mean, max(second - mean * mean, 0.0))

    def kpi(self) -> Moments:
        wn, w2n, s, ss = self._kpi
        if wn <= 0:
            return Moments(0.0, 0.0, 0.0)
        mean = s / wn
        return Moments(wn * wn / w2n, mean, max(ss / wn - mean * mean, 0.0))

    def challenger_kpi(self) -> Moments:
        n, s, ss = self._kpi_b
        if n <= 0:
            return Moments(0.0, 0.0, 0.0)
        mean = s / _F / n
        return Moments(float(n), mean, max(ss / _F / _F / n - mean * mean, 0.0))

    # ---- persistence ---------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"b": self.challenger.to_bytes().hex(), "pa": self._pa.to_bytes().hex(),
                "pb": self._pb.to_bytes().hex(),
                "sk": {k: [[i, c] for i, c in v.items()] for k, v in self._sk.items()},
                "out": self._out, "in": self._in, "busy": self._busy, "m": self._m,
                "kpi": self._kpi, "pk": self._pk, "kb": self._kpi_b}

    def load(self, d: Mapping[str, Any]) -> None:
        self.challenger = ArmWindow.from_bytes(bytes.fromhex(d["b"]))
        self._pa = ArmWindow.from_bytes(bytes.fromhex(d["pa"]))
        self._pb = ArmWindow.from_bytes(bytes.fromhex(d["pb"]))
        self._sk = {k: {int(i): float(c) for i, c in d["sk"][k]} for k in SKETCHES}
        self._out = [float(x) for x in d["out"]]
        self._in = [float(x) for x in d["in"]]
        self._busy = [float(x) for x in d["busy"]]
        self._m = [float(x) for x in d["m"]]
        self._kpi = [float(x) for x in d["kpi"]]
        self._pk = [int(x) for x in d["pk"]]
        self._kpi_b = [int(x) for x in d["kb"]]


_F = 1_000_000.0


def safe_ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0 or not math.isfinite(num):
        return None
    return num / den


@dataclass(frozen=True, slots=True)
class RatioEvidence:
    """Challenger mean vs the time-matched champion mean of one per-request quantity."""

    mean_a: float
    mean_b: float
    n_a: float  # the matched champion's effective sample size
    n_b: float
    log_e: float


def ratio_evidence(matched: MatchedChampion, coef: tuple[float, float, float],
                   log_margin: float, tau: float, deff: float) -> RatioEvidence:
    """Test H0: log(mean_B / mean_A*) <= log_margin, mean_A* the matched champion's mean.

    `coef` weighs busy seconds, input and output tokens per request. Clustered (keyed)
    traffic inflates both variances by the design effect.
    """
    a = matched.moments(*coef)
    b = matched.challenger.moments(*coef)
    if a.mean <= 0.0 or b.mean <= 0.0:
        return RatioEvidence(a.mean, b.mean, a.n, b.n, 0.0)
    d = max(deff, 1.0)
    log_e, _ = log_e_log_ratio(a.mean, a.var * d, a.n, b.mean, b.var * d, b.n,
                               log_margin, tau)
    return RatioEvidence(a.mean, b.mean, a.n, b.n, log_e)
