"""GPU check for LLM serving (issue 6): TTFT and throughput per arm, with vLLM.

1. Weights: `--champion-weights` / `--challenger-weights` (or GATEWAY_LLM_WEIGHTS), else the
   smallest Hugging Face causal-LM checkpoint found on local disk (HF cache, /models, ...),
   else two tiny Llama checkpoints built here (gateway.demo.hf_tiny; no hub download ever).
2. Both are registered in a fresh SQLite MLflow registry (weights pointers, see
   gateway/serving/backends/vllm.py), the first as `champion`.
3. direct: each version is served by a `VllmBackend` in this process, one after the other,
   and driven with the same streamed chat requests (HaluEval questions with their context).
4. gateway: when the ingress serves /v1/chat/completions and `make_backend` knows "vllm",
   both versions are served by the gateway on a local Ray (two slots sharing the GPU),
   the challenger weight is set to 50% and the same requests go through HTTP; arms are told
   apart by `x-gateway-arm`. Otherwise this part reports `skipped` with the reason.

Prints one JSON object. Exit 0: pass (or skipped: no GPU). 1: a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_NAME = "gpu-llm-check"
SEARCH_ROOTS = ("~/.cache/huggingface/hub", "/root/.cache/huggingface/hub", "/models",
                "/opt/models", "/data/models", "/mnt/models", "/workspace/models")
MAX_FOUND_BYTES = 4 << 30  # a found checkpoint must be small: both arms share one GPU


def main() -> int:
    args = _parse_args()
    report: dict[str, Any] = {"check": "gpu_llm", "status": "fail"}
    try:
        report.update(_run(args))
    except Exception as exc:
        report["reason"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()[-4000:]
    print(json.dumps(report, indent=2), flush=True)
    return 0 if report["status"] in ("pass", "skipped") else 1


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workdir", default=os.environ.get("GPU_LLM_CHECK_WORKDIR",
                                                       "/tmp/gpu_llm_check"))
    p.add_argument("--champion-weights", default=os.environ.get("GATEWAY_LLM_WEIGHTS"))
    p.add_argument("--challenger-weights", default=None)
    p.add_argument("--requests", type=int, default=64, help="streamed requests per arm")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.35,
                   help="share of the GPU per engine (two engines share it in gateway mode)")
    p.add_argument("--max-model-len", type=int, default=1024)
    p.add_argument("--eager", action="store_true", help="skip CUDA graph capture")
    p.add_argument("--skip-gateway", action="store_true")
    p.add_argument("--gateway-timeout-s", type=float, default=900.0)
    return p.parse_args()


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.serving.backends.vllm import register_vllm_weights, runtime_problems
    from model_registry.refs import CHAMPION
    from model_registry.registry import ModelRegistry

    problems = runtime_problems()
    if problems:
        return {"status": "skipped" if any("GPU" in p for p in problems) else "fail",
                "reason": "; ".join(problems)}
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (champion_dir, challenger_dir), source = _weights(args, workdir)
    db = workdir / f"mlflow-{int(time.time())}.db"
    registry = ModelRegistry(MODEL_NAME, f"sqlite:///{db}")
    champion = register_vllm_weights(registry, champion_dir, f"champion: {champion_dir.name}")
    challenger = register_vllm_weights(registry, challenger_dir,
                                       f"challenger: {challenger_dir.name}")
    registry.set_alias(CHAMPION, champion.version, actor="gpu_llm_check", reason="check")
    prompts = _prompts(args.requests)
    out: dict[str, Any] = {
        "device": _device_name(), "weights_source": source,
        "champion": {"version": champion.version, "weights": str(champion_dir)},
        "challenger": {"version": challenger.version, "weights": str(challenger_dir)},
        "requests_per_arm": len(prompts), "concurrency": args.concurrency,
        "max_tokens": args.max_tokens}
    out["direct"] = {arm: _direct_arm(registry, ref, prompts, args)
                     for arm, ref in (("champion", champion), ("challenger", challenger))}
    ok = all(a["errors"] == 0 and a["output_tokens"] > 0 for a in out["direct"].values())
    if args.skip_gateway:
        out["gateway"] = {"status": "skipped", "reason": "--skip-gateway"}
    else:
        out["gateway"] = _gateway(registry, challenger.version, prompts, args)
        ok = ok and out["gateway"]["status"] in ("pass", "skipped")
    out["status"] = "pass" if ok else "fail"
    return out


# ---- weights ---------------------------------------------------------------------------

def _weights(args: argparse.Namespace, workdir: Path) -> tuple[tuple[Path, Path], str]:
    if args.champion_weights:
        champion = Path(args.champion_weights)
        return (champion, Path(args.challenger_weights or champion)), "given"
    found = _find_local_checkpoint()
    if found is not None:
        return (found, found), f"found on disk: {found}"
    from gateway.demo.hf_tiny import TinyLlamaSpec, build_tiny_llama
    from gateway.demo.textgen import load_corpus

    corpus = load_corpus()
    champion = build_tiny_llama(workdir / "tiny-llama-a", corpus, TinyLlamaSpec(seed=0))
    challenger = build_tiny_llama(workdir / "tiny-llama-b", corpus, TinyLlamaSpec(
        seed=1, hidden_size=384, num_layers=6, num_heads=6, intermediate_size=1536))
    return (champion, challenger), "built here: tiny random-weight Llama checkpoints"


def _find_local_checkpoint() -> Path | None:
    """The smallest local causal-LM checkpoint (config.json + safetensors), if any."""
    best: tuple[int, Path] | None = None
    for root in SEARCH_ROOTS:
        base = Path(root).expanduser()
        if not base.is_dir():
            continue
        for config in base.glob("**/config.json"):
            folder = config.parent
            try:
                arch = json.loads(config.read_text()).get("architectures") or []
            except (OSError, ValueError):
                continue
            weights = list(folder.glob("*.safetensors"))
            if not weights or not any(str(a).endswith("ForCausalLM") for a in arch):
                continue
            size = sum(w.stat().st_size for w in weights)
            if size <= MAX_FOUND_BYTES and (best is None or size < best[0]):
                best = (size, folder)
    return None if best is None else best[1]


def _prompts(n: int) -> list[dict[str, Any]]:
    data = ROOT / "tests" / "data" / "halueval_qa_slice.jsonl"
    items = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    return [{"messages": [{"role": "system", "content": items[i % len(items)]["knowledge"]},
                          {"role": "user", "content": items[i % len(items)]["question"]}],
             "seed": i} for i in range(n)]


def _device_name() -> str:
    import torch

    return str(torch.cuda.get_device_name(0))


# ---- measurements ----------------------------------------------------------------------

@dataclass
class ArmStats:
    ttft_s: list[float] = field(default_factory=list)
    tpot_s: list[float] = field(default_factory=list)
    output_tokens: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    busy: tuple[float, float] | None = None  # first start, last end

    def span(self, start: float, end: float) -> None:
        lo, hi = self.busy or (start, end)
        self.busy = (min(lo, start), max(hi, end))

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])

    def summary(self) -> dict[str, Any]:
        wall = (self.busy[1] - self.busy[0]) if self.busy else 0.0

        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            ordered = sorted(values)
            return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        return {"requests": len(self.ttft_s), "errors": self.errors,
                "error_samples": self.error_samples,
                "ttft_ms_p50": pct(self.ttft_s, 0.5), "ttft_ms_p95": pct(self.ttft_s, 0.95),
                "tpot_ms_p50": pct(self.tpot_s, 0.5),
                "tpot_ms_mean": round(1000 * statistics.fmean(self.tpot_s), 3)
                if self.tpot_s else None,
                "output_tokens": self.output_tokens, "wall_s": round(wall, 3),
                "output_tokens_per_s": round(self.output_tokens / wall, 1) if wall else None}


def _direct_arm(registry: Any, ref: Any, prompts: list[dict[str, Any]],
                args: argparse.Namespace) -> dict[str, Any]:
    from gateway.serving.backends.vllm import VllmBackend
    from model_registry.experiments import use_tracking_uri

    backend = VllmBackend(gpu_memory_utilization=args.gpu_memory_utilization,
                          max_model_len=args.max_model_len, enforce_eager=args.eager,
                          max_tokens_limit=args.max_tokens)
    started = time.perf_counter()
    with use_tracking_uri(registry.tracking_uri):
        backend.load(ref)
    try:
        backend.health_check()
        load_s = time.perf_counter() - started
        stats = asyncio.run(_drive_backend(backend, prompts, args))
    finally:
        backend.close()
    return {"version": ref.version, "load_s": round(load_s, 1), **stats.summary()}


async def _drive_backend(backend: Any, prompts: list[dict[str, Any]],
                         args: argparse.Namespace) -> ArmStats:
    from gateway.serving.llm.openai_parse import parse_chat
    from gateway.serving.llm.streaming import StreamTally

    stats = ArmStats()
    gate = asyncio.Semaphore(args.concurrency)

    async def one(body: dict[str, Any]) -> None:
        request = parse_chat({"model": MODEL_NAME, "max_tokens": args.max_tokens,
                              "temperature": 0.8, "stream": True, **body}, args.max_tokens)
        async with gate:
            tally = StreamTally(started=time.perf_counter())
            try:
                async for chunk in backend.stream(request):
                    tally.add(chunk, time.perf_counter())
            except Exception as exc:
                stats.fail(exc)
                return
            _record(stats, tally.started, tally.ttft_s, tally.tpot_s, tally.tokens)

    await asyncio.gather(*(one(p) for p in prompts))
    return stats


def _record(stats: ArmStats, started: float, ttft: float | None, tpot: float | None,
            tokens: int) -> None:
    stats.span(started, time.perf_counter())
    if ttft is not None:
        stats.ttft_s.append(ttft)
    if tpot is not None:
        stats.tpot_s.append(tpot)
    stats.output_tokens += tokens


# ---- through the gateway ---------------------------------------------------------------

def _gateway_support() -> str | None:
    """Why the gateway cannot serve LLMs yet (None when it can)."""
    from core.errors import ConfigError
    from gateway.serving.backends.factory import make_backend

    try:
        make_backend("vllm")
    except ConfigError as exc:
        return f"make_backend does not know vllm yet: {exc}"
    if "/v1/chat/completions" not in (ROOT / "gateway" / "ingress.py").read_text():
        return "the ingress has no /v1/chat/completions route yet"
    return None


def _gateway(registry: Any, challenger_version: str, prompts: list[dict[str, Any]],
             args: argparse.Namespace) -> dict[str, Any]:
    reason = _gateway_support()
    if reason is not None:
        return {"status": "skipped", "reason": reason}
    os.environ["GATEWAY_VLLM_GPU_MEMORY_UTILIZATION"] = str(args.gpu_memory_utilization)
    os.environ["GATEWAY_VLLM_MAX_MODEL_LEN"] = str(args.max_model_len)
    os.environ["GATEWAY_VLLM_ENFORCE_EAGER"] = "1" if args.eager else "0"
    os.environ.setdefault("GATEWAY_ADMIN_TOKEN", "gpu-llm-check-token-0123456789")
    try:
        return asyncio.run(_gateway_run(registry, challenger_version, prompts, args))
    except Exception as exc:
        return {"status": "fail", "reason": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-3000:]}


def _gateway_config(registry: Any, port: int) -> Any:
    from gateway.config import (
        GatewayConfig,
        HttpConfig,
        ModelConfig,
        SlotsConfig,
        TimeoutsConfig,
    )

    return GatewayConfig(
        model=ModelConfig(name=MODEL_NAME, tracking_uri=registry.tracking_uri,
                          backend=cast(Any, "vllm")),  # not in BackendName before wiring
        http=HttpConfig(port=port),
        slots=SlotsConfig(num_gpus=0.5, num_cpus=1.0, max_ongoing_requests=64,
                          health_check_timeout_s=900.0),
        timeouts=TimeoutsConfig(challenger_s=300.0, champion_s=300.0))


async def _gateway_run(registry: Any, challenger_version: str, prompts: list[dict[str, Any]],
                       args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    import ray

    from gateway.app import deploy, teardown
    from gateway.runtime import init_ray
    from model_registry.refs import CHALLENGER

    cfg = _gateway_config(registry, _free_port())
    base = f"http://{cfg.http.host}:{cfg.http.port}"
    headers = {"authorization": f"Bearer {os.environ['GATEWAY_ADMIN_TOKEN']}"}
    init_ray(cfg)
    try:
        deploy(cfg, registry.tracking_uri)
        registry.set_alias(CHALLENGER, challenger_version, actor="gpu_llm_check",
                           reason="check")
        async with httpx.AsyncClient(base_url=base, timeout=args.gateway_timeout_s) as client:
            await _wait_for_challenger(client, headers, args.gateway_timeout_s)
            await client.post("/admin/rollout/pause", headers=headers,
                              json={"reason": "gpu_llm_check: fixed 50/50 split"})
            resp = await client.post("/admin/weights", headers=headers,
                                     json={"challenger_weight": 50, "mode": "split"})
            resp.raise_for_status()
            arms = await _drive_gateway(client, prompts * 2, args)
        teardown(cfg)
    finally:
        ray.shutdown()
    ok = all(a.errors == 0 for a in arms.values()) and set(arms) == {"champion", "challenger"}
    return {"status": "pass" if ok else "fail",
            "arms": {arm: stats.summary() for arm, stats in sorted(arms.items())}}


async def _wait_for_challenger(client: Any, headers: dict[str, str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    view: Any = None
    while time.monotonic() < deadline:
        resp = await client.get("/admin/rollout", headers=headers)
        if resp.status_code == 200:
            view = resp.json()
            if view.get("challenger") and view.get("phase") not in (None, "idle", "loading"):
                return
        await asyncio.sleep(2.0)
    raise TimeoutError(f"the challenger did not become ready in {timeout_s:g}s: {view}")


async def _drive_gateway(client: Any, prompts: list[dict[str, Any]],
                         args: argparse.Namespace) -> dict[str, ArmStats]:
    arms: dict[str, ArmStats] = {}
    gate = asyncio.Semaphore(args.concurrency)

    async def one(body: dict[str, Any]) -> None:
        payload = {"model": MODEL_NAME, "max_tokens": args.max_tokens, "temperature": 0.8,
                   "stream": True, "stream_options": {"include_usage": True}, **body}
        async with gate:
            started = time.perf_counter()
            first: float | None = None
            last = started
            tokens = 0
            arm = "unknown"
            try:
                async with client.stream("POST", "/v1/chat/completions", json=payload) as resp:
                    arm = resp.headers.get("x-gateway-arm", "unknown")
                    resp.raise_for_status()
                    async for line in resp.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        event = json.loads(line[len("data: "):])
                        if event.get("usage"):
                            tokens = int(event["usage"]["completion_tokens"])
                        if any(c.get("delta", {}).get("content") for c in event["choices"]):
                            now = time.perf_counter()
                            first = first if first is not None else now
                            last = now
            except Exception as exc:
                arms.setdefault(arm, ArmStats()).fail(exc)
                return
        stats = arms.setdefault(arm, ArmStats())
        ttft = None if first is None else first - started
        tpot = (last - first) / (tokens - 1) if first is not None and tokens > 1 else None
        _record(stats, started, ttft, tpot, tokens)

    await asyncio.gather(*(one(p) for p in prompts))
    return arms


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
