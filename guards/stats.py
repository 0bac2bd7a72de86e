"""Statistics for the canary judge: anytime-valid sequential tests and PSI.

Every test here is an *e-process*: a nonnegative process E_t with E[E_tau] <= 1 under the
null hypothesis for any stopping time tau. By Ville's inequality,
P(sup_t E_t >= 1/alpha) <= alpha, so the judge may look after every flush, as often as it
likes, and reject the first time E_t >= 1/alpha with false-alarm probability <= alpha
(Ramdas, Gruenwald, Vovk & Shafer 2023, "Game-theoretic statistics and safe anytime-valid
inference", Statist. Sci.). A fixed-sample test (t-test, Mann-Whitney) re-run at every look
has no such guarantee. All tests are one-sided (they look for a *regression*) and work in
log space; `log_e >= log(1/alpha)` is the rejection rule.

Tests
-----
1. `log_e_bernoulli(k, n, p0)` - one-sample rate vs an absolute ceiling, H0: p <= p0.
   Discrete mixture over alternatives on an odds-ratio grid r_j = 1.5**j (j = 1..17),
   p_j = r_j p0 / (1 - p0 + r_j p0), uniform weights w_j:
       E_n = sum_j w_j (p_j/p0)**k ((1-p_j)/(1-p0))**(n-k).
   Each term is a likelihood-ratio martingale for p = p0 and a supermartingale for p < p0,
   so the mixture is an e-process for the composite H0 (Wald 1945; Robbins 1970).

2. `ConditionalRateTest` - two-sample comparison of event rates (errors, latency
   exceedances, hallucinations) that accounts for *both* arms' sampling noise.
   At each look we see, for the batch since the previous look, exposures n_A, n_B and event
   counts k_A, k_B. Conditional on the batch total k = k_A + k_B, under
   H0: rate_B <= m * rate_A (m = margin, 1 by default) each event belongs to B with
   probability at most pi0 = m n_B / (n_A + m n_B) (exactly, for Poisson counts; for
   Bernoulli counts and m = 1 the conditional law is hypergeometric, which is dominated
   in convex order by the binomial (Hoeffding 1963), and the likelihood ratio below is
   convex in k_B, so the bound still holds). Against pi_j = r_j n_B / (n_A + r_j n_B),
   r_j = m 1.5**j, the e-process is
       E_t = sum_j w_j prod_batches (pi_j/pi0)**k_B ((1-pi_j)/(1-pi0))**k_A.
   This is the conditional (binomial) test for two Poisson rates (Przyborowski & Wilenski
   1940) made sequential as in Lindon & Malek 2022 ("Anytime-valid inference for
   multinomial count data", NeurIPS) and Lindon et al. 2022 ("Rapid regression detection
   in software deployments through sequential testing", KDD). Conditioning per batch also
   cancels any drift of the base rate shared by both arms (traffic mix, load).

3. `log_e_normal_mixture(d, var, tau)` - mixture SPRT (Robbins 1970; Johari, Koomen,
   Pekelis & Walsh 2017, "Peeking at A/B tests", KDD) for an asymptotically Gaussian
   estimate d of a difference delta with variance var, H0: delta <= 0. With information
   I = 1/var, score S = d I and a half-normal prior N+(0, tau^2) on delta:
       E = 2 / sqrt(1 + tau^2 I) * exp(S^2 tau^2 / (2 (1 + tau^2 I))) * Phi(S / sqrt(I + 1/tau^2)).
   Valid asymptotically with plug-in variances (Waudby-Smith, Arbour, Sinha, Kennedy &
   Ramdas 2021, "Time-uniform central limit theory and asymptotic confidence sequences"),
   hence the guards that use it insist on minimum sample sizes.

PSI
---
`psi(expected, actual)` is the population stability index
    PSI = sum_i (a_i - e_i) ln(a_i / e_i)
over bin shares, with empty bins replaced exactly as evidently 0.7 does
(`evidently.legacy.calculations.stattests.utils.get_binned_data`): a zero share becomes
min(nonzero share) / 1e6 if that minimum is <= 1e-4, else 1e-4. PSI has no p-value: its
sampling bias under no drift is about (bins - 1)(1/n_A + 1/n_B), so the drift guards
require minimum counts and coarsen fine bins into equal-mass groups (`equal_mass_groups`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

# Alternatives: rate (or odds) ratios 1.5, 2.25, ..., ~985 with equal prior weight.
RATIO_GRID = np.array([1.5**j for j in range(1, 18)])
_LOG_W = -math.log(len(RATIO_GRID))
_LOG_W2 = -math.log(2 * len(RATIO_GRID))  # two-sided grids


def log_e_to_threshold(alpha: float) -> float:
    """Rejection threshold on log E for level alpha (Ville: P(sup E >= 1/alpha) <= alpha)."""
    return math.log(1.0 / alpha)


def _logsumexp(x: npt.NDArray[np.float64]) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.sum(np.exp(x - m))))


def log_e_bernoulli(k: int, n: int, p0: float) -> float:
    """log E of the one-sample mixture test of H0: p <= p0 after k events in n trials."""
    if n <= 0 or not 0.0 < p0 < 1.0:
        return 0.0
    odds0 = p0 / (1.0 - p0)
    p1 = RATIO_GRID * odds0 / (1.0 + RATIO_GRID * odds0)
    ll = k * np.log(p1 / p0) + (n - k) * np.log((1.0 - p1) / (1.0 - p0))
    return _LOG_W + _logsumexp(ll)


def split_log_ratios(n_a: float, n_b: float, ratios: npt.NDArray[np.float64],
                     margin: float = 1.0) -> tuple[npt.NDArray[np.float64],
                                                   npt.NDArray[np.float64]]:
    """Per alternative rate ratio r: the log likelihood ratio of one event falling on B,
    and of one falling on A, when a batch's events split between exposures n_A and n_B
    (pi_r = r n_B / (n_A + r n_B) against pi0 at `margin`). A batch with k_A and k_B events
    adds k_B * log_b + k_A * log_a."""
    pi0 = margin * n_b / (n_a + margin * n_b)
    pi = ratios * n_b / (n_a + ratios * n_b)
    return np.log(pi / pi0), np.log((1.0 - pi) / (1.0 - pi0))


class ConditionalRateTest:
    """Sequential two-sample test of H0: rate_B <= margin * rate_A (see module docstring).

    Feed it per-look *increments* with `update`; it keeps one log likelihood ratio per
    alternative. `rejected` latches: once E crossed 1/alpha the null stays rejected, which
    is the decision the anytime-valid guarantee is about.
    """

    __slots__ = ("_ll", "_log_e", "_log_threshold", "_pending", "_ratios", "events_a",
                 "events_b",
                 "margin", "rejected")

    def __init__(self, alpha: float, margin: float = 1.0) -> None:
        if not 0.0 < alpha < 1.0 or margin <= 0.0:
            raise ValueError("ConditionalRateTest needs 0 < alpha < 1 and margin > 0")
        self.margin = margin
        self._ratios = margin * RATIO_GRID
        self._ll = np.zeros(len(RATIO_GRID))
        self._log_e = 0.0  # log E, kept current by every change of _ll
        self._log_threshold = log_e_to_threshold(alpha)
        self.rejected = False
        self.events_a = 0
        self.events_b = 0
        self._pending = [0, 0, 0, 0]

    def update(self, k_a: int, n_a: int, k_b: int, n_b: int, deff: float = 1.0) -> float:
        """Add one batch (events and exposures since the last update); return log E.

        `deff` >= 1 tempers the batch's log likelihood ratio for clustered data (sticky
        keys, `guards.clustering`): the evidence counts as 1/deff of its face value.

        A batch where only one arm has exposure carries no information about the split of
        events, so it is held back and merged into the next batch until both arms have
        exposure (arms' data may arrive at different looks: they are never dropped). The
        grouping depends on exposures only, never on outcomes, so validity is kept.
        """
        self.events_a += k_a
        self.events_b += k_b
        pend = self._pending
        pend[0] += k_a
        pend[1] += n_a
        pend[2] += k_b
        pend[3] += n_b
        k_a, n_a, k_b, n_b = pend
        if n_a > 0 and n_b > 0:
            self._pending = [0, 0, 0, 0]
        if n_a > 0 and n_b > 0 and (k_a or k_b):
            log_b, log_a = split_log_ratios(n_a, n_b, self._ratios, self.margin)
            self._ll += (k_b * log_b + k_a * log_a) / max(deff, 1.0)
            self._log_e = _LOG_W + _logsumexp(self._ll)
        log_e = self.log_e
        if log_e >= self._log_threshold:
            self.rejected = True
        return log_e

    @property
    def log_e(self) -> float:
        return self._log_e

    def state(self) -> dict[str, Any]:
        return {"ll": self._ll.tolist(), "p": list(self._pending), "ea": self.events_a,
                "eb": self.events_b, "r": self.rejected}

    def load(self, d: Mapping[str, Any]) -> None:
        self._ll = np.asarray(d["ll"], dtype=np.float64)
        self._log_e = _LOG_W + _logsumexp(self._ll)
        self._pending = [int(x) for x in d["p"]]
        self.events_a, self.events_b = int(d["ea"]), int(d["eb"])
        self.rejected = bool(d["r"])


class ShapeTest:
    """Sequential two-sample test that two arms' values share one distribution.

    At each look both arms' new values are grouped (groups fixed from data seen before the
    look, e.g. the champion's equal-mass groups). Within group g, conditional on the look's
    group total, under H0 each value belongs to the challenger with probability
    pi0 = n_B / (n_A + n_B) (hypergeometric, dominated in convex order by the binomial, as
    in `ConditionalRateTest`). Each group runs a two-sided mixture over share ratios
    1.5**+-j; the e-process is the average over groups of their e-processes (an average of
    e-processes is one). Looks are compared with each other only through that per-look
    conditioning, so a shift of the traffic mix that both arms see cancels.
    """

    __slots__ = ("_ll", "_log_e", "_log_threshold", "_pa", "_pb", "_ratios", "rejected")

    def __init__(self, alpha: float, n_groups: int) -> None:
        if not 0.0 < alpha < 1.0 or n_groups < 1:
            raise ValueError("ShapeTest needs 0 < alpha < 1 and n_groups >= 1")
        self._ratios = np.concatenate([RATIO_GRID, 1.0 / RATIO_GRID])
        self._ll = np.zeros((n_groups, len(self._ratios)))
        self._log_e = 0.0  # log E, kept current by every change of _ll
        self._log_threshold = log_e_to_threshold(alpha)
        self._pa: list[float] | None = None
        self._pb: list[float] | None = None
        self.rejected = False

    def update(self, a: Sequence[int], b: Sequence[int], starts: Sequence[int],
               deff: float = 1.0) -> float:
        """Add one look's new fine-bin counts of both arms, grouped by `starts`."""
        ga, gb = regroup(a, starts), regroup(b, starts)
        if self._pa is not None and self._pb is not None and len(self._pa) == len(ga):
            ga = [x + y for x, y in zip(ga, self._pa, strict=True)]
            gb = [x + y for x, y in zip(gb, self._pb, strict=True)]
        n_a, n_b = sum(ga), sum(gb)
        if n_a == 0 or n_b == 0:
            self._pa, self._pb = ga, gb
            return self.log_e
        self._pa = self._pb = None
        log_b, log_a = split_log_ratios(n_a, n_b, self._ratios)
        g = min(len(ga), len(self._ll))
        inc = np.outer(gb[:g], log_b) + np.outer(ga[:g], log_a)
        self._ll[:g] += inc / max(deff, 1.0)
        self._log_e = self._compute()
        log_e = self._log_e
        if log_e >= self._log_threshold:
            self.rejected = True
        return log_e

    @property
    def log_e(self) -> float:
        return self._log_e

    def _compute(self) -> float:
        top = self._ll.max(axis=1)
        per_group = _LOG_W2 + top + np.log(np.exp(self._ll - top[:, None]).sum(axis=1))
        return _logsumexp(per_group) - math.log(len(per_group))

    def state(self) -> dict[str, Any]:
        return {"ll": self._ll.tolist(), "pa": self._pa, "pb": self._pb, "r": self.rejected}

    def load(self, d: Mapping[str, Any]) -> None:
        self._ll = np.asarray(d["ll"], dtype=np.float64)
        self._log_e = self._compute()
        self._pa, self._pb, self.rejected = d["pa"], d["pb"], bool(d["r"])


def log_e_normal_mixture(d: float, var: float, tau: float) -> float:
    """log E of the one-sided Gaussian-mixture SPRT of H0: delta <= 0 (see module doc)."""
    if var <= 0.0 or tau <= 0.0 or not math.isfinite(d):
        return 0.0
    info = 1.0 / var
    s = d * info
    t2 = tau * tau
    a = info + 1.0 / t2
    phi = 0.5 * math.erfc(-(s / math.sqrt(a)) / math.sqrt(2.0))
    if phi <= 0.0:
        return -math.inf
    return (
        math.log(2.0)
        - 0.5 * math.log1p(t2 * info)
        + s * s * t2 / (2.0 * (1.0 + t2 * info))
        + math.log(phi)
    )


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Population stability index of two histograms on the same bins (counts or shares).

    Matches evidently 0.7's `psi` stattest given the same bins, empty-bin rule included.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError("psi needs two 1-D histograms of the same length")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi needs non-empty histograms")
    e = _fill_zeroes(e / e.sum())
    a = _fill_zeroes(a / a.sum())
    return float(np.sum((e - a) * np.log(e / a)))


def _fill_zeroes(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    smallest = float(p[p > 0].min())
    fill = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(p == 0, fill, p)


def equal_mass_groups(reference: Sequence[float], n_groups: int = 10) -> list[int]:
    """Start indices of contiguous bin groups each holding >= 1/n_groups of the reference.

    Groups cover every bin (leading/trailing empty bins join the first/last group), so a
    group is never empty in the reference; a short remainder joins the last group.
    """
    total = sum(reference)
    if total <= 0:
        return [0]
    target = total / n_groups
    starts, acc = [0], 0.0
    for i, c in enumerate(reference):
        acc += c
        if acc >= target and i + 1 < len(reference):
            starts.append(i + 1)
            acc = 0.0
    if len(starts) > 1 and acc < target:
        starts.pop()  # the remainder after the last full group merges into it
    return starts


def regroup(counts: Sequence[float], starts: Sequence[int]) -> list[float]:
    """Sum fine-bin counts into the groups starting at `starts`."""
    bounds = [*starts, len(counts)]
    return [sum(counts[bounds[g] : bounds[g + 1]]) for g in range(len(starts))]


def log_e_log_ratio(
    mean_a: float, var_a: float, n_a: float, mean_b: float, var_b: float, n_b: float,
    log_margin: float, tau: float = 0.5,
) -> tuple[float, float]:
    """Test H0: log(mean_b / mean_a) <= log_margin for two positive means.

    Delta method: Var[log mean] ~= var / (n mean^2) per arm; the two arms are independent,
    so the variances add (both arms' noise counts). Returns (log E, estimated log ratio).
    """
    if min(n_a, n_b) <= 1 or mean_a <= 0.0 or mean_b <= 0.0:
        return 0.0, math.nan
    d = math.log(mean_b / mean_a)
    var = var_b / (n_b * mean_b * mean_b) + var_a / (n_a * mean_a * mean_a)
    if var <= 0.0:
        # degenerate (constant) data: any excess is certain
        return (math.inf if d > log_margin else 0.0), d
    return log_e_normal_mixture(d - log_margin, var, tau), d
