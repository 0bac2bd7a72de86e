"""Traffic for the judge simulation: requests in simulated time, through the ingress's rules.

A rollout's traffic is generated slice by slice (a slice ends at the next flush), each
request with an arrival time, an arm (weighted random, or the sticky key's routing bucket as
`gateway.wire.routing.choose_arm` computes it), a latency, an outcome and what the ingress records
for it. The ingress's semantics, as in `gateway.serving.ingress`:

- a challenger call that takes `DEADLINE_S` (2 s) or more times out: TIMEOUT against the
  challenger at the deadline, and the request is retried on the champion (failover), a retry
  that is not recorded in the champion's window;
- a champion call slower than the challenger's deadline is censored: TIMEOUT with latency
  2 s, recorded at the deadline (so in the same look as the challenger's timeouts of
  requests that started at the same time);
- only OK replies carry data (busy time, output/input summaries, KPI feedback, hallucination
  scores); failures and client errors carry the latency, the outcome and the key bucket;
- a failed challenger call (server error or timeout) brings the next flush forward to 0.05 s
  after it (`gateway.serving.flushtimer`).

Everything is vectorised per slice with numpy; one row per request (`COLS`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from guards.window import KEY_BUCKETS, Outcome

Array = npt.NDArray[np.float64]

DEADLINE_S = 2.0  # timeouts.challenger_s: the comparison deadline of both arms
FLUSH_S = 0.25  # control.flush_interval_s
URGENT_S = 0.05  # control.urgent_flush_s
CELL_S = 0.25  # resolution of time-varying arrival rates

# Row layout of a request.
ARR, REC, ARM, LAT, OUT, BUSY, OV, IV, KB, KPI, SCORE, BATCH = range(12)
NCOLS = 12
CHAMPION, CHALLENGER = 0, 1


@dataclass(frozen=True)
class Profile:
    """Both arms' traffic when nothing is wrong: latency = host delay + service time."""

    host_median_s: float = 0.016
    host_sigma: float = 0.3
    service_median_s: float = 0.064
    service_sigma: float = 0.8
    server_error: float = 0.005
    client_error: float = 0.01
    kpi_share: float = 0.2  # OK requests that get business feedback
    kpi_rate: float = 0.1  # conversion
    score_share: float = 0.1  # OK requests scored for hallucination (Beta(1, 9))

    def describe(self) -> str:
        return (f"latency = host delay lognormal(ln {self.host_median_s * 1000:g} ms, "
                f"sigma {self.host_sigma}) + service time lognormal(ln "
                f"{self.service_median_s * 1000:g} ms, sigma {self.service_sigma}); busy time = "
                f"service time; {self.server_error:.1%} server errors, {self.client_error:.0%} "
                f"client errors; output and input ~ N(0, 1); KPI feedback on "
                f"{self.kpi_share:.0%} of OK requests (conversion {self.kpi_rate:.0%}); "
                f"hallucination scores Beta(1, 9) on {self.score_share:.0%}")


BASE = Profile()
# End-to-end latency dominated by a host delay both arms share (service time is small).
HOST_DOMINATED = Profile(host_median_s=0.150, host_sigma=0.5, service_median_s=0.020,
                         service_sigma=0.3)


@dataclass(frozen=True)
class Regression:
    """What is wrong with the challenger (the identity for A/A)."""

    server_error: float | None = None  # the challenger's server-error rate
    error_latency_s: float | None = None  # a failing call's latency (None: part of normal)
    latency_scale: float = 1.0  # host delay and service time
    busy_scale: float = 1.0  # the model's own service time only (throughput)
    tail_share: float = 0.0  # share of calls whose service time is x tail_factor
    tail_factor: float = 1.0
    output_shift: float = 0.0  # sd units
    leak_bytes_per_request: float = 0.0


@dataclass(frozen=True)
class Effects:
    """Shared conditions of one rollout (both arms), drawn per rollout."""

    rate: float = 150.0  # requests per second, both arms together
    stall: tuple[float, float] | None = None  # [start, end): latencies beyond the deadline
    load: tuple[float, float, float] | None = None  # start, end, latency factor
    shift_at: float | None = None  # traffic-mix shift from then on
    bursty: bool = False
    batched: bool = False
    keys: Keys | None = None


@dataclass
class Keys:
    """Sticky keys with Zipf-like request shares and per-key differences."""

    cdf: Array
    route: npt.NDArray[np.int64]  # gateway.wire.routing.sticky_bucket, in [0, 10000)
    bucket: npt.NDArray[np.int64]  # guards.window.key_bucket, in [0, KEY_BUCKETS)
    latency: Array  # per-key latency multiplier
    error: Array  # per-key server-error multiplier (mean 1)
    exponent: float = 1.0
    sigma: float = 0.4

    @classmethod
    def draw(cls, rng: np.random.Generator, tag: str) -> Keys:
        n = round(math.exp(rng.uniform(math.log(2_000), math.log(20_000))))
        exponent = float(rng.uniform(0.9, 1.1))
        sigma = float(rng.uniform(0.3, 0.5))
        shares = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
        rng.shuffle(shares)
        cdf = np.cumsum(shares)
        cdf /= cdf[-1]
        route = np.empty(n, dtype=np.int64)
        bucket = np.empty(n, dtype=np.int64)
        for i in range(n):
            key = f"{tag}-{i}".encode()
            # the same digests as gateway.wire.routing.sticky_bucket and guards.window.key_bucket
            route[i] = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(),
                                      "big") % 10_000
            d = hashlib.blake2b(key, digest_size=16).digest()
            bucket[i] = int.from_bytes(d[8:], "big") % KEY_BUCKETS
        lat = np.exp(rng.normal(-0.5 * sigma * sigma, sigma, n))
        err = rng.gamma(2.0, 0.5, n)
        return cls(cdf, route, bucket, lat, err, exponent, sigma)


@dataclass
class RateCurve:
    """Arrival rate per CELL_S cell: constant, or on/off bursts times gamma noise."""

    rate: float
    cells: Array | None = None

    @classmethod
    def make(cls, rng: np.random.Generator, rate: float, bursty: bool,
             horizon_s: float) -> RateCurve:
        if not bursty:
            return cls(rate)
        n = int(horizon_s / CELL_S) + 2
        mult = np.empty(n)
        i, on = 0, bool(rng.random() < 0.5)
        while i < n:  # on/off periods, exponential with mean 3 s; on x1.7, off x0.3
            k = max(1, int(rng.exponential(3.0) / CELL_S))
            mult[i:i + k] = 1.7 if on else 0.3
            i, on = i + k, not on
        mult *= rng.gamma(4.0, 0.25, n)  # Poisson-gamma: CV 0.5 on top
        return cls(rate, rate * mult)

    def count(self, rng: np.random.Generator, a: float, b: float) -> Array:
        """Sorted arrival times in (a, b]."""
        if self.cells is None:
            n = rng.poisson(self.rate * (b - a))
            return np.sort(rng.uniform(a, b, n))
        out = []
        t = a
        while t < b - 1e-12:
            c = int(t / CELL_S + 1e-9)
            end = min(b, (c + 1) * CELL_S)
            lam = self.cells[min(c, len(self.cells) - 1)]
            n = rng.poisson(lam * (end - t))
            out.append(np.sort(rng.uniform(t, end, n)))
            t = end
        return np.concatenate(out) if out else np.empty(0)


@dataclass
class Traffic:
    """Generates one rollout's requests slice by slice."""

    rng: np.random.Generator
    profile: Profile
    effects: Effects
    regression: Regression
    horizon_s: float
    curve: RateCurve = field(init=False)
    served: list[int] = field(default_factory=lambda: [0, 0])  # calls started, per arm

    def __post_init__(self) -> None:
        self.curve = RateCurve.make(self.rng, self.effects.rate, self.effects.bursty,
                                    self.horizon_s)

    def slice(self, a: float, b: float, weight: float) -> Array:
        """Requests arriving in (a, b] under challenger weight `weight` (percent)."""
        t = self.curve.count(self.rng, a, b)
        n = t.size
        rows = np.empty((n, NCOLS))
        if n == 0:
            return rows
        rng, p, fx, reg = self.rng, self.profile, self.effects, self.regression
        rows[:, ARR] = t
        keys = fx.keys
        key_lat: Array | None = None
        key_err: Array | None = None
        if keys is not None:
            k = np.minimum(np.searchsorted(keys.cdf, rng.random(n)), keys.cdf.size - 1)
            chal = keys.route[k] < weight * 100.0
            rows[:, KB] = keys.bucket[k]
            key_lat, key_err = keys.latency[k], keys.error[k]
        else:
            chal = rng.random(n) * 100.0 < weight
            rows[:, KB] = -1.0
        rows[:, ARM] = chal
        nb = int(chal.sum())
        self.served[CHALLENGER] += nb
        self.served[CHAMPION] += n - nb
        # latency draws (shared within a model-server batch when batched)
        z, rows[:, BATCH] = self._normals(chal, 2)
        host = p.host_median_s * np.exp(p.host_sigma * z[0])
        svc = p.service_median_s * np.exp(p.service_sigma * z[1])
        scale = np.ones(n)
        if key_lat is not None:
            scale *= key_lat
        if fx.load is not None:
            s0, s1, f = fx.load
            scale[(t >= s0) & (t < s1)] *= f
        shifted = t >= fx.shift_at if fx.shift_at is not None else None
        if shifted is not None:
            scale[shifted] *= 1.5
        if reg.latency_scale != 1.0:
            scale[chal] *= reg.latency_scale
        host *= scale
        svc *= scale
        if reg.tail_share > 0.0:
            tail = chal & (rng.random(n) < reg.tail_share)
            svc[tail] *= reg.tail_factor
        busy = svc * np.where(chal, reg.busy_scale, 1.0) if reg.busy_scale != 1.0 else svc
        lat = host + svc
        # outcomes
        err = np.full(n, p.server_error)
        if key_err is not None:
            err *= key_err
        if reg.server_error is not None:
            err[chal] = reg.server_error
        u = rng.random(n)
        outcome = np.where(u < err, Outcome.SERVER_ERROR,
                           np.where(u < err + p.client_error, Outcome.CLIENT_ERROR, Outcome.OK))
        failed = outcome != Outcome.OK
        if failed.any():  # a failing call returns early (an exception, a 4xx)
            lat[failed] = host[failed] + 0.3 * svc[failed]
            if reg.error_latency_s is not None:
                fc = failed & chal & (outcome == Outcome.SERVER_ERROR)
                lat[fc] = reg.error_latency_s
        if fx.stall is not None:  # everything in flight waits, failures included
            s0, s1 = fx.stall
            in_stall = (t >= s0) & (t < s1)
            lat[in_stall] += 2.5 + rng.uniform(0.0, 1.5, int(in_stall.sum()))
        late = lat >= DEADLINE_S
        if late.any():  # challenger: timeout + failover; champion: censored at the deadline
            outcome[late] = Outcome.TIMEOUT
            lat[late] = DEADLINE_S
        ok = outcome == Outcome.OK
        rows[:, REC] = t + lat
        rows[:, LAT] = lat
        rows[:, OUT] = outcome
        rows[:, BUSY] = np.where(ok, busy, 0.0)
        out_mu = np.where(chal, reg.output_shift, 0.0)
        out_sd = np.ones(n)
        in_mu = np.zeros(n)
        in_sd = np.ones(n)
        kpi_rate = np.full(n, p.kpi_rate)
        if shifted is not None:
            out_mu[shifted] += 0.5
            out_sd[shifted] = 1.2
            in_mu[shifted] = 0.5
            in_sd[shifted] = 1.2
            kpi_rate[shifted] = 0.8 * p.kpi_rate
        ov = rng.normal(out_mu, out_sd)
        iv = rng.normal(in_mu, in_sd)
        rows[:, OV] = np.where(ok, ov, np.nan)
        rows[:, IV] = np.where(ok, iv, np.nan)
        u2 = rng.random((2, n))
        conv = (rng.random(n) < kpi_rate).astype(np.float64)
        rows[:, KPI] = np.where(ok & (u2[0] < p.kpi_share), conv, np.nan)
        rows[:, SCORE] = np.where(ok & (u2[1] < p.score_share), rng.beta(1.0, 9.0, n), np.nan)
        return rows

    def _normals(self, chal: npt.NDArray[np.bool_], k: int) -> tuple[Array, Array]:
        """k standard normals per request, and each request's batch size (the slot reports
        it: `Observation.batch_size`)."""
        n = chal.size
        if not self.effects.batched:
            return self.rng.standard_normal((k, n)), np.ones(n)
        # Each arm's model server forms batches of consecutive requests (1 + Poisson(2.5),
        # at most 8) that share one latency draw.
        out = np.empty((k, n))
        size_of = np.ones(n)
        for arm in (False, True):
            idx = np.flatnonzero(chal == arm)
            if idx.size == 0:
                continue
            sizes = np.minimum(1 + self.rng.poisson(2.5, idx.size), 8)
            ends = np.cumsum(sizes)
            nb = int(np.searchsorted(ends, idx.size)) + 1
            batch = np.repeat(np.arange(nb), sizes[:nb])[:idx.size]
            draws = self.rng.standard_normal((k, nb))
            out[:, idx] = draws[:, batch]
            # the last batch is cut at the cell's end: it ran with the requests it had
            size_of[idx] = np.bincount(batch)[batch]
        return out, size_of
