"""Judge simulation: whole rollouts in simulated time, through the real windows, judge and
rollout state machine. False rollbacks under eight A/A variants, and detection speed.

    python -m benchmarks.judge_sim [--quick] [--rollouts N] [--detect-rollouts N]
                                   [--variant NAME ...] [--workers 2] [--seed 0]
                                   [--out PATH] [--markdown]

A rollout: the default `gateway.control.rollout.RolloutPolicy` (5% -> 25% -> 50% of traffic, at
least 200 / 500 / 1000 challenger requests and 30 / 60 / 60 s per step, then promotion),
driven by `gateway.control.rollout.observe` with the real judge's verdict at every look (a held
verdict stops the step clock; a FAIL rolls back). Requests arrive in simulated time (100-200
req/s, drawn per rollout) and go through the ingress's rules (`benchmarks.judge_sim_traffic`:
the challenger's 2 s timeout with failover, the champion censored at the same deadline, only
OK replies carry data). One ingress replica flushes every 0.25 s, and 0.05 s after a failed
challenger call; each flush is one look: `judge.observe(champion_delta, challenger_delta,
resources)` on the replica's `ArmWindow.take_delta()` (failure runs carry over), with the
memory readings the supervisor builds (`benchmarks.judge_sim_memory`).

The judge: `guards.verdict.make_judge(None, context)` (the default triggers) with a latency
SLO (0.6 s), an error SLO (99%), a price per replica-second and an input reference, KPI
feedback and hallucination scores recorded, so every guard runs.

A/A variants (challenger = champion): base (i.i.d.); stall (2-6 s during which both arms'
latencies exceed 2.5 s); load (both arms x2-x3 slower for 20-60 s); bursty_batched (on/off
Poisson-gamma arrivals, model-server batches sharing one latency draw); sticky (2,000-20,000
keys, Zipf shares, per-key latency and error differences, routed by
`gateway.wire.routing.sticky_bucket`); mix_shift (both arms' output, input, KPI and latency shift
mid-rollout); vllm_memory (both arms at the engine's 0.9 preallocation); restart (the
supervisor restarts mid-rollout: judge state through JSON, 1-5 s of looks lost).

Detection scenarios (regression from the challenger's first request, until rollback or
promotion): total failure, error rate x5, p95 +40%, a service-time tail under a dominant
shared host delay, output shift 0.6 sd, throughput -40%, a 0.5 MiB-per-request memory leak.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import beta, binom

from benchmarks.judge_sim_baselines import Baselines
from benchmarks.judge_sim_memory import GiB, Memory, MiB
from benchmarks.judge_sim_traffic import (
    ARM,
    ARR,
    BASE,
    BATCH,
    BUSY,
    CHALLENGER,
    FLUSH_S,
    HOST_DOMINATED,
    IV,
    KB,
    KPI,
    LAT,
    NCOLS,
    OUT,
    OV,
    REC,
    SCORE,
    URGENT_S,
    Effects,
    Keys,
    Profile,
    Regression,
    Traffic,
)
from gateway.control import rollout as ro
from guards.context import JudgeContext
from guards.drift import grouped_psi
from guards.results import GuardState
from guards.verdict import Judge, Verdict, make_judge
from guards.window import DEFAULT_SPEC, ArmWindow, Outcome
from model_registry.refs import ModelRef

POLICY = ro.RolloutPolicy()
IDENTITY = Regression()
SIM_VERSION = 2  # bump when `simulate` changes what a rollout does (invalidates --raw rows)
_ROOT = Path(__file__).resolve().parent.parent


def code_fingerprint(paths: Sequence[str]) -> str:
    """sha256 (12 hex digits) of the Python sources under `paths` (relative to the repo)."""
    h = hashlib.sha256()
    for rel in paths:
        p = _ROOT / rel
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(_ROOT).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


# What the results depend on, taken when this module is imported (the code that runs).
JUDGE_FINGERPRINT = code_fingerprint(("guards", "gateway/control/rollout.py",
                                      "gateway/wire/routing.py"))
SIM_FINGERPRINT = code_fingerprint(("benchmarks/judge_sim_traffic.py",
                                    "benchmarks/judge_sim_memory.py",
                                    "benchmarks/judge_sim_baselines.py")) + f"v{SIM_VERSION}"
HORIZON_S = 1200.0  # a rollout still running then is reported as "running"
CHAMPION_REF = ModelRef("sim", "1", "sim://champion")
CHALLENGER_REF = ModelRef("sim", "2", "sim://challenger")
SYNTHETIC_PASS = Verdict(GuardState.PASS, None, None, ("ours already decided",), (), False)
LATENCY_SLO_S = 0.6
# Guards whose `statistic` is a log e-value (near-miss diagnostic).
E_GUARDS = ("error_rate", "latency_p95", "kpi", "hallucination_rate", "output_drift",
            "input_drift", "throughput", "cost", "error_budget_burn")
NEAR_MISS = 10.0  # an e-value within this factor of the rejection threshold


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # aa | detect
    description: str
    profile: Profile = BASE
    regression: Regression = IDENTITY
    stall: bool = False
    load: bool = False
    bursty: bool = False
    batched: bool = False
    sticky: bool = False
    shift: bool = False
    memory: str = "torch"
    restart: bool = False
    baselines: bool = False


_AA = [
    Scenario("base", "aa", "i.i.d. traffic, Poisson arrivals", baselines=True),
    Scenario("stall", "aa", "a shared stall of 2-6 s (random start): both arms' latencies "
             "exceed 2.5 s, so both time out at the 2 s deadline", stall=True),
    Scenario("load", "aa", "shared load: both arms x2-x3 slower for 20-60 s (random start), "
             "partly beyond the 0.6 s SLO", load=True),
    Scenario("bursty_batched", "aa", "on/off bursts (x1.7 / x0.3, mean 3 s) times gamma noise; "
             "model-server batches of 1 + Poisson(2.5) (<= 8) requests share one latency draw",
             bursty=True, batched=True),
    Scenario("sticky", "aa", "every request keyed: 2,000-20,000 keys, Zipf shares (exponent "
             "0.9-1.1), per-key latency x lognormal(sigma 0.3-0.5) and error rate x Gamma(2, "
             "0.5); keys routed by sticky_bucket", sticky=True),
    Scenario("mix_shift", "aa", "at a random time both arms' traffic mix shifts: output and "
             "input mean +0.5 sd and sd x1.2, latency x1.5, KPI conversion x0.8", shift=True),
    Scenario("vllm_memory", "aa", "vLLM-like memory: both arms at the engine's preallocation "
             "(reserved 0.9 of a 16-80 GiB device) with jitter, KV-cache usage following each "
             "arm's traffic share", memory="vllm"),
    Scenario("restart", "aa", "the supervisor restarts at a random time: judge state through "
             "json.dumps/loads into a new judge, the looks since the last persist (5 s) and "
             "during 1-5 s of downtime lost", restart=True),
]
_DETECT = [
    Scenario("total_failure", "detect", "100% server errors (failing fast, 5 ms)",
             regression=Regression(server_error=1.0, error_latency_s=0.005), baselines=True),
    Scenario("error_rate_x5", "detect", "server errors 0.5% -> 2.5%",
             regression=Regression(server_error=0.025), baselines=True),
    Scenario("latency_p95_plus_40pct", "detect", "end-to-end latency x1.4 (p95 +40%)",
             regression=Regression(latency_scale=1.4), baselines=True),
    Scenario("service_time_tail", "detect", "3% of calls' service time x6 (end-to-end latency "
             "dominated by a host delay, median 150 ms, shared by both arms; service median 20 "
             "ms)", profile=HOST_DOMINATED,
             regression=Regression(tail_share=0.03, tail_factor=6.0), baselines=True),
    Scenario("output_shift_0.6sd", "detect", "output mean +0.6 sd",
             regression=Regression(output_shift=0.6), baselines=True),
    Scenario("throughput_minus_40pct", "detect", "busy time per request x1/0.6 (throughput "
             "per busy replica-second -40%), same latency",
             regression=Regression(busy_scale=1 / 0.6)),
    Scenario("memory_leak", "detect", "0.5 MiB per request served by the challenger (torch: "
             "no preallocation, 16-80 GiB device, ~0.4 used)",
             regression=Regression(leak_bytes_per_request=0.5 * MiB)),
]
# Diagnostics, run only when named with --variant: bursty_batched's two halves.
_EXTRA = [
    Scenario("bursty_only", "aa", "bursty_batched's on/off Poisson-gamma arrivals alone",
             bursty=True),
    Scenario("batched_only", "aa", "bursty_batched's model-server batches alone (Poisson "
             "arrivals)", batched=True),
]
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (*_AA, *_DETECT, *_EXTRA)}
AA_NAMES = tuple(s.name for s in _AA)
DETECT_NAMES = tuple(s.name for s in _DETECT)

TARGETS: dict[str, Any] = {
    "aa_false_rollback_ub95": 0.01,  # every A/A variant: one-sided exact 95% upper bound
    "total_failure_median": 10,
    "error_rate_x5_p95": 1500,
    "latency_p95_plus_40pct_median": 500,
    "service_time_tail_caught_share": 0.95,
}


@dataclass(frozen=True)
class SimConfig:
    aa_rollouts: dict[str, int] = field(default_factory=lambda: {
        n: (2000 if n == "base" else 1000) for n in AA_NAMES})
    detect_rollouts: dict[str, int] = field(default_factory=lambda: {
        n: 300 for n in DETECT_NAMES})
    seed: int = 0
    workers: int = 2
    chunk: int = 10  # rollouts per task sent to a worker
    raw_dir: str | None = None  # per-rollout rows: written there, and reused when complete

    def count(self, name: str) -> int:
        return (self.aa_rollouts if SCENARIOS[name].kind == "aa"
                else self.detect_rollouts).get(name, 0)

    @property
    def names(self) -> list[str]:
        """What to run, the (fast) detection scenarios first."""
        order = sorted(SCENARIOS, key=lambda n: SCENARIOS[n].kind != "detect")
        return [n for n in order if self.count(n) > 0]


# The quick run (CI): every A/A variant, and the detection checks the test asserts.
QUICK_AA = 60
QUICK = SimConfig(aa_rollouts={n: QUICK_AA for n in AA_NAMES},
                  detect_rollouts={"total_failure": 20, "service_time_tail": 20,
                                   "memory_leak": 10})


# ---- the judge's context ------------------------------------------------------------------
def input_reference(seed: int = 0) -> tuple[int, ...]:
    x = np.random.default_rng(seed + 7919).normal(0.0, 1.0, 200_000)
    idx = np.searchsorted(np.asarray(DEFAULT_SPEC.input_edges), x, side="right")
    return tuple(np.bincount(idx, minlength=len(DEFAULT_SPEC.input_edges) + 1).tolist())


def judge_context(seed: int = 0) -> JudgeContext:
    return JudgeContext(alpha=0.01, latency_slo_s=LATENCY_SLO_S, error_slo_target=0.99,
                        price_per_replica_second=0.0004, input_reference=input_reference(seed))


def true_p95(profile: Profile, n: int = 1_000_000) -> float:
    rng = np.random.default_rng(12345)
    host = profile.host_median_s * np.exp(profile.host_sigma * rng.standard_normal(n))
    svc = profile.service_median_s * np.exp(profile.service_sigma * rng.standard_normal(n))
    return float(np.percentile(host + svc, 95))


# ---- one rollout ------------------------------------------------------------------------
@dataclass
class RolloutResult:
    end: str  # promoted | rolled_back | paused | running
    t_end: float
    challenger_requests: int  # at the end (the rollback look for rolled_back)
    step: int
    looks: int
    held: bool
    held_s: float
    fired: list[str]
    reasons: list[str]
    catastrophic: bool
    max_log_e: dict[str, float]
    baselines: dict[str, int | None] | None
    params: dict[str, Any]
    trace: list[dict[str, Any]] | None = None
    hold_reason: str | None = None  # the first held verdict's
    hold_at: float | None = None


def _effects(scen: Scenario, rng: np.random.Generator, seed: int) -> tuple[Effects, dict[str, Any]]:
    rate = float(rng.uniform(100.0, 200.0))
    params: dict[str, Any] = {"rate": round(rate, 1)}
    fx = Effects(rate=rate, bursty=scen.bursty, batched=scen.batched)
    if scen.stall:
        s0 = float(rng.uniform(5.0, 170.0))
        fx = replace(fx, stall=(s0, s0 + float(rng.uniform(2.0, 6.0))))
        params["stall"] = [round(x, 2) for x in fx.stall or ()]
    if scen.load:
        s0 = float(rng.uniform(0.0, 160.0))
        fx = replace(fx, load=(s0, s0 + float(rng.uniform(20.0, 60.0)),
                               float(rng.uniform(2.0, 3.0))))
        params["load"] = [round(x, 2) for x in fx.load or ()]
    if scen.shift:
        fx = replace(fx, shift_at=float(rng.uniform(20.0, 170.0)))
        params["shift_at"] = round(fx.shift_at or 0.0, 2)
    if scen.sticky:
        keys = Keys.draw(rng, f"k{seed}")
        fx = replace(fx, keys=keys)
        params["keys"] = {"n": int(keys.cdf.size), "exponent": round(keys.exponent, 3),
                          "sigma": round(keys.sigma, 3)}
    return fx, params


def simulate(scen: Scenario, seed: int, ctx: JudgeContext, p95: float,
             trace: bool = False) -> RolloutResult:
    """One rollout of `scen` with its own random stream `seed`."""
    rng = np.random.default_rng(seed)
    fx, params = _effects(scen, rng, seed)
    traffic = Traffic(rng, scen.profile, fx, scen.regression, HORIZON_S)
    total = int(rng.uniform(16.0, 80.0) * GiB)
    memory = Memory(rng, scen.memory, total, fx.rate, scen.regression.leak_bytes_per_request)
    params["device_gib"] = round(total / GiB, 1)
    crash = restart_at = persist_at = None
    if scen.restart:
        crash = float(rng.uniform(20.0, 170.0))
        restart_at = crash + float(rng.uniform(1.0, 5.0))
        persist_at = 5.0 * math.floor(crash / 5.0)
        params["restart"] = [persist_at, round(crash, 2), round(restart_at, 2)]
    judge: Judge = make_judge(None, ctx)
    saved: str | None = None
    state = ro.start(ro.initial_state(CHAMPION_REF), CHALLENGER_REF, "sim", 0.0).state
    state = ro.loaded(state, POLICY, 0.0).state
    base = Baselines(p95) if scen.baselines else None
    replica = (ArmWindow(), ArmWindow())
    pending = np.empty((0, NCOLS))
    served = [0, 0]
    t, looks, chal_requests = 0.0, 0, 0
    ours: RolloutResult | None = None
    held, held_s, last_t = False, 0.0, 0.0
    hold_reason: str | None = None
    hold_at: float | None = None
    max_e: dict[str, float] = {}
    steps: list[dict[str, Any]] | None = [] if trace else None
    while t < HORIZON_S:
        weight = POLICY.steps[state.step].weight
        new = traffic.slice(t, t + FLUSH_S, weight)
        pool = np.concatenate((pending, new)) if pending.size else new
        nxt = t + FLUSH_S
        fail_b = (pool[:, ARM] == CHALLENGER) & (pool[:, OUT] >= Outcome.SERVER_ERROR)
        if fail_b.any():
            nxt = min(nxt, float(pool[fail_b, REC].min()) + URGENT_S)
            if nxt < t + FLUSH_S:  # later arrivals follow the table of the next look
                pool = pool[pool[:, ARR] <= nxt]
                new = new[new[:, ARR] <= nxt]
        b_new = int((new[:, ARM] == CHALLENGER).sum())
        served[1] += b_new
        served[0] += new.shape[0] - b_new
        due = pool[:, REC] <= nxt
        rows, pending = pool[due], pool[~due]
        rows = rows[np.argsort(rows[:, REC], kind="stable")]
        _record(replica, rows)
        d_a, d_b = replica[0].take_delta(), replica[1].take_delta()
        t = nxt
        if base is not None:
            base.add(rows)
        if crash is not None and restart_at is not None:
            if saved is None and persist_at is not None and t >= persist_at:
                saved = json.dumps(judge.state())
            if t >= crash and t < restart_at:
                continue  # the supervisor is down: this flush is lost
            if t >= restart_at:
                judge = make_judge(None, ctx)
                judge.load(json.loads(saved or "{}"))
                memory.forget_counts()
                crash = restart_at = None
        chal_requests += d_b.n_requests
        if ours is None:
            known = (judge.champion.n_requests + d_a.n_requests,
                     judge.challenger.n_requests + d_b.n_requests)
            res = memory.update(t, (served[0], served[1]), known)
            verdict = judge.observe(d_a, d_b, res)
            looks += 1
            for r in verdict.results:
                if r.statistic is not None and r.guard in E_GUARDS and \
                        r.statistic > max_e.get(r.guard, -math.inf):
                    max_e[r.guard] = float(r.statistic)
            if verdict.hold and not held:
                held, hold_reason, hold_at = True, "; ".join(verdict.reasons), t
            requests = judge.challenger.n_requests
        else:
            verdict, requests = SYNTHETIC_PASS, chal_requests
        if state.held_since is not None:
            held_s += t - last_t
        last_t = t
        tr = ro.observe(state, POLICY, verdict, requests, t)
        if steps is not None and ours is None:
            steps.append(_trace_row(t, state, verdict, d_a, d_b))
        if base is not None:
            base.step(t, chal_requests)
        if ours is None and tr.state.phase is ro.Phase.ROLLED_BACK:
            fired = [r.guard for r in verdict.results if r.state is GuardState.FAIL]
            ours = RolloutResult("rolled_back", t, requests, state.step, looks, held, held_s,
                                 fired, list(verdict.reasons), verdict.catastrophic, max_e,
                                 None, params, steps, hold_reason, hold_at)
            if base is None or base.done:
                break
            continue  # the baselines go on with the same traffic; ours has decided
        state = tr.state
        if state.phase is not ro.Phase.CANARY or (ours is not None and base is not None
                                                  and base.done):
            break
    if ours is None:
        end = {ro.Phase.PROMOTED: "promoted", ro.Phase.PAUSED: "paused"}.get(state.phase,
                                                                          "running")
        ours = RolloutResult(end, t, judge.challenger.n_requests, state.step, looks, held,
                             held_s, [], [], False, max_e, None, params, steps, hold_reason,
                             hold_at)
    if base is not None:
        ours.baselines = {"flagger": base.flagger, "kayenta": base.kayenta}
    return ours


def _record(replica: tuple[ArmWindow, ArmWindow], rows: np.ndarray) -> None:
    for arm, window in enumerate(replica):
        r = rows[rows[:, ARM] == arm]
        if r.shape[0] == 0:
            continue
        kb = r[:, KB].astype(np.int64)
        window.record_batch(r[:, LAT], r[:, OUT].astype(np.int64), output_value=r[:, OV],
                            input_value=r[:, IV], busy_s=r[:, BUSY],
                            key_bucket=kb if kb[0] >= 0 else None,
                            batch_size=r[:, BATCH].astype(np.int64))
        kpi = r[:, KPI][~np.isnan(r[:, KPI])]
        if kpi.size:
            window.record_kpi_batch(kpi)
        score = r[:, SCORE][~np.isnan(r[:, SCORE])]
        if score.size:
            window.record_hallucination_batch(score)


def _trace_row(t: float, state: ro.RolloutState, v: Verdict, d_a: ArmWindow,
               d_b: ArmWindow) -> dict[str, Any]:
    return {"t": round(t, 3), "step": state.step, "held": state.held_since is not None,
            "n_a": d_a.n_requests, "n_b": d_b.n_requests, "err_a": d_a.n_errors,
            "err_b": d_b.n_errors, "state": v.state.value, "hold": v.hold,
            "reasons": list(v.reasons) if v.state is not GuardState.PASS else []}


# ---- many rollouts ------------------------------------------------------------------------
def rollout_seed(seed: int, name: str, index: int) -> int:
    ss = np.random.SeedSequence([seed, list(SCENARIOS).index(name), index])
    return int(ss.generate_state(1)[0])


_P95: dict[str, float] = {}
_CTX: dict[int, JudgeContext] = {}


def _job(args: tuple[str, int, list[int]]) -> list[dict[str, Any]]:
    name, seed, indices = args
    scen = SCENARIOS[name]
    ctx = _CTX.setdefault(seed, judge_context(seed))
    key = scen.profile.describe()
    if key not in _P95:
        _P95[key] = true_p95(scen.profile)
    out = []
    for i in indices:
        c0 = time.process_time()
        r = simulate(scen, rollout_seed(seed, name, i), ctx, _P95[key])
        d = asdict(r)
        d["index"] = i
        d["cpu_s"] = round(time.process_time() - c0, 3)
        d.pop("trace")
        out.append(d)
    return out


def load_raw(raw_dir: str, name: str, seed: int) -> dict[int, dict[str, Any]]:
    """Rollouts already simulated (any run with this seed: a rollout's result depends on
    the seed, the scenario and its index only)."""
    rows: dict[int, dict[str, Any]] = {}
    for f in sorted(Path(raw_dir).glob(f"{name}.seed{seed}.{_raw_key()}.jsonl")):
        lines = f.read_text().splitlines()
        meta = [json.loads(x) for x in lines if x.startswith('{"elapsed_s"')]
        found = [json.loads(x) for x in lines if x and not x.startswith('{"elapsed_s"')]
        for r in found:  # files from before rows carried their CPU time: 2 workers
            if "cpu_s" not in r and meta:
                r["cpu_s"] = round(2 * meta[0]["elapsed_s"] / max(len(found), 1), 3)
            rows[int(r["index"])] = r
    return rows


def _raw_key() -> str:
    return hashlib.sha256((JUDGE_FINGERPRINT + SIM_FINGERPRINT).encode()).hexdigest()[:12]


def run_scenario(cfg: SimConfig, name: str,
                 pool_map: Callable[..., Iterable[list[dict[str, Any]]]]) -> dict[str, Any]:
    n = cfg.count(name)
    done = load_raw(cfg.raw_dir, name, cfg.seed) if cfg.raw_dir else {}
    todo = [i for i in range(n) if i not in done]
    chunk = max(1, min(cfg.chunk, len(todo) // (4 * max(cfg.workers, 1))))
    jobs = [(name, cfg.seed, todo[i:i + chunk]) for i in range(0, len(todo), chunk)]
    raw = Path(cfg.raw_dir) / f"{name}.seed{cfg.seed}.{_raw_key()}.jsonl" if cfg.raw_dir \
        else None
    if raw is not None:
        raw.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for part in pool_map(_job, jobs):
        for r in part:
            done[r["index"]] = r
        if raw is not None:  # as they come: an interrupted run loses little
            with raw.open("a") as f:
                f.writelines(json.dumps(r) + "\n" for r in part)
    elapsed = time.perf_counter() - t0
    rows = [done[i] for i in range(n)]
    scen = SCENARIOS[name]
    out = summarize_aa(rows) if scen.kind == "aa" else summarize_detection(rows)
    out["description"] = scen.description
    out["elapsed_s"] = round(elapsed, 1)
    cpu = [r.get("cpu_s") for r in rows]
    out["cpu_s_per_rollout"] = round(float(np.mean([c for c in cpu if c is not None])), 2) \
        if any(c is not None for c in cpu) else None
    return out


def cp_upper(k: int, n: int, level: float = 0.95) -> float:
    """Exact (Clopper-Pearson) one-sided upper confidence bound of a binomial rate."""
    if n <= 0:
        return 1.0
    return 1.0 if k >= n else float(beta.ppf(level, k + 1, n - k))


def summarize_aa(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    rb = [r for r in rows if r["end"] == "rolled_back"]
    k = len(rb)
    fired: Counter[str] = Counter()
    for r in rb:
        fired.update(set(r["fired"]) | ({"catastrophic"} if r["catastrophic"] else set()))
    held = [r for r in rows if r["held"]]
    promoted = [r for r in rows if r["end"] == "promoted"]
    durations = [r["t_end"] for r in promoted]
    near: Counter[str] = Counter()
    any_near = 0
    thr = math.log(1.0 / _alpha_per_test())
    for r in rows:
        close = [g for g, e in r["max_log_e"].items() if e >= thr - math.log(NEAR_MISS)]
        near.update(close)
        any_near += bool(close)
    out: dict[str, Any] = {
        "rollouts": n,
        "false_rollbacks": k,
        "false_rollback_rate": k / n if n else 0.0,
        "false_rollback_ub95": cp_upper(k, n),
        "fired_guards": dict(fired),
        "promoted": len(promoted),
        "paused_or_running": n - len(promoted) - k,
        "held": len(held),
        "held_and_promoted": sum(r["end"] == "promoted" for r in held),
        "held_s_median": _q([r["held_s"] for r in held], 0.5),
        "rollout_s_median": _q(durations, 0.5),
        "rollout_s_p95": _q(durations, 0.95),
        "near_miss_share": any_near / n if n else 0.0,
        "near_miss_guards": dict(near),
        "false_rollback_examples": [_example(r) for r in rb[:8]],
        "held_examples": [{"index": r["index"], "at": r["hold_at"], "held_s": round(r["held_s"], 2),
                           "end": r["end"], "reason": r["hold_reason"]} for r in held[:4]],
    }
    if rows and rows[0]["baselines"] is not None:
        for b in ("flagger", "kayenta"):
            kb = sum(r["baselines"][b] is not None for r in rows)
            out[b] = {"false_rollbacks": kb, "false_rollback_rate": kb / n,
                      "false_rollback_ub95": cp_upper(kb, n)}
    return out


def _example(r: dict[str, Any]) -> dict[str, Any]:
    return {"index": r["index"], "t": round(r["t_end"], 2), "step": r["step"],
            "challenger_requests": r["challenger_requests"], "reasons": r["reasons"],
            "params": r["params"]}


def summarize_detection(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    req = np.array([r["challenger_requests"] if r["end"] == "rolled_back" else math.inf
                    for r in rows])
    secs = np.array([r["t_end"] if r["end"] == "rolled_back" else math.inf for r in rows])
    fired: Counter[str] = Counter()
    for r in rows:
        if r["end"] == "rolled_back":
            fired.update(set(r["fired"]) | ({"catastrophic"} if r["catastrophic"] else set()))
    out: dict[str, Any] = {
        "rollouts": n,
        "caught_share": float(np.isfinite(req).mean()) if n else 0.0,
        "median_challenger_requests": _qi(req, 0.5),
        "p95_challenger_requests": _qi(req, 0.95),
        "median_seconds": _qi(secs, 0.5),
        "fired_guards": dict(fired),
        "promoted": sum(r["end"] == "promoted" for r in rows),
        "missed_examples": [_example(r) for r in rows if r["end"] != "rolled_back"][:5],
    }
    if rows and rows[0]["baselines"] is not None:
        for b in ("flagger", "kayenta"):
            d = np.array([r["baselines"][b] if r["baselines"][b] is not None else math.inf
                          for r in rows], dtype=np.float64)
            out[b] = {"median_challenger_requests": _qi(d, 0.5),
                      "p95_challenger_requests": _qi(d, 0.95),
                      "caught_share": float(np.isfinite(d).mean())}
    return out


def _q(xs: Sequence[float], q: float) -> float | None:
    return round(float(np.quantile(xs, q)), 1) if len(xs) else None


def _qi(x: np.ndarray, q: float) -> float | None:
    """Order statistic without interpolation; +inf (never caught) -> None."""
    if x.size == 0:
        return None
    v = float(np.quantile(x, q, method="inverted_cdf"))
    return round(v, 2) if math.isfinite(v) else None


def _alpha_per_test() -> float:
    return make_judge(None, judge_context()).alpha_per_test


# ---- the report -------------------------------------------------------------------------
def run(cfg: SimConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    if cfg.workers > 1:
        mp = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        with mp.Pool(cfg.workers) as pool:
            for name in cfg.names:
                results[name] = run_scenario(cfg, name, pool.imap_unordered)
    else:
        for name in cfg.names:
            results[name] = run_scenario(cfg, name, map)
    judge = make_judge(None, judge_context(cfg.seed))
    aa = {k: results[k] for k in SCENARIOS if k in results and SCENARIOS[k].kind == "aa"}
    det = {k: results[k] for k in SCENARIOS if k in results and SCENARIOS[k].kind == "detect"}
    report: dict[str, Any] = {
        "benchmark": "judge_sim",
        "config": asdict(cfg),
        "code": {"judge_fingerprint": JUDGE_FINGERPRINT, "sim_fingerprint": SIM_FINGERPRINT,
                 "judge_fingerprint_now": code_fingerprint(
                     ("guards", "gateway/control/rollout.py", "gateway/wire/routing.py"))},
        "rollout": {"policy": POLICY.to_params(), "flush_s": FLUSH_S, "urgent_flush_s": URGENT_S,
                    "challenger_timeout_s": 2.0, "arrival_rate": "uniform 100-200 req/s"},
        "traffic": {"base": BASE.describe(), "host_dominated": HOST_DOMINATED.describe(),
                    "true_p95_s": true_p95(BASE), "latency_slo_s": LATENCY_SLO_S,
                    "output_shift_0.6sd_true_psi": true_output_psi(0.6)},
        "judge": {"triggers": [t.to_dict() for t in judge.triggers], "n_tests": judge.n_tests,
                  "alpha_total": judge.context.alpha, "alpha_per_test": judge.alpha_per_test},
        "aa": aa,
        "detection": det,
        "targets": TARGETS,
    }
    report["meets_targets"] = check_targets(report)
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    return report


def check_targets(report: dict[str, Any]) -> dict[str, bool]:
    ok: dict[str, bool] = {}
    for name, r in report["aa"].items():
        ok[f"aa.{name}.false_rollback_ub95<=1%"] = \
            r["false_rollback_ub95"] <= TARGETS["aa_false_rollback_ub95"]
    det = report["detection"]

    def le(v: float | None, target: float) -> bool:
        return v is not None and v <= target

    if "total_failure" in det:
        ok["total_failure.median<=10"] = le(det["total_failure"]["median_challenger_requests"],
                                            TARGETS["total_failure_median"])
    if "error_rate_x5" in det:
        ok["error_rate_x5.p95<=1500"] = le(det["error_rate_x5"]["p95_challenger_requests"],
                                           TARGETS["error_rate_x5_p95"])
    if "latency_p95_plus_40pct" in det:
        ok["latency_p95_plus_40pct.median<=500"] = le(
            det["latency_p95_plus_40pct"]["median_challenger_requests"],
            TARGETS["latency_p95_plus_40pct_median"])
    if "service_time_tail" in det:
        ok["service_time_tail.caught>=95%"] = \
            det["service_time_tail"]["caught_share"] >= TARGETS["service_time_tail_caught_share"]
    return ok


def true_output_psi(shift: float, seed: int = 0) -> float:
    """PSI of the shifted output vs the champion's on the judge's binning, large samples."""
    rng = np.random.default_rng(seed)
    edges = np.asarray(DEFAULT_SPEC.output_edges)
    size = len(edges) + 1

    def hist(x: np.ndarray) -> list[int]:
        idx = np.searchsorted(edges, x, side="right")
        return [int(c) for c in np.bincount(idx, minlength=size)]

    return grouped_psi(hist(rng.normal(0, 1, 1_000_000)), hist(rng.normal(shift, 1, 1_000_000)),
                       10)


def quick_limit(n: int, rate: float = 0.01, level: float = 0.05) -> int:
    """The smallest L with P(more than L false rollbacks in n | true `rate`) <= `level`."""
    return next(k for k in range(n + 1) if binom.sf(k, n, rate) <= level)


def quick_power(n: int, limit: int, rates: Sequence[float] = (0.001, 0.01, 0.03, 0.05)
                ) -> dict[str, float]:
    """P(more than `limit` false rollbacks in `n` rollouts) at true rates `rates`."""
    return {f"{p:g}": float(binom.sf(limit, n, p)) for p in rates}


def markdown(report: dict[str, Any]) -> str:
    lines = ["| A/A variant | rollouts | false rollbacks | rate | 95% upper bound | guards fired "
             "| held (promoted) | median rollout |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for name, r in report["aa"].items():
        fired = ", ".join(f"{g} {c}" for g, c in sorted(r["fired_guards"].items())) or "-"
        dur = r["rollout_s_median"]
        lines.append(f"| {name} | {r['rollouts']} | {r['false_rollbacks']} | "
                     f"{r['false_rollback_rate']:.2%} | {r['false_rollback_ub95']:.2%} | {fired} | "
                     f"{r['held']} ({r['held_and_promoted']}) | "
                     f"{'-' if dur is None else f'{dur:.0f} s'} |")
    base = report["aa"].get("base", {})
    if "flagger" in base:
        for b in ("flagger", "kayenta"):
            x = base[b]
            lines.append(f"| base, {b} baseline | {base['rollouts']} | {x['false_rollbacks']} | "
                         f"{x['false_rollback_rate']:.2%} | {x['false_rollback_ub95']:.2%} | | | |")
    lines += ["", "| regression | runs | challenger requests to rollback: median | p95 "
              "| caught before promotion | guards fired | flagger median / caught | "
              "kayenta median / caught |", "|---|---:|---:|---:|---:|---|---:|---:|"]
    for name, r in report["detection"].items():
        fired = ", ".join(f"{g} {c}" for g, c in sorted(r["fired_guards"].items())) or "-"
        cells = []
        for b in ("flagger", "kayenta"):
            x = r.get(b)
            cells.append("-" if x is None else
                         f"{_num(x['median_challenger_requests'])} / {x['caught_share']:.0%}")
        lines.append(f"| {name} | {r['rollouts']} | {_num(r['median_challenger_requests'])} | "
                     f"{_num(r['p95_challenger_requests'])} | {r['caught_share']:.1%} | {fired} | "
                     f"{cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "never" if x is None else f"{x:.0f}"


def reproduce(name: str, index: int, seed: int = 0) -> RolloutResult:
    """One rollout again, with its per-look trace (for the verdict reasons)."""
    scen = SCENARIOS[name]
    return simulate(scen, rollout_seed(seed, name, index), judge_context(seed),
                    true_p95(scen.profile), trace=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.judge_sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"CI run: {QUICK_AA} rollouts per A/A variant, three detection checks")
    p.add_argument("--rollouts", type=int, help="rollouts per A/A variant (default 2000 for "
                   "base, 1000 for the others)")
    p.add_argument("--detect-rollouts", type=int, help="runs per detection scenario (300)")
    p.add_argument("--variant", nargs="+", choices=list(SCENARIOS), metavar="NAME",
                   help=f"only these (A/A: {', '.join(AA_NAMES)}; detection: "
                        f"{', '.join(DETECT_NAMES)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the JSON here (the full run writes "
                   "benchmarks/results/judge_sim.json)")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--raw", help="keep every rollout's result in this folder (one JSON-lines "
                   "file per scenario); a later run with the same folder reuses them")
    p.add_argument("--reproduce", nargs=2, metavar=("NAME", "INDEX"),
                   help="re-run one rollout and print its per-look trace")
    p.add_argument("--markdown-from", type=Path, metavar="JSON",
                   help="print the tables of an earlier run's JSON report and exit")
    a = p.parse_args(argv)
    if a.markdown_from:
        print(markdown(json.loads(a.markdown_from.read_text())))
        return 0
    if a.reproduce:
        r = reproduce(a.reproduce[0], int(a.reproduce[1]), a.seed)
        print(json.dumps(asdict(r), indent=1))
        return 0
    cfg = replace(QUICK if a.quick else SimConfig(), seed=a.seed, workers=a.workers,
                  raw_dir=a.raw)
    if a.rollouts is not None:
        names = [n for n in (a.variant or AA_NAMES) if SCENARIOS[n].kind == "aa"]
        cfg = replace(cfg, aa_rollouts={n: a.rollouts for n in names})
    if a.detect_rollouts is not None:
        cfg = replace(cfg, detect_rollouts={n: a.detect_rollouts for n in DETECT_NAMES})
    if a.variant:
        full = SimConfig()
        aa = [n for n in a.variant if SCENARIOS[n].kind == "aa"]
        det = [n for n in a.variant if SCENARIOS[n].kind == "detect"]
        cfg = replace(cfg, aa_rollouts={
            n: cfg.aa_rollouts.get(n) or full.aa_rollouts.get(n, 1000) for n in aa},
            detect_rollouts={n: cfg.detect_rollouts.get(n) or full.detect_rollouts[n]
                             for n in det})
    report = run(cfg)
    text = json.dumps(report, indent=2)
    print(markdown(report) if a.markdown else text)
    out = a.out or (Path("benchmarks/results/judge_sim.json")
                    if not (a.quick or a.variant or a.rollouts or a.detect_rollouts) else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
