"""How the gateway's throughput scales with replicas on this machine, and what a request costs.

    python -m benchmarks.scaling [--quick] [--layouts 1x1 2x1 1x2 2x2] [--connections C]
                                 [--duration S] [--rounds K] [--client auto|wrk|httpx]
    python -m benchmarks.scaling --render [benchmarks/results/scaling.json]

On one private local Ray instance (RAY_SERVE_THROUGHPUT_OPTIMIZED=1): the plain model
deployment and the bare composition of `benchmarks.overhead` (one replica each, under /plain
and /bare), and the gateway (champion, and a challenger held at 10%) redeployed once per
layout `IxS` = I ingress replicas and S replicas per model slot. Per layout, `--rounds`
closed-loop runs of `--duration` s at `--connections` (wrk when installed), each followed by
one run of plain and of bare, so the baselines are measured all along the same drift.
Reports requests/s and latency per layout, and the CPU seconds per 1,000 requests of every
process that serves (Serve's proxy, every replica, the supervisor): on a CPU-bound machine
that cost, not the replica count, is what bounds throughput. Writes
benchmarks/results/scaling.json and the `scaling` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    admin_status,
    cpu_seconds,
    find_pids,
    gateway_config,
    load_client_name,
    local_serve,
    machine_info,
    machine_line,
    median_of,
    prepare_env,
    register_linear,
    rounded,
    run_load,
    temp_registry,
    wait_for,
    write_json,
    write_section,
)
from benchmarks.overhead import Deployed, deploy, undeploy

CHALLENGER_WEIGHT = 10.0
BASELINES = ("plain", "bare")


@dataclass(frozen=True)
class Settings:
    layouts: tuple[str, ...]
    connections: int
    duration_s: float
    rounds: int
    client: str
    quick: bool


def parse_args(argv: Sequence[str] | None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short smoke run (noisier numbers)")
    p.add_argument("--layouts", nargs="+", default=["1x1", "2x1", "1x2", "2x2"],
                   help="ingress replicas x replicas per slot")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, help="seconds per run")
    p.add_argument("--rounds", type=int, help="runs per layout")
    p.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    a = p.parse_args(argv)
    for layout in a.layouts:
        parse_layout(layout)
    return Settings(tuple(a.layouts), a.connections, a.duration or (3.0 if a.quick else 6.0),
                    a.rounds or (1 if a.quick else 4), a.client, a.quick)


def parse_layout(layout: str) -> tuple[int, int]:
    try:
        ingress, slots = (int(x) for x in layout.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--layouts: expected INGRESSxSLOTS such as 2x1, got {layout!r}") \
            from None
    if ingress < 1 or slots < 1:
        raise SystemExit(f"--layouts: replica counts must be >= 1, got {layout!r}")
    return ingress, slots


# --- processes -----------------------------------------------------------------------------


def serving_pids(app_name: str | None) -> dict[str, int]:
    """Serve's proxy, and every replica of `app_name` (and the gateway's supervisor)."""
    procs = {f"proxy{i}": pid for i, pid in enumerate(find_pids("ray::ProxyActor"))}
    if app_name is None:
        return procs
    if app_name.startswith("scale-gw"):
        procs.update({f"supervisor{i}": pid
                      for i, pid in enumerate(find_pids("ray::Supervisor"))})
    prefix = f"ray::ServeReplica:{app_name}:"
    for pid in find_pids(prefix):
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        procs[f"{cmd[len(prefix):].split()[0]}#{pid}"] = pid
    return procs


def measured(endpoint: str, pids: dict[str, int], s: Settings) -> dict[str, Any]:
    """One closed-loop run, with the CPU of every serving process per 1,000 answers."""
    before = {k: _cpu(pid) for k, pid in pids.items()}
    r = run_load(endpoint, s.connections, s.duration_s, client=s.client)
    used = sum(_cpu(pid) - before[k] for k, pid in pids.items())
    return {**r, "cpu_s_per_1k": used * 1000.0 / max(r["requests"], 1.0)}


def _cpu(pid: int) -> float:
    with contextlib.suppress(OSError):
        return cpu_seconds(pid)
    return 0.0


# --- the gateway at one layout ---------------------------------------------------------------


def deploy_gateway(url: str, registry: Any, refs: dict[str, Any], token: str,
                   layout: str) -> Deployed:
    from ray import serve

    from gateway.app import build_app
    from model_registry.refs import CHALLENGER, CHAMPION

    ingress, slots = parse_layout(layout)
    name = f"scale-gw-{layout}"
    cfg = gateway_config(registry, name, weight=CHALLENGER_WEIGHT, overrides={
        "ingress": {"num_cpus": 0.25, "num_replicas": ingress},
        "slots": {"num_cpus": 0.25, "num_replicas": slots}})
    registry.set_alias(CHAMPION, refs["champion"].version)
    with contextlib.suppress(Exception):
        registry.delete_alias(CHALLENGER)
    serve.run(build_app(cfg, registry.tracking_uri), name=name, route_prefix="/")
    registry.set_alias(CHALLENGER, refs["challenger"].version)
    wait_for(lambda: admin_status(url, token)["phase"] == "canary", 240,
             f"{layout}: the rollout to reach canary")
    return Deployed("gateway", name, "ingress", "/", cfg)


def run(s: Settings, command: str) -> dict[str, Any]:
    token = prepare_env()
    machine = machine_info()
    layouts: dict[str, list[dict[str, Any]]] = {}
    base: dict[str, list[dict[str, Any]]] = {m: [] for m in BASELINES}
    with temp_registry() as registry, local_serve() as url:
        refs = {"champion": register_linear(registry, "champion"),
                "challenger": register_linear(registry, "challenger", scale=1.01)}
        baselines = [deploy(m, url, registry, refs, token) for m in BASELINES]
        try:
            for layout in s.layouts:
                log(f"gateway {layout}: deploying")
                gw = deploy_gateway(url, registry, refs, token, layout)
                try:
                    pids = serving_pids(gw.app_name)
                    run_load(gw.endpoint(url), s.connections, 2.0, client=s.client)  # warm-up
                    layouts[layout] = []
                    for i in range(s.rounds):
                        layouts[layout].append(measured(gw.endpoint(url), pids, s))
                        for b in baselines:
                            base[b.mode].append(measured(b.endpoint(url),
                                                         serving_pids(b.app_name), s))
                        log(f"{layout} round {i + 1}/{s.rounds}: "
                            f"{layouts[layout][-1]['rps']:.0f} req/s (plain "
                            f"{base['plain'][-1]['rps']:.0f}, bare {base['bare'][-1]['rps']:.0f})")
                finally:
                    undeploy(gw)
        finally:
            for b in baselines:
                undeploy(b)
    machine["loadavg_1m_at_end"] = os.getloadavg()[0]
    return {"benchmark": "scaling", "command": command, "machine": machine,
            "client": load_client_name(s.client), "settings": asdict(s),
            "layouts": {k: summary(v) for k, v in layouts.items()},
            "baselines": {k: summary(v) for k, v in base.items()}}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rps": median_of(runs, "rps"), "p50_ms": median_of(runs, "p50_ms"),
            "p99_ms": median_of(runs, "p99_ms"),
            "cpu_s_per_1k": median_of(runs, "cpu_s_per_1k"),
            "errors": sum(int(r["errors"]) for r in runs), "runs": runs}


def markdown(r: dict[str, Any]) -> str:
    s, m = r["settings"], r["machine"]
    lines = [
        "## Scaling: throughput against replicas, and CPU per 1,000 requests (issue 16)", "",
        machine_line(m), "",
        f"Command: `{r['command']}`. The gateway (default triggers, a challenger held at "
        f"{CHALLENGER_WEIGHT:g}%) redeployed per layout (ingress replicas x replicas per "
        "slot, each at 0.25 CPU); the plain model deployment and the bare composition (one "
        f"replica each) measured after every gateway run. Closed loop ({r['client']}), "
        f"{s['connections']} connections, {s['rounds']} runs of {s['duration_s']:g} s per "
        "layout; medians. CPU: every serving process (proxy, replicas, supervisor), user + "
        "system, per 1,000 answered requests.", "",
        "| mode | ingress replicas | replicas per slot | req/s | p50 ms | p99 ms | "
        "CPU s / 1k req | errors |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, x in r["baselines"].items():
        lines.append(f"| {name} | {'1' if name == 'bare' else '-'} | 1 | {x['rps']:.0f} | "
                     f"{x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['cpu_s_per_1k']:.2f} | "
                     f"{x['errors']} |")
    for layout, x in r["layouts"].items():
        ingress, slots = parse_layout(layout)
        lines.append(f"| gateway | {ingress} | {slots} | {x['rps']:.0f} | {x['p50_ms']:.1f} | "
                     f"{x['p99_ms']:.1f} | {x['cpu_s_per_1k']:.2f} | {x['errors']} |")
    lines += ["", f"1-min load average {m['loadavg_1m_at_start']:.2f} at start, "
              f"{m.get('loadavg_1m_at_end', float('nan')):.2f} at end. On 2 cores shared with "
              "the load generator, more replicas add processes, not cores: the curve shows "
              "what the extra processes cost, and where a machine with cores to spare would "
              "scale."]
    return "\n".join(lines)


def log(msg: str) -> None:
    print(f"[scaling] {msg}", file=sys.stderr, flush=True)


def render(path: Path) -> int:
    write_section("scaling", markdown(json.loads(path.read_text())))
    log(f"rendered {path} into benchmarks/RESULTS.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--render"]:
        return render(Path(args[1]) if len(args) > 1 else RESULTS_DIR / "scaling.json")
    s = parse_args(argv)
    report = rounded(run(s, ("python -m benchmarks.scaling " + " ".join(args)).strip()), 4)
    out = write_json("scaling.json", report)
    write_section("scaling", markdown(report))
    print(json.dumps({k: {n: {f: v[f] for f in ("rps", "cpu_s_per_1k", "errors")}
                          for n, v in report[k].items()} for k in ("layouts", "baselines")},
                     indent=2))
    log(f"wrote {out} and benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
