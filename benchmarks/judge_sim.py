"""Judge simulation: false rollbacks (A/A) and detection speed, ours vs two baselines.

    python -m benchmarks.judge_sim [--rollouts 2000] [--detect-rollouts 500] [--seed 0]
                                   [--quick] [--workers 2] [--out PATH]

Traffic model (per request): latency ~ lognormal(ln 80 ms, sigma 0.8) (heavy right tail),
0.5% server errors, 1% client errors (never counted against a model), output ~ N(0, 1),
input ~ N(0, 1), busy time = 0.8 * latency, KPI feedback on 20% of OK requests
(conversion 10%), hallucination scores on 10% of OK requests (Beta(1, 9)), flat memory
readings. A 5% canary: every flush of `--flush` requests (default 200) sends exactly 5% to
the challenger (stratified, so the vectorised baselines see equal sample sizes across
rollouts). The judge looks once per flush.

Judges, all fed the same streams:
- ours: the real `guards.verdict.Judge` with the default triggers (every DESIGN.md
  trigger; prices, error SLO, latency SLO and input reference configured so that all but
  the memory guard run statistical tests), fed through real `ArmWindow`s.
- flagger: fixed thresholds checked every analysis interval (5 flushes = 50 challenger
  requests) on that interval's challenger data: error rate > 1% or p95 > 1.5x the
  champion's true p95; rollback after `threshold` = 5 failed checks (Flagger's example).
- kayenta: Mann-Whitney U (scipy.stats.mannwhitneyu) re-run every analysis interval on the
  cumulative challenger samples vs an equal-size champion ("baseline") sample, for latency
  (greater), errors (greater) and output (two-sided), at 98% confidence; any failing
  metric fails the canary (score < 75%).

Scenarios: A/A (challenger identical, `--requests` per rollout), and four regressions from
the first challenger request, run until detected or `--detect-requests`: 100% server errors;
error rate 0.5% -> 3%; latency x1.5 (p95 +50%); output mean shift 0.6 sd (PSI ~0.3).
Detection counts challenger requests seen at the look that rolled back.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guards.context import ArmResources, JudgeContext, ResourceReadings
from guards.drift import grouped_psi
from guards.results import GuardState
from guards.verdict import make_judge
from guards.window import DEFAULT_SPEC, ArmWindow, Outcome

Array = npt.NDArray[np.float64]

LAT_MU, LAT_SIGMA = math.log(0.080), 0.8
BASE_ERR, CLIENT_ERR = 0.005, 0.01
TRUE_P95 = math.exp(LAT_MU + 1.6448536269514722 * LAT_SIGMA)


@dataclass(frozen=True)
class Scenario:
    name: str
    err: float = BASE_ERR  # challenger server-error rate
    lat_scale: float = 1.0  # challenger latency multiplier
    out_shift: float = 0.0  # challenger output mean shift (sd units)


SCENARIOS = {
    "aa": Scenario("aa"),
    "server_errors_100pct": Scenario("server_errors_100pct", err=1.0),
    "error_rate_0.5_to_3pct": Scenario("error_rate_0.5_to_3pct", err=0.03),
    "latency_p95_plus_50pct": Scenario("latency_p95_plus_50pct", lat_scale=1.5),
    "output_psi_0.3": Scenario("output_psi_0.3", out_shift=0.6),
}
TARGETS = {
    "aa_false_rollback_rate": 0.01,
    "server_errors_100pct": 20,
    "error_rate_0.5_to_3pct": 1500,
    "latency_p95_plus_50pct": 1500,
    "output_psi_0.3": 1500,
}


@dataclass(frozen=True)
class SimConfig:
    rollouts: int = 2000
    detect_rollouts: int = 500
    requests: int = 20_000
    detect_requests: int = 60_000
    flush: int = 200
    canary: float = 0.05
    seed: int = 0
    workers: int = 2
    baseline_interval: int = 5  # flushes per Flagger/Kayenta analysis
    flagger_threshold: int = 5
    kayenta_confidence: float = 0.98
    latency_slo_s: float = 0.6

    @property
    def per_flush(self) -> tuple[int, int]:
        b = round(self.flush * self.canary)
        return self.flush - b, b


QUICK = SimConfig(rollouts=100, detect_rollouts=40, requests=10_000, detect_requests=30_000)


# ---- traffic ---------------------------------------------------------------------------
@dataclass
class Batch:
    latency: Array
    outcome: npt.NDArray[np.int64]
    output: Array
    input: Array
    kpi_mask: npt.NDArray[np.bool_]
    kpi: Array
    score_mask: npt.NDArray[np.bool_]
    score: Array


def gen_batch(rng: np.random.Generator, shape: tuple[int, int], err: float, lat_scale: float,
              out_shift: float) -> Batch:
    lat = rng.lognormal(LAT_MU, LAT_SIGMA, shape) * lat_scale
    u = rng.random(shape)
    outcome = np.where(u < err, Outcome.SERVER_ERROR, Outcome.OK)
    outcome = np.where((u >= err) & (u < err + CLIENT_ERR), Outcome.CLIENT_ERROR, outcome)
    ok = outcome == Outcome.OK
    return Batch(
        latency=lat,
        outcome=outcome.astype(np.int64),
        output=rng.normal(out_shift, 1.0, shape),
        input=rng.normal(0.0, 1.0, shape),
        kpi_mask=ok & (rng.random(shape) < 0.2),
        kpi=(rng.random(shape) < 0.1).astype(np.float64),
        score_mask=ok & (rng.random(shape) < 0.1),
        score=rng.beta(1.0, 9.0, shape),
    )


def _record(w: ArmWindow, b: Batch, r: int) -> None:
    w.record_batch(b.latency[r], b.outcome[r], output_value=b.output[r],
                   input_value=b.input[r], busy_s=0.8 * b.latency[r])
    w.record_kpi_batch(b.kpi[r][b.kpi_mask[r]])
    w.record_hallucination_batch(b.score[r][b.score_mask[r]])


def input_reference(seed: int) -> tuple[int, ...]:
    x = np.random.default_rng(seed + 7919).normal(0.0, 1.0, 200_000)
    idx = np.searchsorted(np.asarray(DEFAULT_SPEC.input_edges), x, side="right")
    return tuple(np.bincount(idx, minlength=len(DEFAULT_SPEC.input_edges) + 1).tolist())


def judge_context(cfg: SimConfig) -> JudgeContext:
    return JudgeContext(
        alpha=0.01,
        latency_slo_s=cfg.latency_slo_s,
        error_slo_target=0.99,
        price_per_replica_second=0.0004,
        input_reference=input_reference(cfg.seed),
    )


def _memory() -> ResourceReadings:
    rng = np.random.default_rng(1)
    total = 16 * 2**30
    hist = tuple(int(0.4 * total + x) for x in rng.normal(0, 2**20, 30))
    arm = ArmResources(hist[-1], total, hist)
    return ResourceReadings(champion=arm, challenger=arm)


# ---- baselines (vectorised over rollouts) -----------------------------------------------
class Flagger:
    def __init__(self, cfg: SimConfig, n: int) -> None:
        self.cfg = cfg
        self.failed = np.zeros(n, dtype=np.int64)
        self.lat: list[Array] = []
        self.err: list[Array] = []

    def step(self, b: Batch) -> npt.NDArray[np.bool_]:
        judged = b.outcome != Outcome.CLIENT_ERROR
        self.err.append(np.where(judged, b.outcome >= Outcome.SERVER_ERROR, np.nan))
        self.lat.append(np.where(b.outcome == Outcome.OK, b.latency, np.nan))
        if len(self.lat) < self.cfg.baseline_interval:
            return self.failed >= self.cfg.flagger_threshold
        err = np.concatenate(self.err, axis=1)
        lat = np.concatenate(self.lat, axis=1)
        self.lat, self.err = [], []
        with np.errstate(all="ignore"), _quiet():
            rate = np.nanmean(err, axis=1)
            p95 = np.nanpercentile(lat, 95, axis=1)
        bad = (np.nan_to_num(rate) > 0.01) | (np.nan_to_num(p95) > 1.5 * TRUE_P95)
        self.failed += bad
        return self.failed >= self.cfg.flagger_threshold


class Kayenta:
    def __init__(self, cfg: SimConfig, n: int) -> None:
        self.cfg = cfg
        self.n = n
        self.looks = 0
        self.a: dict[str, list[Array]] = {"lat": [], "err": [], "out": []}
        self.b: dict[str, list[Array]] = {"lat": [], "err": [], "out": []}
        self.failed = np.zeros(n, dtype=bool)

    def step(self, a: Batch, b: Batch) -> npt.NDArray[np.bool_]:
        from scipy.stats import mannwhitneyu

        k = b.latency.shape[1]
        for store, x in ((self.a, a), (self.b, b)):
            ok = x.outcome[:, :k] != Outcome.CLIENT_ERROR
            store["lat"].append(np.where(ok, x.latency[:, :k], np.nan))
            store["err"].append((x.outcome[:, :k] >= Outcome.SERVER_ERROR).astype(float))
            store["out"].append(x.output[:, :k])
        self.looks += 1
        if self.looks % self.cfg.baseline_interval:
            return self.failed
        alpha = 1.0 - self.cfg.kayenta_confidence
        for metric, alt in (("lat", "greater"), ("err", "greater"), ("out", "two-sided")):
            xa = np.concatenate(self.a[metric], axis=1)
            xb = np.concatenate(self.b[metric], axis=1)
            if metric == "lat":  # failed requests have no latency: use the arm's median
                xa = np.where(np.isnan(xa), np.nanmedian(xa, axis=1, keepdims=True), xa)
                xb = np.where(np.isnan(xb), np.nanmedian(xb, axis=1, keepdims=True), xb)
            with np.errstate(all="ignore"), _quiet():
                p = mannwhitneyu(xb, xa, alternative=alt, axis=1, method="asymptotic").pvalue
            # two-sided p at 98% confidence; a one-sided "bad direction" p is half of it
            limit = alpha / 2 if alt == "greater" else alpha
            self.failed |= np.nan_to_num(p, nan=1.0) < limit
        return self.failed


def _quiet() -> warnings.catch_warnings[None]:
    # all-NaN slices (a rollout with no data in an interval) are expected here
    return warnings.catch_warnings(action="ignore")


# ---- one chunk of rollouts (runs in a worker) ------------------------------------------
def run_chunk(args: tuple[SimConfig, str, int, int]) -> dict[str, Any]:
    cfg, scen_name, n, seed = args
    scen = SCENARIOS[scen_name]
    is_aa = scen_name == "aa"
    rng = np.random.default_rng(seed)
    ctx = judge_context(cfg)
    n_a, n_b = cfg.per_flush
    looks = (cfg.requests if is_aa else cfg.detect_requests) // cfg.flush
    champs = [ArmWindow() for _ in range(n)]
    chals = [ArmWindow() for _ in range(n)]
    judges = [make_judge(None, ctx) for _ in range(n)]
    memory = _memory()
    flagger, kayenta = Flagger(cfg, n), Kayenta(cfg, n)
    inf = math.inf
    det = {"ours": np.full(n, inf), "flagger": np.full(n, inf), "kayenta": np.full(n, inf)}
    fired: Counter[str] = Counter()
    catastrophic = 0
    active = list(range(n))
    for look in range(1, looks + 1):
        a = gen_batch(rng, (n, n_a), BASE_ERR, 1.0, 0.0)
        b = gen_batch(rng, (n, n_b), scen.err, scen.lat_scale, scen.out_shift)
        seen = look * n_b
        still = []
        for r in active:
            _record(champs[r], a, r)
            _record(chals[r], b, r)
            v = judges[r].evaluate(champs[r], chals[r], memory)
            if v.state is GuardState.FAIL:
                det["ours"][r] = seen
                catastrophic += v.catastrophic
                for res in v.results:
                    if res.state is GuardState.FAIL:
                        fired[res.guard] += 1
            else:
                still.append(r)
        active = still
        for name, fails in (("flagger", flagger.step(b)), ("kayenta", kayenta.step(a, b))):
            newly = fails & np.isinf(det[name])
            det[name][newly] = seen
        if not is_aa and not active and all(np.isfinite(d).all() for d in det.values()):
            break
    return {"det": {k: v.tolist() for k, v in det.items()}, "fired": dict(fired),
            "catastrophic": catastrophic}


# ---- orchestration ---------------------------------------------------------------------
def _chunks(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts) if base + (i < extra) > 0]


def run_scenario(cfg: SimConfig, name: str, pool_map: Callable[..., Any]) -> dict[str, Any]:
    total = cfg.rollouts if name == "aa" else cfg.detect_rollouts
    sizes = _chunks(total, max(cfg.workers * 2, 1))
    seeds = np.random.SeedSequence([cfg.seed, list(SCENARIOS).index(name)]).spawn(len(sizes))
    jobs = [(cfg, name, s, int(sd.generate_state(1)[0])) for s, sd in zip(sizes, seeds,
                                                                        strict=True)]
    parts = list(pool_map(run_chunk, jobs))
    det = {k: np.concatenate([np.asarray(p["det"][k]) for p in parts]) for k in parts[0]["det"]}
    fired: Counter[str] = Counter()
    for p in parts:
        fired.update(p["fired"])
    catastrophic = sum(p["catastrophic"] for p in parts)
    if name == "aa":
        out: dict[str, Any] = {"rollouts": total, "requests_per_rollout": cfg.requests}
        for k, d in det.items():
            n_false = int(np.isfinite(d).sum())
            out[k] = {"false_rollbacks": n_false, "false_rollback_rate": n_false / total}
        out["ours"]["fired_guards"] = dict(fired)
        return out
    out = {"rollouts": total, "max_challenger_requests": cfg.detect_requests * cfg.canary}
    for k, d in det.items():
        out[k] = _detection_summary(d)
    out["ours"]["fired_guards"] = dict(fired)
    out["ours"]["catastrophic_fast_path"] = catastrophic
    return out


def _detection_summary(d: npt.NDArray[np.float64]) -> dict[str, Any]:
    detected = np.isfinite(d)
    # order statistics, no interpolation (undetected rollouts count as +inf)
    med = float(np.quantile(d, 0.5, method="inverted_cdf"))
    return {
        "median_challenger_requests": _finite(med),
        "p90_challenger_requests": _finite(float(np.quantile(d, 0.9, method="inverted_cdf"))),
        "detected_share": float(detected.mean()),
    }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def true_output_psi(shift: float, seed: int = 0) -> float:
    """PSI of the shifted output vs the champion's on the judge's binning, large samples."""
    rng = np.random.default_rng(seed)
    edges = np.asarray(DEFAULT_SPEC.output_edges)
    size = len(edges) + 1

    def hist(x: Array) -> list[int]:
        idx = np.searchsorted(edges, x, side="right")
        return [int(c) for c in np.bincount(idx, minlength=size)]

    return grouped_psi(hist(rng.normal(0, 1, 2_000_000)), hist(rng.normal(shift, 1, 2_000_000)),
                       10)


def run(cfg: SimConfig, scenarios: list[str] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    names = scenarios or list(SCENARIOS)
    results: dict[str, Any] = {}
    if cfg.workers > 1:
        ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        with ctx.Pool(cfg.workers) as pool:
            for name in names:
                results[name] = run_scenario(cfg, name, pool.imap_unordered)
    else:
        for name in names:
            results[name] = run_scenario(cfg, name, map)
    judge = make_judge(None, judge_context(cfg))
    report: dict[str, Any] = {
        "benchmark": "judge_sim",
        "config": asdict(cfg),
        "traffic": {"latency": f"lognormal(ln 0.080 s, sigma {LAT_SIGMA})",
                    "true_champion_p95_s": TRUE_P95, "base_error_rate": BASE_ERR,
                    "client_error_rate": CLIENT_ERR, "canary_weight": cfg.canary,
                    "output_shift_true_psi": true_output_psi(
                        SCENARIOS["output_psi_0.3"].out_shift)},
        "ours": {"triggers": [t.to_dict() for t in judge.triggers],
                 "alpha_total": judge.context.alpha, "alpha_per_test": judge.alpha_per_test},
        "scenarios": results,
    }
    report["targets"], report["meets_targets"] = TARGETS, _check(results)
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    return report


def _check(results: dict[str, Any]) -> dict[str, bool]:
    ok: dict[str, bool] = {}
    if "aa" in results:
        rate = results["aa"]["ours"]["false_rollback_rate"]
        ok["aa_false_rollback_rate"] = rate <= TARGETS["aa_false_rollback_rate"]
    for name, target in TARGETS.items():
        if name in results:
            med = results[name]["ours"]["median_challenger_requests"]
            ok[name] = med is not None and med <= target
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.judge_sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rollouts", type=int, help="A/A rollouts (default 2000; quick 100)")
    p.add_argument("--detect-rollouts", type=int, help="rollouts per regression scenario")
    p.add_argument("--requests", type=int, help="requests per A/A rollout (default 20000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="small run for CI (a few seconds)")
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS),
                   help="run only these scenarios (repeatable)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    a = p.parse_args(argv)
    cfg = replace(QUICK if a.quick else SimConfig(), seed=a.seed, workers=a.workers)
    for field, value in (("rollouts", a.rollouts), ("detect_rollouts", a.detect_rollouts),
                         ("requests", a.requests)):
        if value is not None:
            cfg = replace(cfg, **{field: value})
    report = run(cfg, a.scenario)
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
