"""What the gateway costs per request: the same tiny MLflow model served three ways.

    python -m benchmarks.overhead [--quick] [--requests N] [--concurrency C] [--repeats R]
                                  [--rounds K]
                                  [--duration S] [--memory-requests N] [--profile S]
                                  [--client auto|wrk|httpx] [--verbose]
    python -m benchmarks.overhead --render [benchmarks/results/overhead.json]

On one private local Ray instance (RAY_SERVE_THROUGHPUT_OPTIMIZED=1), three apps side by side
behind Serve's HTTP proxy, all answering POST .../v1/predict:

1. plain (/plain): the model deployment alone (a hand-written deployment:
   mlflow.pyfunc.load_model, predict, JSON) - the floor;
2. bare (/bare): a minimal ingress deployment calling that model deployment through a
   DeploymentHandle, no guards - what anyone would write by hand;
3. gateway (/): `gateway.app.build_app` with the default triggers (every guard) and a
   challenger held at 10% (the rollout is in phase canary while measured).

Latency: a sequential client sends one request to each mode in turn (paired samples), after
warm-up, `--repeats` runs. Throughput: closed loop, `--concurrency` connections (wrk when
installed, else httpx), `--rounds` short rounds over the three modes in rotated order (many
short rounds: the machine's drift falls on every mode alike); with the
CPU per request of each serving process. Medians reported. For the gateway also the RSS of
its ingress replica (and supervisor) every fifth of `--memory-requests` requests, the
gateway's own per-request code timed in process (`benchmarks/hotpath.py`), and optionally a
py-spy profile of the ingress replica under load. Prints JSON, writes
benchmarks/results/overhead.json and a section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from benchmarks.baselines import BareIngress, PlainModel
from benchmarks.common import (
    REPO_ROOT,
    RESULTS_DIR,
    admin_status,
    cpu_seconds,
    find_pids,
    gateway_config,
    interleaved_latencies,
    latency_summary_ms,
    load_client_name,
    local_serve,
    machine_info,
    machine_line,
    median,
    median_of,
    prepare_env,
    ratio,
    register_linear,
    rounded,
    rss_mib,
    run_count,
    run_load,
    temp_registry,
    wait_for,
    write_json,
    write_section,
)
from benchmarks.hotpath import hot_path

if TYPE_CHECKING:  # ray is imported only after prepare_env() set its environment
    from ray.serve.deployment import Deployment

MODES = ("plain", "bare", "gateway")
CHALLENGER_WEIGHT = 10.0
# The same resources for every mode: the gateway's defaults (ingress 256, slots 64).
INGRESS_OPTS: dict[str, Any] = {"max_ongoing_requests": 256,
                                "ray_actor_options": {"num_cpus": 0.25}}
MODEL_OPTS: dict[str, Any] = {"max_ongoing_requests": 64,
                              "ray_actor_options": {"num_cpus": 0.25}}


@dataclass(frozen=True)
class Settings:
    requests: int  # sequential requests per latency repeat
    warmup: int
    concurrency: int
    duration_s: float  # per throughput run
    repeats: int  # sequential-latency runs
    rounds: int  # throughput rounds (each mode once per round)
    memory_requests: int
    profile_s: float  # 0: no profile
    client: str
    verbose: bool
    quick: bool


def parse_args(argv: Sequence[str] | None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short smoke run (noisier numbers)")
    p.add_argument("--requests", type=int, help="sequential requests per latency repeat")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    p.add_argument("--duration", type=float, help="seconds per throughput repeat")
    p.add_argument("--repeats", type=int, help="sequential-latency runs (median kept)")
    p.add_argument("--rounds", type=int, help="throughput rounds, each mode once a round "
                   "(median kept)")
    p.add_argument("--memory-requests", type=int, help="requests between the RSS readings")
    p.add_argument("--profile", type=float, help="seconds of py-spy on the gateway ingress "
                   "under load (0: none)")
    p.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    p.add_argument("--verbose", action="store_true", help="show the replicas' logs")
    a = p.parse_args(argv)
    q = a.quick
    return Settings(
        requests=a.requests or (300 if q else 2000), warmup=50 if q else 200,
        concurrency=a.concurrency, duration_s=a.duration or (4.0 if q else 5.0),
        repeats=a.repeats or 3, rounds=a.rounds or (3 if q else 9),
        memory_requests=a.memory_requests if a.memory_requests is not None
        else (5_000 if q else 100_000),
        profile_s=a.profile if a.profile is not None else (5.0 if q else 15.0),
        client=a.client, verbose=a.verbose, quick=q)


# --- deploying each mode ----------------------------------------------------------------


@dataclass(frozen=True)
class Deployed:
    mode: str
    app_name: str
    ingress: str  # the deployment that receives HTTP (its replica is profiled / measured)
    route_prefix: str
    cfg: Any = None  # the gateway's config (gateway mode only)

    def endpoint(self, url: str) -> str:
        return f"{url}{self.route_prefix.rstrip('/')}/v1/predict"


def deploy(mode: str, url: str, registry: Any, refs: dict[str, Any],
           token: str) -> Deployed:
    from ray import serve

    # All three apps run side by side (the baselines under their own prefix; they answer
    # any path), so rounds can alternate between them.
    name, prefix = f"bench-{mode}", f"/{mode}"
    model_uri = refs["champion"].uri
    if mode == "plain":
        dep = _deployment(PlainModel).options(name="model", **MODEL_OPTS)
        serve.run(dep.bind(registry.tracking_uri, model_uri), name=name, route_prefix=prefix)
        return Deployed(mode, name, "model", prefix)
    if mode == "bare":
        model = _deployment(PlainModel).options(name="model", **MODEL_OPTS)
        ingress = _deployment(BareIngress).options(name="ingress", **INGRESS_OPTS)
        serve.run(ingress.bind(model.bind(registry.tracking_uri, model_uri)), name=name,
                  route_prefix=prefix)
        return Deployed(mode, name, "ingress", prefix)
    return deploy_gateway(url, registry, refs, token)


def deploy_gateway(url: str, registry: Any, refs: dict[str, Any], token: str) -> Deployed:
    from ray import serve

    from gateway.app import build_app
    from model_registry.refs import CHALLENGER, CHAMPION

    cfg = gateway_config(registry, "bench-gateway", weight=CHALLENGER_WEIGHT)
    registry.set_alias(CHAMPION, refs["champion"].version)
    with contextlib.suppress(Exception):
        registry.delete_alias(CHALLENGER)
    serve.run(build_app(cfg, registry.tracking_uri), name=cfg.app_name, route_prefix="/")
    registry.set_alias(CHALLENGER, refs["challenger"].version)
    wait_for(lambda: admin_status(url, token)["phase"] == "canary", 180,
             "the gateway's rollout to reach canary")
    return Deployed("gateway", cfg.app_name, "ingress", "/", cfg)


def _deployment(cls: type) -> Any:
    from ray import serve

    return cast("Deployment", serve.deployment(cls))


def undeploy(d: Deployed) -> None:
    from ray import serve

    if d.cfg is not None:
        from gateway.app import teardown

        teardown(d.cfg)
    else:
        serve.delete(d.app_name)


# --- measurements --------------------------------------------------------------------------


def processes(d: Deployed) -> dict[str, int]:
    """The processes serving a request in this mode: Serve's proxy, each replica, and the
    gateway's supervisor."""
    procs: dict[str, int] = {}
    titles = [("proxy", "ray::ProxyActor")]
    if d.mode == "gateway":
        titles.append(("supervisor", "ray::Supervisor"))
    for name, title in titles:
        for i, pid in enumerate(find_pids(title)):
            procs[name + (str(i) if i else "")] = pid
    prefix = f"ray::ServeReplica:{d.app_name}:"
    for pid in find_pids(prefix):
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        procs[cmd[len(prefix):].split(".")[0].split()[0]] = pid
    return procs


def cpu_per_request(procs: dict[str, int], load: Callable[[], dict[str, float]]
                    ) -> dict[str, float]:
    """Run `load` and add each process's CPU microseconds per answered request to its
    result (`cpu_us.<process>` and `cpu_us.total`)."""
    before = {name: cpu_seconds(pid) for name, pid in procs.items()}
    result = dict(load())
    n = max(result["requests"], 1)
    total = 0.0
    for name, pid in procs.items():
        used = (cpu_seconds(pid) - before[name]) * 1e6 / n
        result[f"cpu_us.{name}"] = used
        total += used
    result["cpu_us.total"] = total
    return result


def throughput_once(endpoint: str, s: Settings, procs: dict[str, int]) -> dict[str, Any]:
    """Closed-loop throughput of one mode, with the CPU per request of each serving
    process."""
    return cpu_per_request(procs, lambda: run_load(endpoint, s.concurrency, s.duration_s,
                                                   client=s.client))


def summarize_mode(latency_runs: list[dict[str, float]], latency_errors: int,
                   load_runs: list[dict[str, float]], procs: dict[str, int]) -> dict[str, Any]:
    """Medians over the repeats of one mode."""
    cpu = {k: median_of(load_runs, k) for k in load_runs[0] if k.startswith("cpu_us.")}
    errors = latency_errors + sum(int(r["errors"]) for r in load_runs)
    return {
        "p50_ms": median_of(latency_runs, "p50_ms"), "p99_ms": median_of(latency_runs, "p99_ms"),
        "rps": median_of(load_runs, "rps"),
        "loaded_p50_ms": median_of(load_runs, "p50_ms"),
        "loaded_p99_ms": median_of(load_runs, "p99_ms"),
        "errors": errors, "cpu_us_per_request": {k[7:]: v for k, v in cpu.items()},
        "processes": procs, "latency_runs": latency_runs, "throughput_runs": load_runs,
    }


def measure_interleaved(endpoints: dict[str, str], s: Settings,
                        procs: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Latency: `repeats` runs of sequential requests going to each mode in turn (paired
    samples). Throughput: `rounds` rounds measuring every mode once, in an order rotated
    each round. Either way a change in the machine's background load falls on every mode
    alike."""
    for mode in MODES:  # warm-up: connections, code paths, the gateway's first windows
        run_load(endpoints[mode], s.concurrency, min(3.0, s.duration_s), client=s.client)
    latency: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    latency_errors = dict.fromkeys(MODES, 0)
    for _ in range(s.repeats):
        runs = interleaved_latencies({m: endpoints[m] for m in MODES}, s.requests, s.warmup)
        for mode, (lat, errs) in runs.items():
            latency[mode].append(latency_summary_ms(lat))
            latency_errors[mode] += errs
    loads: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for i in range(s.rounds):
        for mode in MODES[i % len(MODES):] + MODES[:i % len(MODES)]:
            loads[mode].append(throughput_once(endpoints[mode], s, procs[mode]))
            log(f"round {i + 1}/{s.rounds} {mode}: {loads[mode][-1]['rps']:.0f} req/s")
    return {mode: summarize_mode(latency[mode], latency_errors[mode], loads[mode], procs[mode])
            for mode in MODES}


def replica_pid(app: str, deployment: str) -> int:
    pids = find_pids(f"ray::ServeReplica:{app}:{deployment}")
    if len(pids) != 1:
        raise RuntimeError(f"expected one replica process of {app}/{deployment}, found {pids}")
    return pids[0]


MEMORY_STEPS = 5


def memory(endpoint: str, d: Deployed, s: Settings) -> dict[str, Any]:
    """RSS of the ingress replica (and the supervisor) before, during (every fifth of the
    requests) and after `memory_requests` requests. Growth in the second half tells a leak
    from a one-off warm-up (allocator arenas, caches)."""
    ingress = replica_pid(d.app_name, d.ingress)
    sups = find_pids("ray::Supervisor")

    def sup_rss() -> float:
        return rss_mib(sups[0]) if sups else float("nan")

    samples = [(0, rss_mib(ingress), sup_rss())]
    start = time.monotonic()
    total = errors = 0
    step = max(s.memory_requests // MEMORY_STEPS, 1)
    # Cap the time at 20 ms a request: on a slow machine fewer requests, reported as such.
    deadline = start + max(60.0, s.memory_requests / 50.0)
    while total < s.memory_requests and time.monotonic() < deadline:
        load = run_count(endpoint, s.concurrency, step, max_s=deadline - time.monotonic(),
                         client=s.client)
        total += int(load["requests"])
        errors += int(load["errors"])
        time.sleep(0.5)  # let the last window flush
        samples.append((total, rss_mib(ingress), sup_rss()))
    seconds = time.monotonic() - start
    half = next((x for x in samples if x[0] >= total / 2), samples[-1])
    return {"requests": total, "errors": errors, "seconds": seconds, "rps": total / seconds,
            "ingress_pid": ingress, "samples": [list(x) for x in samples],
            "ingress_rss_before_mib": samples[0][1], "ingress_rss_after_mib": samples[-1][1],
            "ingress_rss_growth_mib": samples[-1][1] - samples[0][1],
            "ingress_rss_growth_second_half_mib": samples[-1][1] - half[1],
            "supervisor_rss_before_mib": samples[0][2],
            "supervisor_rss_after_mib": samples[-1][2]}


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def profile(endpoint: str, d: Deployed, s: Settings) -> dict[str, Any]:
    """py-spy (raw collapsed stacks) of the ingress replica while under closed-loop load."""
    exe = py_spy()
    if exe is None:
        return {"skipped": "py-spy not found"}
    pid = replica_pid(d.app_name, d.ingress)
    out = Path(tempfile.mkdtemp(prefix="bench-pyspy-")) / f"{d.mode}-ingress.txt"
    proc = subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(int(s.profile_s)), "--rate", "200",
         "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        load = run_load(endpoint, s.concurrency, s.profile_s + 1.0, client=s.client)
        _, err = proc.communicate(timeout=s.profile_s + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not out.exists():
        return {"skipped": f"py-spy failed: {err.strip()[-500:]}"}
    summary = summarize_profile(out.read_text())
    summary.update({"file": str(out), "pid": pid, "rps_while_profiled": load["rps"]})
    return summary


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _frame(raw: str) -> tuple[str, str]:
    m = _FRAME.match(raw.strip())
    if m is None:
        return raw.strip(), ""
    path = m["file"]
    for prefix in ("site-packages/", str(REPO_ROOT) + "/", "lib/python3.11/"):
        if prefix in path:
            path = path.split(prefix, 1)[1]
    for package in ("gateway/", "guards/"):  # this project's code, wherever it is checked out
        if f"/{package}" in path:
            path = package + path.rsplit(f"/{package}", 1)[1]
    return m["func"], path


def _area(path: str) -> str:
    for prefix, area in (("gateway/", "gateway"), ("guards/", "guards"),
                         ("ray/serve/", "ray.serve"), ("ray/", "ray (core)"),
                         ("starlette/", "starlette"), ("uvicorn/", "uvicorn"),
                         ("asyncio/", "asyncio"), ("json/", "json"), ("numpy/", "numpy")):
        if path.startswith(prefix):
            return area
    return "other" if path else "native/unknown"


# Leaf frames where a thread waits in native code (py-spy cannot tell that from work): the
# core worker's main loop, thread-pool workers and condition waits. Not counted as busy.
IDLE_LEAVES = ("Worker.main_loop", "Thread.run", "_worker", "Condition.wait", "Event.wait",
               "EpollSelector.select", "select", "poll")


def summarize_profile(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Self time, inclusive time (per function) and self time per area, as % of busy
    samples (idle leaves dropped), from py-spy's raw (collapsed-stack) output."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = idle = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        func, path = frames[-1]
        if func in IDLE_LEAVES:
            idle += n
            continue
        total += n
        self_t[f"{func} ({path})"] += n
        areas[_area(path)] += n
        for name in {f"{fn} ({fp})" for fn, fp in frames}:
            incl[name] += n
    if not total:
        return {"samples": 0}

    def pct(c: Counter[str], k: int) -> list[list[Any]]:
        return [[name, round(100.0 * n / total, 1)] for name, n in c.most_common(k)]

    gateway_incl = Counter({k: v for k, v in incl.items()
                            if "(gateway/" in k or "(guards/" in k})
    return {"samples": total, "idle_samples_dropped": idle, "self_pct": pct(self_t, top),
            "inclusive_pct": pct(incl, top),
            "gateway_inclusive_pct": pct(gateway_incl, top), "self_by_area_pct": pct(areas, 12)}


# --- report ------------------------------------------------------------------------------


def compare(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    plain, bare, gw = results["plain"], results["bare"], results["gateway"]
    rounds = [ratio(g["rps"], b["rps"])
              for g, b in zip(gw["throughput_runs"], bare["throughput_runs"], strict=True)]
    return {
        "throughput_gateway_over_plain": ratio(gw["rps"], plain["rps"]),
        "throughput_gateway_over_bare": ratio(gw["rps"], bare["rps"]),
        "throughput_bare_over_plain": ratio(bare["rps"], plain["rps"]),
        # On a CPU-bound machine capacity is inverse to CPU per request: a steadier
        # estimate of the throughput ratio than the rates themselves.
        "cpu_per_request_bare_over_gateway": ratio(bare["cpu_us_per_request"]["total"],
                                                   gw["cpu_us_per_request"]["total"]),
        # Per-round ratios: each round measures the modes back to back.
        "throughput_gateway_over_bare_paired": median(rounds),
        "throughput_gateway_over_bare_paired_min": min(rounds),
        "throughput_gateway_over_bare_paired_max": max(rounds),
        "p50_gateway_over_plain": ratio(gw["p50_ms"], plain["p50_ms"]),
        "p50_gateway_over_bare": ratio(gw["p50_ms"], bare["p50_ms"]),
        "p99_gateway_over_plain": ratio(gw["p99_ms"], plain["p99_ms"]),
        "p99_gateway_over_bare": ratio(gw["p99_ms"], bare["p99_ms"]),
        "added_p50_ms_over_bare": gw["p50_ms"] - bare["p50_ms"],
        "added_p50_ms_over_plain": gw["p50_ms"] - plain["p50_ms"],
    }


def goals(c: dict[str, float], mem: dict[str, Any] | None) -> dict[str, bool | None]:
    growth = mem.get("ingress_rss_growth_mib") if mem else None
    return {"throughput_gateway_over_bare>=0.95": c["throughput_gateway_over_bare"] >= 0.95,
            "throughput_gateway_over_plain>=0.85": c["throughput_gateway_over_plain"] >= 0.85,
            "added_p50_over_bare<=0.5ms": c["added_p50_ms_over_bare"] <= 0.5,
            # "Flat": under 5 MiB of growth (allocator noise is a few MiB).
            "ingress_rss_flat(<5MiB)": None if growth is None else growth < 5.0}


def markdown(report: dict[str, Any]) -> str:
    r, c, s = report["results"], report["comparison"], report["settings"]
    lines = [
        "## Overhead: gateway vs bare composition vs plain Ray Serve", "",
        machine_line(report["machine"]), "",
        f"Command: `{report['command']}`. The three apps run side by side. Sequential "
        f"latency: {s['repeats']} x {s['requests']} requests to each mode in turn (paired) "
        f"after {s['warmup']} warm-up; throughput: {s.get('rounds', s['repeats'])} rounds of "
        f"{s['duration_s']:g} s closed loop per mode, order rotated each round, "
        f"{s['concurrency']} connections ({report['client']}); medians. All "
        "through Serve's HTTP proxy, RAY_SERVE_THROUGHPUT_OPTIMIZED=1, replicas at 0.25 CPU. "
        "Client and server share the machine's cores.", "",
        "| mode | p50 ms | p99 ms | throughput req/s | p50 ms under load | p99 ms under load "
        "| errors |", "|---|---:|---:|---:|---:|---:|---:|"]
    for mode in MODES:
        m = r[mode]
        lines.append(f"| {mode} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['rps']:.0f} | "
                     f"{m['loaded_p50_ms']:.2f} | {m['loaded_p99_ms']:.2f} | {m['errors']} |")
    lines += ["", "| ratio (3 = gateway) | value | goal |", "|---|---:|---|",
              f"| throughput 3/2 (gateway / bare) | {c['throughput_gateway_over_bare']:.3f} "
              "| >= 0.95 |",
              f"| throughput 3/1 (gateway / plain) | {c['throughput_gateway_over_plain']:.3f} "
              "| >= 0.85 |",
              "| throughput 3/2, median of the per-round ratios (range) | "
              f"{c['throughput_gateway_over_bare_paired']:.3f} "
              f"({c['throughput_gateway_over_bare_paired_min']:.2f}-"
              f"{c['throughput_gateway_over_bare_paired_max']:.2f}) | |",
              "| CPU per request, bare / gateway (capacity ratio) | "
              f"{c['cpu_per_request_bare_over_gateway']:.3f} | |",
              f"| p50 3/2 | {c['p50_gateway_over_bare']:.3f} | |",
              f"| p50 3/1 | {c['p50_gateway_over_plain']:.3f} | |",
              f"| p99 3/2 | {c['p99_gateway_over_bare']:.3f} | |",
              f"| p99 3/1 | {c['p99_gateway_over_plain']:.3f} | |",
              f"| added p50 over bare (ms) | {c['added_p50_ms_over_bare']:.2f} | <= 0.5 |"]
    lines += ["", "CPU per request during the throughput runs (us, user+system, median of "
              "repeats; includes each process's background threads):"]
    for mode in MODES:
        cpu = r[mode]["cpu_us_per_request"]
        lines.append(f"- {mode}: " + ", ".join(f"{k} {_num(v, 0)}" for k, v in cpu.items()))
    m = report["machine"]
    lines += ["", f"1-min load average {_num(m['loadavg_1m_at_start'], 2)} at start, "
              f"{_num(m.get('loadavg_1m_at_end'), 2)} at end (2 cores: above ~1 the numbers "
              "include other processes' contention)."]
    mem = report.get("memory")
    if mem:
        steps = ", ".join(f"{n // 1000}k: {rss:.1f}" for n, rss, _ in mem["samples"])
        lines += ["", f"Gateway ingress RSS (MiB) by requests served: {steps}; "
                  f"{mem['ingress_rss_growth_mib']:+.1f} MiB over {mem['requests']} requests, "
                  f"{mem['ingress_rss_growth_second_half_mib']:+.1f} MiB over the second half; "
                  f"supervisor {_num(mem['supervisor_rss_before_mib'])} -> "
                  f"{_num(mem['supervisor_rss_after_mib'])} MiB."
                  + (" (fewer requests than the 100k of the goal.)"
                     if mem["requests"] < 100_000 else "")]
    hot = report.get("hot_path")
    if hot:
        lines += ["", "The gateway's own per-request code, timed in process (us per call, "
                  "`benchmarks/hotpath.py`): ingress "
                  + ", ".join(f"{k} {v:.1f}" for k, v in hot["ingress_gateway_us"].items())
                  + "; bare ingress " + ", ".join(
                      f"{k} {v:.1f}" for k, v in hot["ingress_bare_us"].items())
                  + f"; slot predict (input checks, summaries, model) "
                  f"{hot['slot_predict_us']:.1f} vs the plain model's predict "
                  f"{hot['plain_model_predict_us']:.1f}. In all, "
                  f"{hot['extra_us_per_request']:.0f} us a request more than the bare "
                  f"composition; a window flush (50 requests' records, delta, serialisation) "
                  f"{hot['flush_us']:.0f} us, 4 a second."]
    prof = report.get("profile") or {}
    if prof.get("samples"):
        lines += ["", f"py-spy, gateway ingress replica under load ({prof['samples']} samples,"
                  " % of non-idle samples). Self time by area: "
                  + ", ".join(f"{a} {p}%" for a, p in prof["self_by_area_pct"]) + ".",
                  "", "Gateway code, inclusive: "
                  + ", ".join(f"`{n}` {p}%" for n, p in prof["gateway_inclusive_pct"][:8])
                  + "."]
    lines += bounds_text(report)
    lines += ["", "Goals: " + ", ".join(f"{k}: {'met' if v else 'MISSED' if v is False else 'n/a'}"
                                        for k, v in report["goals"].items()) + "."]
    if s["quick"]:
        lines += ["", "_--quick run: short and noisy; re-run without --quick for the record._"]
    return "\n".join(lines)


def bounds_text(report: dict[str, Any]) -> list[str]:
    """What bounds the throughput ratios, from this run's own figures."""
    r, c, hot = report["results"], report["comparison"], report.get("hot_path") or {}
    cpu = {mode: r[mode]["cpu_us_per_request"] for mode in MODES}
    gw, bare, plain = cpu["gateway"], cpu["bare"], cpu["plain"]
    extra = gw["total"] - bare["total"]
    added = {"challenger slot (slot_b)": gw.get("slot_b", 0.0),
             "supervisor": gw.get("supervisor", 0.0)}
    own = hot.get("extra_us_per_request")
    return ["", "What bounds the ratios (this run's figures): the machine is CPU-bound under "
            "closed-loop load, so throughput follows CPU per request. Gateway / plain cannot "
            "exceed bare / plain "
            f"({c['throughput_bare_over_plain']:.3f}): both add the ingress hop through a "
            f"DeploymentHandle (+{bare['total'] - plain['total']:.0f} us of CPU a request, "
            "bare vs plain). Gateway / bare: the gateway spends "
            f"{extra:.0f} us of CPU a request more than the bare composition; its two extra "
            "processes account for "
            + ", ".join(f"{k} {v:.0f}" for k, v in added.items())
            + " us (mostly Ray's per-process and per-call costs: the challenger serves "
            "a tenth of the requests, the supervisor merges and judges a few deltas a "
            "second)"
            + (f", while the gateway's own per-request code is {own:.0f} us (hot path above)"
               if own is not None else "")
            + "; the rest is spread over the proxy, ingress and champion slot."]


def _num(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


# --- main --------------------------------------------------------------------------------


def run(s: Settings, command: str) -> dict[str, Any]:
    token = prepare_env()
    mem: dict[str, Any] | None = None
    prof: dict[str, Any] | None = None
    machine = machine_info()
    with temp_registry() as registry, local_serve(verbose=s.verbose) as url:
        refs = {"champion": register_linear(registry, "champion"),
                "challenger": register_linear(registry, "challenger", scale=1.01)}
        deployed: list[Deployed] = []
        try:
            for mode in MODES:
                log(f"{mode}: deploying")
                deployed.append(deploy(mode, url, registry, refs, token))
            by_mode = {d.mode: d for d in deployed}
            results = measure_interleaved({d.mode: d.endpoint(url) for d in deployed}, s,
                                          {d.mode: processes(d) for d in deployed})
            gw = by_mode["gateway"]
            results["gateway"]["phase_after"] = admin_status(url, token)["phase"]
            if s.memory_requests:
                log(f"gateway: memory over {s.memory_requests} requests")
                mem = memory(gw.endpoint(url), gw, s)
            if s.profile_s:
                log("gateway: profiling the ingress replica")
                prof = profile(gw.endpoint(url), gw, s)
            log("hot path: the gateway's own per-request code, in process")
            hot = hot_path(registry, refs["champion"])
        finally:
            for d in reversed(deployed):
                undeploy(d)
    comparison = compare(results)
    machine["loadavg_1m_at_end"] = os.getloadavg()[0]
    return {"benchmark": "overhead", "command": command, "machine": machine,
            "client": load_client_name(s.client), "settings": asdict(s), "results": results,
            "comparison": comparison, "memory": mem, "profile": prof, "hot_path": hot,
            "goals": goals(comparison, mem)}


def log(msg: str) -> None:
    print(f"[overhead] {msg}", file=sys.stderr, flush=True)


def render(path: Path) -> int:
    """Rewrite the RESULTS.md section from a saved JSON report (no measuring)."""
    report = json.loads(path.read_text())
    report["comparison"] = compare(report["results"])
    report["goals"] = goals(report["comparison"], report.get("memory"))
    write_section("overhead", markdown(rounded(report, 3)))
    log(f"rendered {path} into benchmarks/RESULTS.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--render"]:
        return render(Path(args[1]) if len(args) > 1 else RESULTS_DIR / "overhead.json")
    s = parse_args(argv)
    command = "python -m benchmarks.overhead " + " ".join(
        sys.argv[1:] if argv is None else argv)
    report = run(s, command.strip())
    out = write_json("overhead.json", report)
    write_section("overhead", markdown(rounded(report, 3)))
    print(json.dumps(rounded({k: v for k, v in report.items() if k != "profile"}
                             | {"profile_top": _profile_top(report.get("profile"))}), indent=2))
    log(f"wrote {out} and benchmarks/RESULTS.md")
    return 0


def _profile_top(prof: dict[str, Any] | None) -> Any:
    if not prof or not prof.get("samples"):
        return prof
    return {k: prof[k] for k in ("samples", "self_by_area_pct", "gateway_inclusive_pct")}


if __name__ == "__main__":
    raise SystemExit(main())
