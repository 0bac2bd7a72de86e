"""What dynamic batching in the model slots buys: one torch MLP behind the gateway, with and
without `slots.batching`, at 1, 16 and 64 concurrent single-row clients.

    python -m benchmarks.batching [--quick] [--hidden 2048] [--depth 2] [--in-features 256]
                                  [--concurrency 1 16 64] [--duration S] [--rounds K]
                                  [--max-batch 64] [--wait-ms 2] [--device-ms MS]
                                  [--client auto|wrk|httpx]
    python -m benchmarks.batching --render [benchmarks/results/batching.json]

On one private local Ray instance (RAY_SERVE_THROUGHPUT_OPTIMIZED=1), two gateway apps side
by side serve the same MLflow-registered torch MLP (`mlflow.pytorch`, a tensor signature)
as their champion (no challenger, so every request reaches the slot measured): `unbatched`
(under /unbatched) and `batched` (under /batched, `slots.batching: {max_batch_size,
batch_wait_timeout_s}`). Closed-loop load (wrk when installed), each client sending one row a
request, in `--rounds` rounds over both modes and every concurrency, order alternated;
medians. Also the model alone in process (rows per second at batch 1 and at the largest
concurrency), which bounds what batching can give, and the CPU of every serving process per
1,000 requests. Writes benchmarks/results/batching.json and a section of RESULTS.md.

With `--device-ms`, the MLP runs behind a GPU stand-in (`benchmarks.device_bound`): each call
also holds a simulated device that long, one call at a time, CPU idle; written to
batching_device.json and its own section. On a machine without a GPU that is the regime
batching is for: the model call, not the serving path, is what limits throughput.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    admin_status,
    load_client_name,
    local_serve,
    machine_info,
    machine_line,
    median,
    median_of,
    prepare_env,
    ratio,
    rounded,
    run_load,
    temp_registry,
    wait_for,
    write_json,
    write_section,
)
from benchmarks.overhead import Deployed, cpu_per_request, processes, undeploy

MODES = ("unbatched", "batched")
GOAL_RATIO = 3.0  # batched / unbatched throughput at the largest concurrency


@dataclass(frozen=True)
class Settings:
    in_features: int
    hidden: int
    depth: int  # hidden layers
    concurrency: tuple[int, ...]
    duration_s: float
    rounds: int
    max_batch: int
    wait_ms: float
    device_ms: float  # > 0: the MLP behind a simulated device (benchmarks.device_bound)
    client: str
    quick: bool

    @property
    def section(self) -> str:
        return "batching_device" if self.device_ms > 0 else "batching"


def parse_args(argv: Sequence[str] | None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m benchmarks.batching", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short smoke run (noisier numbers)")
    p.add_argument("--in-features", type=int, default=256)
    p.add_argument("--hidden", type=int, default=2048, help="width of the hidden layers")
    p.add_argument("--depth", type=int, default=2, help="hidden layers")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--duration", type=float, help="seconds per load run")
    p.add_argument("--rounds", type=int, help="rounds over every mode and concurrency")
    p.add_argument("--max-batch", type=int, default=64, help="slots.batching.max_batch_size")
    p.add_argument("--wait-ms", type=float, default=2.0,
                   help="slots.batching.batch_wait_timeout_s, in ms")
    p.add_argument("--device-ms", type=float, default=0.0,
                   help="a GPU stand-in: each model call also holds a simulated device this "
                   "long, one call at a time (0: the MLP on the CPU alone)")
    p.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    a = p.parse_args(argv)
    return Settings(a.in_features, a.hidden, a.depth, tuple(a.concurrency),
                    a.duration or (3.0 if a.quick else 6.0), a.rounds or (1 if a.quick else 5),
                    a.max_batch, a.wait_ms, a.device_ms, a.client, a.quick)


# --- the model ------------------------------------------------------------------------------


def make_mlp(s: Settings) -> Any:
    import torch

    torch.manual_seed(0)
    dims = [s.in_features, *[s.hidden] * s.depth, 16]
    layers: list[Any] = []
    for a, b in itertools.pairwise(dims):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net: Any = torch.nn.Sequential(*layers[:-1]).eval()
    if s.device_ms > 0:
        from benchmarks.device_bound import DeviceBound

        net = DeviceBound(net, s.device_ms).eval()
    return net


def register_mlp(registry: Any, s: Settings) -> Any:
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from model_registry.experiments import ensure_experiment
    from model_registry.testing import use_tracking_uri

    net = make_mlp(s)
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype("float32"),
                                                         (-1, s.in_features))]),
                               outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 16))]))
    exp = ensure_experiment(registry.tracking_uri, registry.model_name)
    with use_tracking_uri(registry.tracking_uri), mlflow.start_run(experiment_id=exp) as run:
        mlflow.pytorch.log_model(net, name="model", serialization_format="pickle",
                                 signature=signature,
                                 pip_requirements=[f"torch=={torch.__version__}"])
    return registry.register(f"runs:/{run.info.run_id}/model"), parameters(net)


def parameters(net: Any) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def model_alone(s: Settings, repeats: int = 30) -> dict[str, float]:
    """Rows per second of the model in this process, one row a call and a full batch a call
    (torch's default threads): the most batching can give when the model is the limit."""
    import torch

    net = make_mlp(s)
    out: dict[str, float] = {}
    for rows in (1, max(s.concurrency)):
        x = torch.randn(rows, s.in_features)
        times = []
        with torch.inference_mode():
            for _ in range(5):
                net(x)
            for _ in range(repeats):
                start = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - start)
        out[f"rows_per_s_at_{rows}"] = rows / median(times)
        out[f"ms_per_call_at_{rows}"] = median(times) * 1000
    return out


# --- the apps ---------------------------------------------------------------------------------


def deploy(mode: str, url: str, registry: Any, champion: Any, token: str,
           s: Settings) -> Deployed:
    from ray import serve

    from benchmarks.common import gateway_config
    from gateway.app import build_app
    from model_registry.refs import CHAMPION

    overrides: dict[str, Any] = {"app_name": f"bench-{mode}"}
    if mode == "batched":
        overrides["slots"] = {"num_cpus": 0.25, "batching": {
            "max_batch_size": s.max_batch, "batch_wait_timeout_s": s.wait_ms / 1000.0}}
    cfg = gateway_config(registry, f"bench-{mode}", weight=10.0, overrides=overrides)
    registry.set_alias(CHAMPION, champion.version)
    prefix = f"/{mode}"
    serve.run(build_app(cfg, registry.tracking_uri), name=cfg.app_name, route_prefix=prefix)
    d = Deployed(mode, cfg.app_name, "ingress", prefix, cfg)
    wait_for(lambda: _answers(d.endpoint(url), s), 240, f"{mode}: the first answer")
    return d


def _answers(endpoint: str, s: Settings) -> bool:
    import httpx

    resp = httpx.post(endpoint, json=body(s), timeout=30.0)
    return resp.status_code == 200


def body(s: Settings) -> dict[str, Any]:
    return {"inputs": [[((i % 11) - 5) / 5.0 for i in range(s.in_features)]]}


# --- measuring ---------------------------------------------------------------------------------


def measure(endpoints: dict[str, str], procs: dict[str, dict[str, int]],
            s: Settings) -> dict[str, dict[int, list[dict[str, float]]]]:
    runs: dict[str, dict[int, list[dict[str, float]]]] = {
        m: {c: [] for c in s.concurrency} for m in MODES}
    for mode in MODES:  # warm-up: connections, the gateway's first windows, torch's kernels
        run_load(endpoints[mode], max(s.concurrency), 2.0, client=s.client, body=body(s))
    for i in range(s.rounds):
        order = MODES if i % 2 == 0 else MODES[::-1]
        for c in s.concurrency:
            for mode in order:
                r = cpu_per_request(procs[mode], partial(
                    run_load, endpoints[mode], c, s.duration_s, client=s.client, body=body(s)))
                runs[mode][c].append(r)
                log(f"round {i + 1}/{s.rounds} c={c} {mode}: {r['rps']:.0f} req/s, "
                    f"p50 {r['p50_ms']:.1f} ms")
    return runs


def summarize(runs: dict[str, dict[int, list[dict[str, float]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, by_c in runs.items():
        out[mode] = {}
        for c, rs in by_c.items():
            cpu = {k[7:]: median_of(rs, k) for k in rs[0] if k.startswith("cpu_us.")}
            out[mode][str(c)] = {
                "rps": median_of(rs, "rps"), "p50_ms": median_of(rs, "p50_ms"),
                "p99_ms": median_of(rs, "p99_ms"), "errors": sum(int(r["errors"]) for r in rs),
                "cpu_s_per_1k": {k: v / 1000.0 for k, v in cpu.items()}, "runs": rs}
    return out


def batch_sizes(app_name: str) -> dict[str, int]:
    """Requests by the size of the batch they ran in, from the batched slot's replicas."""
    import asyncio

    from ray import serve

    async def ask() -> list[dict[str, Any]]:
        handle = serve.get_deployment_handle("slot_a", app_name)
        return list(await handle.broadcast("describe").results_async(timeout_s=10.0))

    total: dict[str, int] = {}
    for view in asyncio.run(ask()):
        for k, n in view.get("batch_sizes", {}).items():
            total[k] = total.get(k, 0) + int(n)
    return dict(sorted(total.items(), key=lambda kv: int(kv[0])))


def compare(results: dict[str, Any], concurrency: Sequence[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in concurrency:
        u, b = results["unbatched"][str(c)], results["batched"][str(c)]
        out[str(c)] = {"throughput_ratio": ratio(b["rps"], u["rps"]),
                       "p50_ratio": ratio(b["p50_ms"], u["p50_ms"]),
                       "cpu_ratio": ratio(b["cpu_s_per_1k"].get("total", 0.0),
                                          u["cpu_s_per_1k"].get("total", 0.0))}
    return out


def goals(comparison: dict[str, Any], concurrency: Sequence[int]) -> dict[str, bool]:
    top = comparison[str(max(concurrency))]
    return {f"throughput_batched_over_unbatched>={GOAL_RATIO:g}_at_{max(concurrency)}":
            top["throughput_ratio"] >= GOAL_RATIO,
            f"p50_no_worse_at_{max(concurrency)}": top["p50_ratio"] <= 1.0}


def run(s: Settings, command: str) -> dict[str, Any]:
    token = prepare_env()
    machine = machine_info()
    log("the model alone, in process")
    alone = model_alone(s)
    with temp_registry() as registry, local_serve() as url:
        champion, n_params = register_mlp(registry, s)
        deployed: list[Deployed] = []
        try:
            for mode in MODES:
                log(f"{mode}: deploying")
                deployed.append(deploy(mode, url, registry, champion, token, s))
            runs = measure({d.mode: d.endpoint(url) for d in deployed},
                           {d.mode: processes(d) for d in deployed}, s)
            sizes = batch_sizes("bench-batched")
            phase = admin_status(f"{url}/batched", token).get("phase")
        finally:
            for d in reversed(deployed):
                undeploy(d)
    results = summarize(runs)
    comparison = compare(results, s.concurrency)
    machine["loadavg_1m_at_end"] = os.getloadavg()[0]
    return {"benchmark": "batching", "command": command, "machine": machine,
            "client": load_client_name(s.client), "settings": asdict(s),
            "model": {"parameters": n_params, "dims": [s.in_features, *[s.hidden] * s.depth, 16],
                      "alone": alone},
            "results": results, "comparison": comparison, "batch_sizes": sizes,
            "phase": phase, "goals": goals(comparison, s.concurrency)}


# --- report --------------------------------------------------------------------------------


def markdown(r: dict[str, Any]) -> str:
    s, m, model = r["settings"], r["machine"], r["model"]
    conc = s["concurrency"]
    lines = [
        "## Dynamic batching in the model slots (issue 16)"
        + (f": the MLP behind a simulated device ({s['device_ms']:g} ms a call)"
           if s.get("device_ms") else ": the MLP on the CPU"), "",
        machine_line(m), "",
        f"Command: `{r['command']}`. A torch MLP ({model['parameters'] / 1e6:.1f}M parameters, "
        f"layers {' -> '.join(str(d) for d in model['dims'])}, `mlflow.pytorch`) as the "
        "champion of two gateway apps side by side: `unbatched`, and `batched` with "
        f"`slots.batching: {{max_batch_size: {s['max_batch']}, batch_wait_timeout_s: "
        f"{s['wait_ms'] / 1000:g}}}`. One row a request; closed loop ({r['client']}), "
        f"{s['rounds']} rounds of {s['duration_s']:g} s per mode and concurrency, order "
        "alternated; medians. Slot and ingress replicas at 0.25 CPU; client and server "
        "share the machine's cores.", "",
        "| clients | mode | req/s | p50 ms | p99 ms | CPU s / 1k req | errors |",
        "|---:|---|---:|---:|---:|---:|---:|"]
    for c in conc:
        for mode in MODES:
            x = r["results"][mode][str(c)]
            lines.append(f"| {c} | {mode} | {x['rps']:.0f} | {x['p50_ms']:.1f} | "
                         f"{x['p99_ms']:.1f} | {x['cpu_s_per_1k'].get('total', 0):.2f} | "
                         f"{x['errors']} |")
    lines += ["", "| clients | throughput batched / unbatched | p50 batched / unbatched | "
              "CPU per request batched / unbatched |", "|---:|---:|---:|---:|"]
    for c in conc:
        x = r["comparison"][str(c)]
        lines.append(f"| {c} | {x['throughput_ratio']:.2f} | {x['p50_ratio']:.2f} | "
                     f"{x['cpu_ratio']:.2f} |")
    alone = model["alone"]
    top = max(conc)
    lines += ["", f"The model alone in process: {alone['rows_per_s_at_1']:.0f} rows/s one row "
              f"a call ({alone['ms_per_call_at_1']:.2f} ms), {alone[f'rows_per_s_at_{top}']:.0f} "
              f"rows/s at {top} rows a call ({alone[f'ms_per_call_at_{top}']:.2f} ms): "
              f"batching makes the model "
              f"{alone[f'rows_per_s_at_{top}'] / alone['rows_per_s_at_1']:.1f}x faster per row."
              , "",
              "Requests by the size of the batch they ran in (batched slot, whole run): "
              + ", ".join(f"{k}: {n}" for k, n in r["batch_sizes"].items()) + ".", "",
              f"1-min load average {m['loadavg_1m_at_start']:.2f} at start, "
              f"{m.get('loadavg_1m_at_end', float('nan')):.2f} at end.", "",
              "Goals: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}"
                                    for k, v in r["goals"].items()) + "."]
    return "\n".join(lines)


def section_of(report: dict[str, Any]) -> str:
    return "batching_device" if report["settings"].get("device_ms", 0) > 0 else "batching"


def log(msg: str) -> None:
    print(f"[batching] {msg}", file=sys.stderr, flush=True)


def render(path: Path) -> int:
    report = json.loads(path.read_text())
    write_section(section_of(report), markdown(report))
    log(f"rendered {path} into benchmarks/RESULTS.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--render"]:
        return render(Path(args[1]) if len(args) > 1 else RESULTS_DIR / "batching.json")
    s = parse_args(argv)
    command = ("python -m benchmarks.batching " + " ".join(args)).strip()
    report = rounded(run(s, command), 4)
    out = write_json(f"{s.section}.json", report)
    write_section(s.section, markdown(report))
    print(json.dumps({k: report[k] for k in ("model", "comparison", "batch_sizes", "goals")},
                     indent=2))
    log(f"wrote {out} and benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
