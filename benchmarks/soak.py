"""Sustained load near capacity, with a challenger that goes bad in the middle.

    python -m benchmarks.soak [--minutes 10] [--json OUT]
    python -m benchmarks.soak --profile-supervisor [--requests 120000]

The gateway runs on a private local Ray instance (MLflow on SQLite). First a short ramp of
closed-loop keep-alive clients measures capacity (the best req/s over 4..32 connections);
then open-loop traffic holds `--load` (default 80%) of it for `--minutes`. A rollout starts
before the soak with a challenger at 20% that answers correctly for about half the soak and
then fails half its calls, so the default guards roll it back mid-soak. Recorded:

- total and lost requests (non-2xx or transport errors: must be 0);
- p50/p99 latency per 10-second bucket, in the second around the cut-over (the audit's
  rolled_back record) and in the minute before the challenger went bad;
- the RSS of every process of the Ray instance (supervisor, ingress and slot replicas, Serve
  controller and proxy, raylet, GCS, ...) every `--sample-s` seconds, and per process the
  growth from the first to the last minute (MiB) and a least-squares slope (MiB/min).

`--profile-supervisor` runs the supervisor's ingest path (window deltas and served request
ids, as ingress replicas flush them, through `Supervisor.ingest`, in-process with the unit
tests' fakes) under tracemalloc, and reports the top allocation sites as requests accumulate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import percentile, rounded
from gateway.demo.models import LinearModel

BUCKET_S = 10.0

# --- pure summaries -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    sent: float  # wall clock
    latency_s: float
    ok: bool


def window_summary(samples: Sequence[Sample]) -> dict[str, float]:
    lat = [s.latency_s * 1000.0 for s in samples]
    return {"n": float(len(samples)), "errors": float(sum(not s.ok for s in samples)),
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99)}


def buckets(samples: Sequence[Sample], start: float, width_s: float = BUCKET_S,
            ) -> list[dict[str, float]]:
    """Per `width_s` bucket from `start`: offset, requests, errors, p50 and p99 (ms)."""
    groups: dict[int, list[Sample]] = {}
    for s in samples:
        groups.setdefault(int((s.sent - start) // width_s), []).append(s)
    return [{"t_s": i * width_s, **window_summary(groups[i])} for i in sorted(groups)]


def between(samples: Sequence[Sample], lo: float, hi: float) -> list[Sample]:
    return [s for s in samples if lo <= s.sent < hi]


def slope_per_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute; NaN for fewer than 2."""
    if len(points) < 2:
        return math.nan
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return math.nan
    return 60.0 * sum((t - mx) * (v - my) for t, v in points) / var


def growth(series: Sequence[tuple[float, float]], minute_s: float = 60.0) -> dict[str, float]:
    """Mean RSS (MiB) over the first and over the last minute of (t, MiB) samples, their
    difference, the peak, and the slope (MiB/min)."""
    if not series:
        return {}
    t0, t1 = series[0][0], series[-1][0]
    first = [v for t, v in series if t - t0 < minute_s]
    last = [v for t, v in series if t1 - t < minute_s]
    a, b = sum(first) / len(first), sum(last) / len(last)
    return {"first_min_mib": a, "last_min_mib": b, "growth_mib": b - a,
            "peak_mib": max(v for _, v in series), "slope_mib_per_min": slope_per_min(series),
            "samples": float(len(series))}


class GoesBad(LinearModel):
    """A linear model that fails half its calls from wall-clock time `bad_at` on."""

    bad_at: float = math.inf

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        import random

        if time.time() >= self.bad_at and random.random() < 0.5:
            raise RuntimeError("injected model failure (gone bad mid-soak)")
        return super().predict(context, model_input, params)


def goes_bad(bad_at: float) -> GoesBad:
    from gateway.demo.models import demo_weights

    model = GoesBad([w * 1.01 for w in demo_weights()], 0.1)
    model.bad_at = bad_at
    return model


# --- processes of the private Ray instance -----------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def label_of(cmd: str) -> str | None:
    """A readable name for a Ray process from its command line; None for other processes."""
    if cmd.startswith("ray::"):
        # actors: ray::Supervisor[.method()], ray::ServeReplica:app:deployment, ray::ProxyActor
        # (the method being run follows a dot while the actor is busy)
        return cmd.split()[0].removeprefix("ray::").split(".")[0]
    first = cmd.split()[0] if cmd else ""
    base = os.path.basename(first)
    if base in ("raylet", "gcs_server"):
        return base
    for script in ("dashboard/agent.py", "log_monitor.py", "runtime_env/agent",
                   "monitor.py", "dashboard.py"):
        if script in cmd:
            return script.split("/")[-1].removesuffix(".py")
    if "default_worker.py" in cmd:
        return "idle_worker"
    return None


def ray_processes() -> dict[str, int]:
    """label#pid -> pid for the Ray processes that descend from this one."""
    from benchmarks.common import _ancestors

    me = os.getpid()
    out: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        label = label_of(_cmdline(pid))
        if label is not None and me in _ancestors(pid):
            out[f"{label}#{pid}"] = pid
    return out


class RssSampler:
    """RSS of every Ray process every `interval_s`, on a thread (new processes join)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.series: dict[str, list[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def _run(self) -> None:
        from benchmarks.common import rss_mib

        while not self._stop.is_set():
            now = time.time()
            for key, pid in ray_processes().items():
                with contextlib.suppress(OSError):
                    self.series.setdefault(key, []).append((now, rss_mib(pid)))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


# --- the soak ----------------------------------------------------------------------------


def measure_capacity(url: str, seconds: float = 6.0) -> dict[str, Any]:
    """Closed-loop keep-alive clients at rising concurrency; the best throughput."""
    from gateway.demo.traffic import Traffic, random_rows

    steps = []
    for conc in (4, 8, 16, 32):
        t = Traffic(url, concurrency=conc, max_s=seconds, payload=random_rows(seed=conc))
        start = time.monotonic()
        answers = asyncio.run(t.run())
        took = time.monotonic() - start
        ok = sum(1 for a in answers if a.status == 200)
        steps.append({"connections": conc, "rps": ok / took,
                      "errors": len(answers) - ok})
        log(f"capacity: {conc} connections -> {ok / took:.0f} req/s")
    best = max(steps, key=lambda s: s["rps"])
    return {"ramp": steps, "capacity_rps": best["rps"], "best_connections": best["connections"]}


def run(minutes: float, load: float, sample_s: float, weight: float,
        ingress_replicas: int) -> dict[str, Any]:
    from benchmarks.chaos import register_custom
    from benchmarks.common import (
        gateway_config,
        local_serve,
        machine_info,
        prepare_env,
        temp_registry,
        wait_for,
    )
    from benchmarks.rollback_time import deploy
    from gateway.app import teardown
    from gateway.control.audit import AuditLog
    from gateway.demo.traffic import Traffic, random_rows
    from model_registry.refs import CHALLENGER

    token = prepare_env()
    machine = machine_info()
    duration = minutes * 60.0
    with temp_registry() as registry, local_serve() as url:
        from benchmarks.common import register_linear

        champion = register_linear(registry, "champion")
        cfg = gateway_config(registry, "soak", weight=weight,
                             overrides={"ingress": {"num_replicas": ingress_replicas}})
        deploy(url, token, cfg, registry, champion)
        try:
            # healthy until `bad_at` (half-way through the soak), then fails half its calls;
            # capacity is measured with it in the canary, as the soak runs
            setup_s = 60.0
            bad_at = time.time() + setup_s + duration / 2
            bad = register_custom(registry, goes_bad(bad_at), "goes bad mid-soak")
            registry.set_alias(CHALLENGER, bad.version, actor="soak", reason="soak")
            wait_for(lambda: admin_status(url, token)["phase"] == "canary", 120, "the canary")
            cap = measure_capacity(url)
            rate = load * cap["capacity_rps"]
            samples: list[Sample] = []

            def keep(answer: Any, _resp: Any, latency_s: float) -> None:
                samples.append(Sample(answer.sent, latency_s, 200 <= answer.status < 300))

            start = time.time()
            if start > bad_at - duration / 4:
                log("set-up took longer than planned: the challenger goes bad early")
            log(f"soak: {rate:.0f} req/s for {minutes:g} min (challenger goes bad at "
                f"+{bad_at - start:.0f}s)")
            with RssSampler(sample_s) as rss, Traffic(url, rate=rate, max_s=duration,
                                                      payload=random_rows(seed=7),
                                                      on_answer=keep) as traffic:
                while traffic._thread is not None and traffic._thread.is_alive() \
                        and time.time() - start < duration + 30:
                    time.sleep(1.0)
            final = admin_status(url, token)
            records = AuditLog(cfg.supervisor.audit_path).read(final["rollout_id"])
        finally:
            teardown(cfg)
    machine["loadavg_1m_at_end"] = os.getloadavg()[0]
    return report(samples, start, records, rss, cap, rate, final, machine,
                  {"minutes": minutes, "load": load, "weight": weight, "sample_s": sample_s,
                   "ingress_replicas": ingress_replicas, "challenger_bad_at_s": bad_at - start})


def admin_status(url: str, token: str) -> dict[str, Any]:
    from benchmarks.common import admin_status as status

    return status(url, token)


def report(samples: list[Sample], start: float, records: list[Any], rss: RssSampler,
           cap: dict[str, Any], rate: float, final: dict[str, Any],
           machine: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    rolled = next((r for r in records if r.event == "rolled_back"), None)
    cut: dict[str, Any] = {"rolled_back": rolled is not None}
    if rolled is not None:
        t = rolled.time
        cut.update({"at_s": t - start, "reason": rolled.reason,
                    "cut_over_second": window_summary(between(samples, t - 0.5, t + 0.5)),
                    "minute_before_bad": window_summary(between(
                        samples, start + settings["challenger_bad_at_s"] - 60.0,
                        start + settings["challenger_bad_at_s"])),
                    "minute_after": window_summary(between(samples, t + 5.0, t + 65.0))})
    per_process = {k: growth(v) for k, v in sorted(rss.series.items())}
    lost = sum(not s.ok for s in samples)
    return {"benchmark": "soak", "machine": machine, "settings": settings, "capacity": cap,
            "rate_rps": rate, "requests": len(samples), "lost": lost,
            "achieved_rps": len(samples) / (settings["minutes"] * 60.0),
            "overall": window_summary(samples), "cut_over": cut,
            "final_phase": final["phase"], "audit_events": [r.event for r in records],
            "buckets": buckets(samples, start), "rss": per_process,
            "rss_series": {k: [(round(t - start, 1), round(v, 1)) for t, v in s]
                           for k, s in sorted(rss.series.items())},
            "goals": {"zero_lost": lost == 0, "rolled_back": rolled is not None}}


# --- the supervisor's ingest path under tracemalloc ----------------------------------------


def profile_supervisor(total: int, per_flush: int, replicas: int, top: int = 12,
                       ) -> dict[str, Any]:
    """Feed `Supervisor.ingest` (real code, fake registry/effects/sensors/clock) flushes of
    `per_flush` requests with their request ids from `replicas` ingress replicas, idle
    first (no rollout) then in a canary, and report tracemalloc's top allocation sites
    (by line) and the process RSS as requests accumulate."""
    import numpy as np

    from benchmarks.common import rss_mib
    from guards.window import ArmWindow, Observation, Outcome
    from model_registry.refs import CHALLENGER
    from tests.unit.gateway.control.supervisor_fakes import (
        FakeEffects,
        FakeRegistry,
        ManualClock,
        config,
        slot_report,
        supervisor,
    )

    rng = np.random.default_rng(0)

    def flush(versions: Sequence[str], n: int) -> tuple[dict[str, bytes], list[tuple[str, str]]]:
        windows = {v: ArmWindow() for v in versions}
        ids = []
        for i in range(n):
            v = versions[i % len(versions)]
            windows[v].record(Observation(float(rng.lognormal(-5, 0.3)), Outcome.OK,
                                          output_value=float(rng.normal())))
            ids.append((uuid.uuid4().hex, v))
        return {v: w.to_bytes() for v, w in windows.items()}, ids

    async def main() -> list[dict[str, Any]]:
        registry, effects, clock = FakeRegistry(), FakeEffects(), ManualClock()
        champion, challenger = registry.add("1"), registry.add("2")
        registry.set_alias("champion", "1")
        sup = supervisor(config([{"weight": 20.0, "min_requests": 10**9,
                                  "min_duration_s": 10**6}]), registry, effects, clock, champion)
        points: list[dict[str, Any]] = []
        tracemalloc.start(12)
        base = tracemalloc.take_snapshot()
        served = 0
        every = max(total // 6, 1)
        phase = "idle"
        while served < total:
            if phase == "idle" and served >= total // 2:
                registry.set_alias(CHALLENGER, "2")
                clock.advance(2.0)
                await sup.tick()
                await sup.report_slot("b", "r1", slot_report(challenger))
                phase = (await sup.status())["phase"]
            versions = ["1"] if phase == "idle" else ["1", "1", "1", "1", "2"]
            for r in range(replicas):
                deltas, ids = flush(versions, per_flush)
                await sup.ingest(f"replica-{r}", deltas, ids)
                served += per_flush
            clock.advance(0.25)
            if served // every != (served - per_flush * replicas) // every:
                cur, peak = tracemalloc.get_traced_memory()
                points.append({"requests": served, "phase": phase,
                               "traced_mib": cur / 2**20, "traced_peak_mib": peak / 2**20,
                               "rss_mib": rss_mib(os.getpid())})
                log(f"profile: {points[-1]}")
        snap = tracemalloc.take_snapshot()
        stats = snap.compare_to(base, "lineno")[:top]
        points.append({"top_sites": [
            {"site": str(s.traceback[0]), "size_mib": s.size / 2**20,
             "size_diff_mib": s.size_diff / 2**20, "count": s.count} for s in stats]})
        by_trace = snap.compare_to(base, "traceback")[:3]
        points.append({"top_tracebacks": [
            {"size_mib": s.size / 2**20, "trace": [str(f) for f in s.traceback][-8:]}
            for s in by_trace]})
        tracemalloc.stop()
        await sup.shutdown()
        return points

    return {"benchmark": "soak_profile_supervisor", "requests": total, "per_flush": per_flush,
            "replicas": replicas, "points": asyncio.run(main())}


def log(msg: str) -> None:
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--load", type=float, default=0.8, help="share of measured capacity")
    p.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling interval")
    p.add_argument("--weight", type=float, default=20.0, help="challenger weight (%%)")
    p.add_argument("--ingress-replicas", type=int, default=1)
    p.add_argument("--json", type=Path, default=None,
                   help="default benchmarks/results/soak.json (profile: soak_profile.json)")
    p.add_argument("--profile-supervisor", action="store_true")
    p.add_argument("--requests", type=int, default=120_000, help="with --profile-supervisor")
    p.add_argument("--per-flush", type=int, default=40, help="with --profile-supervisor")
    args = p.parse_args(argv)
    from benchmarks.common import RESULTS_DIR

    if args.profile_supervisor:
        rep = profile_supervisor(args.requests, args.per_flush, args.ingress_replicas)
        out = args.json or RESULTS_DIR / "soak_profile.json"
    else:
        rep = run(args.minutes, args.load, args.sample_s, args.weight, args.ingress_replicas)
        out = args.json or RESULTS_DIR / "soak.json"
        log(f"requests {rep['requests']}, lost {rep['lost']}, cut-over {rep['cut_over']}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rounded(rep), indent=2) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
