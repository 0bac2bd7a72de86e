"""Sticky traffic: the design effect of keys that go wholly to one arm.

With `x-gateway-key`, all of a key's requests land on one arm, so requests are not
independent units: keys differ (a heavy user, a slow region), and an arm's sample is a
sample of keys. Tests that count requests as independent then overstate the evidence.

The unit of analysis becomes the key bucket: keyed requests are tallied per analysis
bucket (`guards.window.key_bucket`, independent of routing), and a one-way ANOVA across the
buckets of each arm (centred per arm, so the arm difference itself is not counted) gives
the design effect deff = MSB / MSW, about 1 + (requests per key) * var(key effect) /
var(request). Every sequential test divides its log e-value increments by
1 + keyed_share * (deff - 1) (floored at 1), the usual quasi-likelihood correction for
clustered counts: once the keys, not the requests, are what limits the evidence, evidence
stops growing with the request count. Unkeyed traffic pays nothing.

Model-server batching clusters requests the same way: the requests of one batch share its
service time (and its fate when the batch fails), so a batch of m carries about one
observation, not m. With perfect correlation inside a batch the design effect is exactly
the batch size seen by an average request, sum(m^2) / sum(m) = 1 + sum over requests of
(m - 1) / n (`ArmWindow.batch_excess`); it multiplies the key design effect. Unbatched
traffic (every batch of 1) pays nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from guards.window import FIXED, KEY_BUCKETS, KEY_STATS, ArmWindow

MIN_PER_BUCKET = 2  # buckets with fewer requests carry no variance information


@dataclass(frozen=True, slots=True)
class DesignEffect:
    rate: float = 1.0  # for error-rate tests
    latency: float = 1.0  # for latency and every other per-request test

    def describe(self) -> str:
        return f"clustered traffic (sticky keys, batches): design effect {self.rate:.2f} " \
               f"(errors), {self.latency:.2f} (latency)"


def design_effect(champion: ArmWindow, challenger: ArmWindow) -> DesignEffect:
    keyed = champion.n_keyed + challenger.n_keyed
    total = champion.n_judged + challenger.n_judged
    if total == 0:
        return DesignEffect()
    batch = 1.0 + (champion.batch_excess + challenger.batch_excess) / total
    if keyed == 0:
        return DesignEffect(batch, batch)
    share = keyed / total
    arms = (champion.key_stats(), challenger.key_stats())
    rate = _deff(arms, n_col=0, sum_col=1, sq_col=None, scale=1.0)
    lat = _deff(arms, n_col=2, sum_col=3, sq_col=4, scale=float(FIXED))
    return DesignEffect(batch * (1.0 + share * (rate - 1.0)),
                        batch * (1.0 + share * (lat - 1.0)))


def _deff(arms: Sequence[list[int]], n_col: int, sum_col: int, sq_col: int | None,
          scale: float) -> float:
    """The design effect of the key buckets, the larger of each arm's own and the pooled one.

    Per arm, the ANOVA estimate of the intra-bucket correlation rho and the size-weighted
    mean bucket size m_w = sum n_b^2 / sum n_b give deff = 1 + (m_w - 1) rho, the design
    effect of unequal clusters. At a 5% step the challenger holds a few keys and a heavy
    one can carry most of its requests: m_w is then close to its whole sample, and the
    comparison's evidence is limited by that one key, not by the request count. Pooled with
    the champion's many well-mixed buckets, that would be hidden."""
    parts = [p for p in (_anova(kb, n_col, sum_col, sq_col, scale) for kb in arms) if p]
    if not parts:
        return 1.0
    pooled = _kish(*(sum(p[i] for p in parts) for i in range(6)))
    return max([pooled, *(_kish(*p) for p in parts)])


def _anova(kb: list[int], n_col: int, sum_col: int, sq_col: int | None,
           scale: float) -> tuple[float, float, int, int, int, int] | None:
    """One arm's between and within sums of squares, their degrees of freedom, its request
    count and the sum of squared bucket sizes."""
    rows = [(kb[i * KEY_STATS + n_col], kb[i * KEY_STATS + sum_col],
             kb[i * KEY_STATS + sq_col] if sq_col is not None else None)
            for i in range(KEY_BUCKETS)]
    rows = [r for r in rows if r[0] >= MIN_PER_BUCKET]
    if len(rows) < 2:
        return None
    n_arm = sum(r[0] for r in rows)
    mean = sum(r[1] for r in rows) / scale / n_arm
    ssb = ssw = 0.0
    for n, s, sq in rows:
        m = s / scale / n
        ssb += n * (m - mean) ** 2
        # binary outcomes (errors): the within sum of squares follows from the mean
        within = (sq / scale / scale - n * m * m) if sq is not None else n * m * (1.0 - m)
        ssw += max(within, 0.0)
    return ssb, ssw, len(rows) - 1, n_arm - len(rows), n_arm, sum(r[0] ** 2 for r in rows)


def _kish(ssb: float, ssw: float, groups: float, n_within: float, n: float,
          n_sq: float) -> float:
    if groups < 4 or n_within <= 0 or ssw <= 0.0 or n <= 0:
        return 1.0
    msb, msw = ssb / groups, ssw / n_within
    m0 = (n - n_sq / n) / groups  # the ANOVA's mean bucket size for unequal buckets
    rho = max((msb - msw) / (msb + (m0 - 1.0) * msw), 0.0)
    return max(1.0, msb / msw, 1.0 + (n_sq / n - 1.0) * rho)
