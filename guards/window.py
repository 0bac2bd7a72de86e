"""Per-arm observation windows: mergeable, bounded-memory accumulators.

One `ArmWindow` per arm per ingress replica records every request on the hot path
(`record`, pure Python, O(1)). Every flush the replica ships a delta (`take_delta` +
`to_bytes`) to the supervisor, which `merge`s it into the arm's cumulative window.

Design rules, and why:
- Every field is an integer count or an exact integer sum (fixed point, 1e-6 units), and
  merging adds them (or takes a max for run lengths). Integer addition is exactly
  commutative and associative, so windows merged in any order are *equal*, not just close.
- Memory is bounded whatever the traffic: latencies go to a log-bucketed DDSketch-style
  sketch over a clamped range (at most `WindowSpec.max_latency_buckets` buckets), values
  for drift go to fixed-edge histograms, KPI values and hallucination scores to moments and
  a fixed 100-bin histogram.
- Latency is sketched for successful (OK) responses only, as in SRE latency SLOs; failures
  are judged by the error-rate guards. Client errors never count against a model: they are
  counted, but excluded from every other statistic and from consecutive-failure runs.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import math
import operator
import zlib
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FIXED = 1_000_000  # fixed-point scale for exact sums (micro-units)
SCORE_BINS = 100  # hallucination score histogram: bins of width 0.01 on [0, 1]
KEY_BUCKETS = 32  # sticky keys are analysed in this many buckets (clusters of keys)


class Outcome(enum.IntEnum):
    OK = 0
    CLIENT_ERROR = 1
    SERVER_ERROR = 2
    TIMEOUT = 3


@dataclass(frozen=True, slots=True)
class Observation:
    latency_s: float
    outcome: Outcome
    output_value: float | None = None  # scalar summary of the response (output drift PSI)
    input_value: float | None = None  # scalar summary of the request (input drift PSI)
    tokens_in: int = 0
    tokens_out: int = 0
    busy_s: float = 0.0  # the model's own service time for this request (0: not measured)
    ttft_s: float | None = None  # LLM time to first token
    key_bucket: int | None = None  # analysis bucket of the sticky key (`key_bucket`), if any
    batch_size: int = 1  # requests in the model-server batch this call ran in (they share
    # its service time and fate, so they are not independent units: `guards.clustering`)


def key_bucket(key: str) -> int:
    """The analysis bucket of a sticky key, in [0, KEY_BUCKETS).

    Taken from other digest bytes than the routing bucket (`gateway.wire.routing.sticky_bucket`),
    so which keys share an analysis bucket is independent of which arm they are routed to.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
    return int.from_bytes(digest[8:], "big") % KEY_BUCKETS


def symlog_edges(lo: float = 1e-3, hi: float = 1e6, per_decade: int = 8) -> tuple[float, ...]:
    """Bin edges symmetric around 0, log-spaced from `lo` to `hi` on each side, plus 0.

    A scale-free default for output/input summaries whose range is not known in advance;
    the drift guard coarsens these fine bins into ~equal-mass groups before computing PSI.
    """
    decades = round(math.log10(hi / lo))
    pos = [lo * 10 ** (i / per_decade) for i in range(decades * per_decade + 1)]
    return (*[-x for x in reversed(pos)], 0.0, *pos)


DEFAULT_EDGES = symlog_edges()


@dataclass(frozen=True)
class WindowSpec:
    """The schema both arms' windows share: histogram edges and the latency sketch range.

    Histograms have `len(edges) + 1` bins: (-inf, e0), [e0, e1), ..., [e_last, +inf).
    The latency sketch has relative accuracy `latency_accuracy` and clamps values into
    [latency_min_s, latency_max_s], so it never holds more than `max_latency_buckets`.
    """

    output_edges: tuple[float, ...] = DEFAULT_EDGES
    input_edges: tuple[float, ...] = DEFAULT_EDGES
    latency_accuracy: float = 0.01
    latency_min_s: float = 1e-6
    latency_max_s: float = 1e4
    _log_gamma: float = field(init=False, repr=False, compare=False)
    _min_index: int = field(init=False, repr=False, compare=False)
    _max_index: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("output_edges", "input_edges"):
            edges = getattr(self, name)
            object.__setattr__(self, name, tuple(float(e) for e in edges))
            if len(edges) < 1 or any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError(f"WindowSpec.{name} must be non-empty and strictly increasing")
        if not 0.0 < self.latency_accuracy < 0.5:
            raise ValueError("WindowSpec.latency_accuracy must be in (0, 0.5)")
        if not 0.0 < self.latency_min_s < self.latency_max_s:
            raise ValueError("WindowSpec needs 0 < latency_min_s < latency_max_s")
        a = self.latency_accuracy
        lg = math.log((1 + a) / (1 - a))
        object.__setattr__(self, "_log_gamma", lg)
        object.__setattr__(self, "_min_index", math.ceil(math.log(self.latency_min_s) / lg))
        object.__setattr__(self, "_max_index", math.ceil(math.log(self.latency_max_s) / lg))

    @property
    def max_latency_buckets(self) -> int:
        return self._max_index - self._min_index + 1

    def latency_index(self, x: float) -> int:
        """Sketch bucket of x: bucket i holds (gamma**(i-1), gamma**i], clamped to the range."""
        if x <= self.latency_min_s:
            return self._min_index
        if x >= self.latency_max_s:
            return self._max_index
        return math.ceil(math.log(x) / self._log_gamma)

    def latency_indices(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Vectorised `latency_index`, bit-identical to it (see `_exact_ceil_log`)."""
        clipped = np.clip(x, self.latency_min_s, self.latency_max_s)
        idx = _exact_ceil_log(clipped, self._log_gamma)
        idx[x <= self.latency_min_s] = self._min_index
        idx[x >= self.latency_max_s] = self._max_index
        return idx

    def latency_value(self, index: int) -> float:
        """Representative value of a bucket (relative error <= latency_accuracy)."""
        gamma = math.exp(self._log_gamma)
        return 2.0 * math.exp(index * self._log_gamma) / (gamma + 1.0)

    def latency_upper(self, index: int) -> float:
        return math.exp(index * self._log_gamma)


DEFAULT_SPEC = WindowSpec()


def _exact_ceil_log(x: npt.NDArray[np.float64], log_gamma: float) -> npt.NDArray[np.int64]:
    # numpy's SIMD log may differ from libm's by an ulp; recompute the few values that
    # sit next to a bucket boundary with math.log so batch and scalar paths agree exactly.
    r = np.log(x) / log_gamma
    idx = np.ceil(r).astype(np.int64)
    near = np.flatnonzero(np.abs(r - np.rint(r)) < 1e-9)
    for i in near.tolist():
        idx[i] = math.ceil(math.log(float(x[i])) / log_gamma)
    return idx


def _fixed(x: float) -> int:
    return round(x * FIXED)


def _exact_sum(a: npt.NDArray[np.int64]) -> int:
    if a.size == 0:
        return 0
    m = int(np.max(np.abs(a)))
    if m * a.size < 2**62:
        return int(a.sum())
    return sum(a.tolist())


def _exact_dot(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> int:
    if a.size == 0:
        return 0
    ma, mb = int(np.max(np.abs(a))), int(np.max(np.abs(b)))
    if ma * mb * a.size < 2**62:
        return int(np.dot(a, b))
    return sum(x * y for x, y in zip(a.tolist(), b.tolist(), strict=True))


# Per key bucket in ArmWindow._kb: judged, errors, OK, sum and sum of squares of log latency.
_KB_N, _KB_E, _KB_OK, _KB_Q, _KB_QQ = range(5)
_KB = KEY_STATS = 5

# Index of each exact moment in ArmWindow._m: busy (micro-seconds), tokens in, tokens out.
_N, _B, _I, _O, _BB, _II, _OO, _BI, _BO, _IO = range(10)
_SECOND = ((_BB, _BI, _BO), (_BI, _II, _IO), (_BO, _IO, _OO))


@dataclass(frozen=True, slots=True)
class Moments:
    """Mean and variance of a per-request linear combination of busy seconds and tokens,
    over n requests (an effective, possibly fractional, count for a weighted sum)."""

    n: float
    mean: float
    var: float


class ArmWindow:
    """Mutable accumulator of one arm's observations. Not thread-safe (one per replica).

    Contract: `merge` is commutative and associative and `a.merge(b)` equals recording
    a's and b's observations into one window (run lengths merge conservatively by max).
    Memory and `to_bytes` size are bounded by the `WindowSpec`, not by the traffic.
    """

    __slots__ = (
        "_bx",
        "_h",
        "_hn",
        "_hs",
        "_in",
        "_k",
        "_kb",
        "_lat",
        "_m",
        "_max_run",
        "_out",
        "_outcomes",
        "_run",
        "_svc",
        "_ttft",
        "spec",
    )

    def __init__(self, spec: WindowSpec = DEFAULT_SPEC) -> None:
        self.spec = spec
        self._outcomes = [0, 0, 0, 0]
        self._run = 0  # consecutive server errors/timeouts at the end of the stream
        self._max_run = 0  # longest such run seen
        self._lat: dict[int, int] = {}
        self._ttft: dict[int, int] = {}
        self._svc: dict[int, int] = {}  # the model's own service time (busy_s) of OK calls
        self._bx = 0  # sum over judged requests of (batch size - 1)
        self._kb = [0] * (KEY_BUCKETS * _KB)  # per sticky-key bucket, see _KB_N.._KB_QQ
        self._out = [0] * (len(spec.output_edges) + 1)
        self._in = [0] * (len(spec.input_edges) + 1)
        self._m = [0] * 10  # exact moments of busy/tokens, see _N.._IO
        self._k = [0, 0, 0]  # KPI: n, sum, sum of squares (fixed point)
        self._h = [0] * SCORE_BINS  # hallucination score histogram
        self._hn = 0
        self._hs = 0  # sum of scores (fixed point)

    # ---- recording (hot path) ----------------------------------------------------------
    def record(self, obs: Observation) -> None:
        outcome = obs.outcome
        self._outcomes[outcome] += 1
        if outcome == Outcome.CLIENT_ERROR:
            return
        failed = outcome >= Outcome.SERVER_ERROR
        if failed:
            self._run += 1
            if self._run > self._max_run:
                self._max_run = self._run
        else:
            self._run = 0
            lat = self._lat
            i = self.spec.latency_index(obs.latency_s)
            lat[i] = lat.get(i, 0) + 1
            if obs.ttft_s is not None:
                j = self.spec.latency_index(obs.ttft_s)
                self._ttft[j] = self._ttft.get(j, 0) + 1
            if obs.busy_s > 0.0:
                j = self.spec.latency_index(obs.busy_s)
                self._svc[j] = self._svc.get(j, 0) + 1
        if obs.key_bucket is not None:
            self._record_key(obs.key_bucket, failed, obs.latency_s)
        if obs.batch_size > 1:
            self._bx += obs.batch_size - 1
        v = obs.output_value
        if v is not None and v == v:  # v == v is False only for NaN
            self._out[bisect_right(self.spec.output_edges, v)] += 1
        v = obs.input_value
        if v is not None and v == v:
            self._in[bisect_right(self.spec.input_edges, v)] += 1
        b, ti, to = _fixed(obs.busy_s), obs.tokens_in, obs.tokens_out
        m = self._m
        m[_N] += 1
        m[_B] += b
        m[_I] += ti
        m[_O] += to
        m[_BB] += b * b
        m[_II] += ti * ti
        m[_OO] += to * to
        m[_BI] += b * ti
        m[_BO] += b * to
        m[_IO] += ti * to

    def _record_key(self, bucket: int, failed: bool, latency_s: float) -> None:
        kb, base = self._kb, (bucket % KEY_BUCKETS) * _KB
        kb[base + _KB_N] += 1
        if failed:
            kb[base + _KB_E] += 1
        else:
            q = _fixed(math.log(max(latency_s, self.spec.latency_min_s)))
            kb[base + _KB_OK] += 1
            kb[base + _KB_Q] += q
            kb[base + _KB_QQ] += q * q

    def record_kpi(self, value: float) -> None:
        """A business outcome for a request this arm served (bool as 0/1, or a number)."""
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"KPI value must be finite, got {value!r}")
        f = _fixed(v)
        self._k[0] += 1
        self._k[1] += f
        self._k[2] += f * f

    def record_hallucination(self, score: float) -> None:
        """A sampled scorer output in [0, 1]; higher means more likely hallucinated."""
        s = float(score)
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"hallucination score must be in [0, 1], got {score!r}")
        self._h[min(int(s * SCORE_BINS), SCORE_BINS - 1)] += 1
        self._hn += 1
        self._hs += _fixed(s)

    def record_batch(
        self,
        latency_s: npt.ArrayLike,
        outcome: npt.ArrayLike,
        *,
        output_value: npt.ArrayLike | None = None,
        input_value: npt.ArrayLike | None = None,
        tokens_in: npt.ArrayLike | None = None,
        tokens_out: npt.ArrayLike | None = None,
        busy_s: npt.ArrayLike | None = None,
        ttft_s: npt.ArrayLike | None = None,
        key_bucket: npt.ArrayLike | None = None,
        batch_size: npt.ArrayLike | None = None,
    ) -> None:
        """Vectorised equivalent of `record` on each element in order (NaN = None; a
        negative `key_bucket` = no key).

        The result is exactly equal to recording the same observations one by one.
        """
        lat = np.asarray(latency_s, dtype=np.float64)
        oc = np.asarray(outcome, dtype=np.int64)
        n = lat.size
        if oc.shape != lat.shape:
            raise ValueError("latency_s and outcome must have the same shape")
        if n == 0:
            return
        counts = np.bincount(oc, minlength=4)
        for k in range(4):
            self._outcomes[k] += int(counts[k])
        judged = oc != Outcome.CLIENT_ERROR
        if not judged.all():
            sel = np.flatnonzero(judged)
            lat, oc = lat[sel], oc[sel]
        else:
            sel = None
        if lat.size == 0:
            return
        failed = oc >= Outcome.SERVER_ERROR
        self._update_runs(failed)
        ok = ~failed
        _add_counts(self._lat, self.spec.latency_indices(lat[ok]))
        if ttft_s is not None:
            tt = _pick(ttft_s, sel)[ok]
            _add_counts(self._ttft, self.spec.latency_indices(tt[~np.isnan(tt)]))
        if busy_s is not None:
            bs = _pick(busy_s, sel)[ok]
            _add_counts(self._svc, self.spec.latency_indices(bs[bs > 0.0]))
        if key_bucket is not None:
            self._add_keys(np.asarray(_pick(key_bucket, sel), dtype=np.int64), failed, lat)
        if batch_size is not None:
            bsz = np.asarray(_pick(batch_size, sel), dtype=np.int64)
            self._bx += int(np.maximum(bsz - 1, 0).sum())
        if output_value is not None:
            _add_hist(self._out, self.spec.output_edges, _pick(output_value, sel))
        if input_value is not None:
            _add_hist(self._in, self.spec.input_edges, _pick(input_value, sel))
        self._add_moments(lat.size, busy_s, tokens_in, tokens_out, sel)

    def _add_keys(self, buckets: npt.NDArray[np.int64], failed: npt.NDArray[np.bool_],
                  lat: npt.NDArray[np.float64]) -> None:
        keyed = buckets >= 0
        if not keyed.any():
            return
        b, f = buckets[keyed] % KEY_BUCKETS, failed[keyed]
        ok = ~f
        # math.log per value, as `record` does: numpy's SIMD log may differ by an ulp
        lo = self.spec.latency_min_s
        q = np.array([_fixed(math.log(max(x, lo))) for x in lat[keyed][ok].tolist()],
                     dtype=np.int64)
        cols = (
            (_KB_N, np.bincount(b, minlength=KEY_BUCKETS)),
            (_KB_E, np.bincount(b[f], minlength=KEY_BUCKETS)),
            (_KB_OK, np.bincount(b[ok], minlength=KEY_BUCKETS)),
        )
        kb = self._kb
        for col, counts in cols:
            for i, c in enumerate(counts.tolist()):
                kb[i * _KB + col] += c
        for i in np.unique(b[ok]).tolist():
            qi = q[b[ok] == i]
            kb[i * _KB + _KB_Q] += _exact_sum(qi)
            kb[i * _KB + _KB_QQ] += _exact_dot(qi, qi)

    def record_kpi_batch(self, values: npt.ArrayLike) -> None:
        v = np.asarray(values, dtype=np.float64)
        if not np.isfinite(v).all():
            raise ValueError("KPI values must be finite")
        f = np.rint(v * FIXED).astype(np.int64)
        self._k[0] += int(f.size)
        self._k[1] += _exact_sum(f)
        self._k[2] += _exact_dot(f, f)

    def record_hallucination_batch(self, scores: npt.ArrayLike) -> None:
        s = np.asarray(scores, dtype=np.float64)
        if s.size and not ((s >= 0.0) & (s <= 1.0)).all():
            raise ValueError("hallucination scores must be in [0, 1]")
        idx = np.minimum((s * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
        for i, c in enumerate(np.bincount(idx, minlength=SCORE_BINS).tolist()):
            self._h[i] += c
        self._hn += int(s.size)
        self._hs += _exact_sum(np.rint(s * FIXED).astype(np.int64))

    def _update_runs(self, failed: npt.NDArray[np.bool_]) -> None:
        ok_at = np.flatnonzero(~failed)
        if ok_at.size == 0:
            self._run += int(failed.size)
            self._max_run = max(self._max_run, self._run)
            return
        longest = self._run + int(ok_at[0])
        if ok_at.size > 1:
            longest = max(longest, int(np.max(np.diff(ok_at))) - 1)
        self._run = int(failed.size - 1 - ok_at[-1])
        self._max_run = max(self._max_run, longest, self._run)

    def _add_moments(
        self,
        n: int,
        busy_s: npt.ArrayLike | None,
        tokens_in: npt.ArrayLike | None,
        tokens_out: npt.ArrayLike | None,
        sel: npt.NDArray[np.intp] | None,
    ) -> None:
        m = self._m
        m[_N] += n
        cols: list[tuple[int, npt.NDArray[np.int64]]] = []
        if busy_s is not None:
            cols.append((0, np.rint(_pick(busy_s, sel) * FIXED).astype(np.int64)))
        if tokens_in is not None:
            cols.append((1, _pick(tokens_in, sel).astype(np.int64)))
        if tokens_out is not None:
            cols.append((2, _pick(tokens_out, sel).astype(np.int64)))
        for i, a in cols:
            m[_B + i] += _exact_sum(a)
            for j, b in cols:
                if j >= i:
                    m[_SECOND[i][j]] += _exact_dot(a, b)

    # ---- merging and shipping ------------------------------------------------------------
    def merge(self, other: ArmWindow) -> None:
        """Add `other` into self (in place). Both must share the same WindowSpec."""
        if other.spec is not self.spec and other.spec != self.spec:
            raise ValueError("cannot merge windows with different WindowSpecs")
        for i, c in enumerate(other._outcomes):
            self._outcomes[i] += c
        # Replicas interleave in time, so runs cannot be concatenated; max is conservative
        # enough and keeps merge commutative (see take_delta for runs across flushes).
        self._run = max(self._run, other._run)
        self._max_run = max(self._max_run, other._max_run)
        for src, dst in ((other._lat, self._lat), (other._ttft, self._ttft),
                         (other._svc, self._svc)):
            for k, c in src.items():
                dst[k] = dst.get(k, 0) + c
        for dst_l, src_l in (
            (self._kb, other._kb),
            (self._out, other._out),
            (self._in, other._in),
            (self._m, other._m),
            (self._k, other._k),
            (self._h, other._h),
        ):
            if any(src_l):  # element-wise in C; most lists of a delta are all zero
                dst_l[:] = map(operator.add, dst_l, src_l)
        self._hn += other._hn
        self._hs += other._hs
        self._bx += other._bx

    def minus(self, earlier: ArmWindow) -> ArmWindow:
        """What was recorded after `earlier`, a past copy of this cumulative window.

        Every count is exact. Runs cannot be subtracted: the result carries the current run,
        and as its longest run the current run, or the longest overall if that grew since.
        """
        if earlier.spec != self.spec:
            raise ValueError("cannot subtract windows with different WindowSpecs")
        d = ArmWindow(self.spec)
        d._outcomes = _sub(self._outcomes, earlier._outcomes)
        d._run = self._run
        d._max_run = self._max_run if self._max_run > earlier._max_run else self._run
        d._lat = _sub_dict(self._lat, earlier._lat)
        d._ttft = _sub_dict(self._ttft, earlier._ttft)
        d._svc = _sub_dict(self._svc, earlier._svc)
        d._kb = _sub(self._kb, earlier._kb, check=False)  # log-latency sums may be < 0
        d._out, d._in = _sub(self._out, earlier._out), _sub(self._in, earlier._in)
        d._m, d._h = _sub(self._m, earlier._m), _sub(self._h, earlier._h)
        d._k = _sub(self._k, earlier._k, check=False)  # KPI sums may be < 0
        if d._k[0] < 0:
            raise ValueError(_NOT_A_PAST_COPY)
        d._hn, d._hs = self._hn - earlier._hn, self._hs - earlier._hs
        d._bx = self._bx - earlier._bx
        if d._bx < 0:
            raise ValueError(_NOT_A_PAST_COPY)
        return d

    def take_delta(self) -> ArmWindow:
        """Return everything recorded since the last call and reset self.

        The current failure run is carried over, so a run that spans flushes keeps
        growing in the next delta (the supervisor merges runs by max).
        """
        delta = self.copy()
        run = self._run
        self.__init__(self.spec)  # type: ignore[misc]
        self._run = run
        return delta

    def copy(self) -> ArmWindow:
        w = ArmWindow.__new__(ArmWindow)
        w.spec = self.spec
        w._outcomes = list(self._outcomes)
        w._run, w._max_run = self._run, self._max_run
        w._lat, w._ttft, w._svc = dict(self._lat), dict(self._ttft), dict(self._svc)
        w._kb = list(self._kb)
        w._out, w._in = list(self._out), list(self._in)
        w._m, w._k, w._h = list(self._m), list(self._k), list(self._h)
        w._hn, w._hs = self._hn, self._hs
        w._bx = self._bx
        return w

    def is_empty(self) -> bool:
        return not any(self._outcomes) and self._k[0] == 0 and self._hn == 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArmWindow):
            return NotImplemented
        return self.spec == other.spec and self._state() == other._state()

    __hash__ = None  # type: ignore[assignment]

    def _state(self) -> dict[str, Any]:
        return {
            "o": list(self._outcomes),
            "run": self._run,
            "mrun": self._max_run,
            "lat": _sparse_dict(self._lat),
            "ttft": _sparse_dict(self._ttft),
            "svc": _sparse_dict(self._svc),
            "kb": _sparse_list(self._kb),
            "out": _sparse_list(self._out),
            "in": _sparse_list(self._in),
            "m": list(self._m),
            "k": list(self._k),
            "h": _sparse_list(self._h),
            "hn": self._hn,
            "hs": self._hs,
            "bx": self._bx,
        }

    def to_bytes(self) -> bytes:
        """Compact encoding: zlib-compressed JSON of integers (sparse histograms)."""
        state = self._state()
        state["v"] = 2
        state["spec"] = None if self.spec == DEFAULT_SPEC else _spec_to_json(self.spec)
        raw = json.dumps(state, separators=(",", ":")).encode()
        return zlib.compress(raw, 1)

    @classmethod
    def from_bytes(cls, b: bytes) -> ArmWindow:
        state = json.loads(zlib.decompress(b))
        if state.get("v") not in (1, 2):
            raise ValueError(f"unsupported ArmWindow encoding version {state.get('v')!r}")
        spec = DEFAULT_SPEC if state["spec"] is None else WindowSpec(**state["spec"])
        w = cls(spec)
        w._outcomes = [int(x) for x in state["o"]]
        w._run, w._max_run = int(state["run"]), int(state["mrun"])
        w._lat = _dense_dict(state["lat"])
        w._ttft = _dense_dict(state["ttft"])
        if state["v"] >= 2:
            w._svc = _dense_dict(state["svc"])
            w._kb = _dense_list(state["kb"], len(w._kb))
        w._out = _dense_list(state["out"], len(w._out))
        w._in = _dense_list(state["in"], len(w._in))
        w._m = [int(x) for x in state["m"]]
        w._k = [int(x) for x in state["k"]]
        w._h = _dense_list(state["h"], SCORE_BINS)
        w._hn, w._hs = int(state["hn"]), int(state["hs"])
        w._bx = int(state.get("bx", 0))  # absent before batching was tracked: batches of 1
        return w

    # ---- read accessors ------------------------------------------------------------------
    def count(self, outcome: Outcome) -> int:
        return self._outcomes[outcome]

    @property
    def n_requests(self) -> int:
        """Every recorded request, client errors included."""
        return sum(self._outcomes)

    @property
    def n_judged(self) -> int:
        """Requests that count for or against the model (client errors excluded)."""
        return self._m[_N]

    @property
    def batch_excess(self) -> int:
        """Sum over judged requests of (model-server batch size - 1)."""
        return self._bx

    @property
    def n_errors(self) -> int:
        """Server errors plus timeouts."""
        return self._outcomes[Outcome.SERVER_ERROR] + self._outcomes[Outcome.TIMEOUT]

    @property
    def n_server_errors(self) -> int:
        return self._outcomes[Outcome.SERVER_ERROR]

    @property
    def error_rate(self) -> float:
        n = self.n_judged
        return self.n_errors / n if n else 0.0

    @property
    def current_failure_run(self) -> int:
        return self._run

    @property
    def max_failure_run(self) -> int:
        return self._max_run

    def latency_buckets(self, ttft: bool = False) -> dict[int, int]:
        """Sketch buckets {index: count} (read-only view; do not mutate)."""
        return self._ttft if ttft else self._lat

    def sketch(self, kind: str) -> dict[int, int]:
        """A latency sketch by name: `latency` (end to end), `ttft`, or `service` (the
        model's own service time). Read-only view."""
        return {"latency": self._lat, "ttft": self._ttft, "service": self._svc}[kind]

    def key_stats(self) -> list[int]:
        """Per sticky-key bucket: judged, errors, OK, sum and sum of squares of the OK
        responses' log latency (fixed point); `KEY_STATS` ints per bucket."""
        return self._kb

    @property
    def n_keyed(self) -> int:
        return sum(self._kb[_KB_N::_KB])

    def n_latency(self, ttft: bool = False) -> int:
        return sum(self.latency_buckets(ttft).values())

    def quantile(self, q: float, ttft: bool = False) -> float | None:
        """Latency quantile of OK responses (relative error <= spec.latency_accuracy)."""
        return sketch_quantile(self.latency_buckets(ttft), q, self.spec)

    def count_above(self, x: float, ttft: bool = False) -> int:
        """Latencies in buckets strictly above the bucket holding x."""
        return self.count_above_index(self.spec.latency_index(x), ttft)

    def count_above_index(self, index: int, ttft: bool = False) -> int:
        return sum(c for i, c in self.latency_buckets(ttft).items() if i > index)

    def quantile_index(self, q: float, ttft: bool = False) -> int | None:
        """Sketch bucket holding the q-quantile (None when empty)."""
        return sketch_quantile_index(self.latency_buckets(ttft), q)

    @property
    def output_hist(self) -> tuple[int, ...]:
        return tuple(self._out)

    @property
    def input_hist(self) -> tuple[int, ...]:
        return tuple(self._in)

    @property
    def busy_s(self) -> float:
        return self._m[_B] / FIXED

    @property
    def tokens_in(self) -> int:
        return self._m[_I]

    @property
    def tokens_out(self) -> int:
        return self._m[_O]

    def moments(self, busy: float, tok_in: float = 0.0, tok_out: float = 0.0) -> Moments:
        """Mean/variance over judged requests of busy*busy_s + tok_in*tokens_in + tok_out*..."""
        n = self._m[_N]
        if n == 0:
            return Moments(0, 0.0, 0.0)
        mean, second = combine_moment_sums(self._m, n, busy, tok_in, tok_out)
        return Moments(n, mean, max(second - mean * mean, 0.0))

    def moment_sums(self) -> list[int]:
        """The exact sums behind `moments` (for weighted aggregation elsewhere)."""
        return self._m

    def kpi_sums(self) -> list[int]:
        """KPI n, sum and sum of squares (fixed point, `FIXED` units)."""
        return self._k

    @property
    def kpi_n(self) -> int:
        return self._k[0]

    @property
    def kpi_mean(self) -> float:
        return self._k[1] / FIXED / self._k[0] if self._k[0] else 0.0

    @property
    def kpi_var(self) -> float:
        n = self._k[0]
        if n == 0:
            return 0.0
        # exact integer arithmetic: no cancellation error whatever the KPI's scale
        return max(n * self._k[2] - self._k[1] ** 2, 0) / (n * n) / FIXED**2

    @property
    def hallucination_n(self) -> int:
        return self._hn

    @property
    def hallucination_mean(self) -> float:
        return self._hs / FIXED / self._hn if self._hn else 0.0

    def hallucination_at_least(self, cutoff: float) -> int:
        """Scores >= cutoff, at the 0.01 resolution of the score histogram."""
        start = min(max(math.floor(cutoff * SCORE_BINS + 1e-9), 0), SCORE_BINS)
        return sum(self._h[start:])

    @property
    def hallucination_hist(self) -> tuple[int, ...]:
        return tuple(self._h)


def combine_moment_sums(m: Sequence[float], n: float, busy: float, tok_in: float,
                        tok_out: float) -> tuple[float, float]:
    """Mean and second moment of busy*busy_s + tok_in*tokens_in + tok_out*tokens_out from
    the sums in `ArmWindow.moment_sums` (possibly weighted) over n requests."""
    c = (busy / FIXED, tok_in, tok_out)
    s = (m[_B], m[_I], m[_O])
    cross = ((m[_BB], m[_BI], m[_BO]), (m[_BI], m[_II], m[_IO]), (m[_BO], m[_IO], m[_OO]))
    mean = sum(ci * si for ci, si in zip(c, s, strict=True)) / n
    second = sum(c[i] * c[j] * cross[i][j] for i in range(3) for j in range(3)) / n
    return mean, second


def sketch_quantile_index(buckets: Mapping[int, float], q: float) -> int | None:
    total = sum(buckets.values())
    if total == 0:
        return None
    rank = q * (total - 1)
    seen = 0.0
    for i in sorted(buckets):
        seen += buckets[i]
        if seen > rank:
            return i
    return max(buckets)


def sketch_quantile(buckets: dict[int, int], q: float, spec: WindowSpec) -> float | None:
    i = sketch_quantile_index(buckets, q)
    return None if i is None else spec.latency_value(i)


def _pick(values: npt.ArrayLike, sel: npt.NDArray[np.intp] | None) -> npt.NDArray[np.float64]:
    a = np.asarray(values, dtype=np.float64)
    return a if sel is None else a[sel]


def _add_counts(dst: dict[int, int], idx: npt.NDArray[np.int64]) -> None:
    if idx.size == 0:
        return
    keys, counts = np.unique(idx, return_counts=True)
    for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
        dst[k] = dst.get(k, 0) + c


def _add_hist(dst: list[int], edges: Sequence[float], values: npt.NDArray[np.float64]) -> None:
    v = values[~np.isnan(values)]
    if v.size == 0:
        return
    idx = np.searchsorted(np.asarray(edges), v, side="right")
    keys, counts = np.unique(idx, return_counts=True)
    for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
        dst[k] += c


_NOT_A_PAST_COPY = ("ArmWindow.minus: the earlier window is not a past copy (the judge needs "
                    "cumulative windows: a count went down)")


def _sub(a: list[int], b: list[int], check: bool = True) -> list[int]:
    out = [x - y for x, y in zip(a, b, strict=True)]
    if check and any(x < 0 for x in out):
        raise ValueError(_NOT_A_PAST_COPY)
    return out


def _sub_dict(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    out = {k: c - b.get(k, 0) for k, c in a.items() if c != b.get(k, 0)}
    if any(c < 0 for c in out.values()) or any(k not in a for k in b):
        raise ValueError(_NOT_A_PAST_COPY)
    return out


def _sparse_list(values: list[int]) -> list[list[int]]:
    idx = [i for i, c in enumerate(values) if c]
    return [idx, [values[i] for i in idx]]


def _sparse_dict(values: dict[int, int]) -> list[list[int]]:
    keys = sorted(k for k, c in values.items() if c)
    return [keys, [values[k] for k in keys]]


def _dense_list(sparse: list[list[int]], size: int) -> list[int]:
    out = [0] * size
    for i, c in zip(sparse[0], sparse[1], strict=True):
        out[int(i)] = int(c)
    return out


def _dense_dict(sparse: list[list[int]]) -> dict[int, int]:
    return {int(k): int(c) for k, c in zip(sparse[0], sparse[1], strict=True)}


def _spec_to_json(spec: WindowSpec) -> dict[str, Any]:
    return {
        "output_edges": list(spec.output_edges),
        "input_edges": list(spec.input_edges),
        "latency_accuracy": spec.latency_accuracy,
        "latency_min_s": spec.latency_min_s,
        "latency_max_s": spec.latency_max_s,
    }
