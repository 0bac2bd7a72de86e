"""`gateway demo`: the whole story on one machine, from an empty directory.

Trains two small torch models, registers them in MLflow (embedded SQLite under ./.gateway/)
as champion and challenger, serves them through the gateway on a local Ray instance, drives
live traffic and shows what each arm served.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from typing import Any

from gateway.config import GatewayConfig, HttpConfig, RoutingConfig
from gateway.demo.models import make_data, tensor_signature, train_mlp
from gateway.demo.traffic import TrafficStats, drive
from model_registry.refs import CHALLENGER, CHAMPION, ModelRef
from model_registry.registry import ModelRegistry

MODEL_NAME = "champion-gateway-demo"


def register_torch_model(registry: ModelRegistry, model: Any, description: str) -> ModelRef:
    """Log a torch model with a dynamic-batch signature and register it as a new version."""
    import mlflow
    import mlflow.pytorch

    _use_experiment(registry)
    with mlflow.start_run(run_name=description) as run:
        mlflow.log_param("description", description)
        # pt2 (torch.export) format: the signature's -1 batch dimension stays dynamic only if
        # the example has more than one row.
        mlflow.pytorch.log_model(model, name="model", signature=tensor_signature(),
                                 input_example=make_data(4)[0], serialization_format="pt2")
    return registry.register(f"runs:/{run.info.run_id}/model",
                             tags={"description": description})


def register_pyfunc_model(registry: ModelRegistry, model: Any, description: str) -> ModelRef:
    """Log a pyfunc model with the demo's (-1, 8) float32 signature; register a new version."""
    import mlflow
    import mlflow.pyfunc

    _use_experiment(registry)
    with mlflow.start_run(run_name=description) as run:
        mlflow.log_param("description", description)
        mlflow.pyfunc.log_model(name="model", python_model=model, signature=tensor_signature())
    return registry.register(f"runs:/{run.info.run_id}/model",
                             tags={"description": description})


def _use_experiment(registry: ModelRegistry) -> None:
    """Log into an experiment whose artifacts live next to the registry's store."""
    import mlflow

    from model_registry.testing import ensure_experiment

    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_experiment(experiment_id=ensure_experiment(registry.tracking_uri,
                                                          registry.model_name))


def _step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def run_demo(duration_s: float = 20.0, rate: float = 40.0, port: int = 8000) -> int:
    from gateway.app import deploy, teardown
    from gateway.runtime import init_ray, print_urls

    os.environ.setdefault("GATEWAY_ADMIN_TOKEN", secrets.token_urlsafe(24))
    started = time.monotonic()
    registry = ModelRegistry(MODEL_NAME)
    _step(f"MLflow registry at {registry.tracking_uri}")
    champion = register_torch_model(registry, train_mlp(epochs=40, seed=0), "champion MLP")
    challenger = register_torch_model(registry, train_mlp(epochs=60, seed=1), "challenger MLP")
    registry.set_alias(CHAMPION, champion.version, actor="demo", reason="initial champion")
    registry.set_alias(CHALLENGER, challenger.version, actor="demo", reason="new candidate")
    _step(f"registered champion v{champion.version} and challenger v{challenger.version}")
    cfg = GatewayConfig(http=HttpConfig(port=port),
                        routing=RoutingConfig(challenger_weight=20.0))
    _step("starting a local Ray instance and the gateway")
    init_ray()
    try:
        deploy(cfg, registry.tracking_uri)
        print_urls(cfg)
        _step(f"driving {rate:g} req/s for {duration_s:g}s (20% to the challenger)")
        url = f"http://{cfg.http.host}:{cfg.http.port}/v1/predict"
        stats = asyncio.run(drive(url, duration_s, rate, TrafficStats()))
        _summary(stats, champion, challenger)
        teardown(cfg)
    finally:
        import ray

        ray.shutdown()
    _step(f"done in {time.monotonic() - started:.0f}s")
    return 0 if stats.sent and stats.errors == 0 else 1


def _summary(stats: TrafficStats, champion: ModelRef, challenger: ModelRef) -> None:
    print()
    print(f"  {'arm':<12}{'model version':>14}{'requests':>10}{'share':>8}")
    for arm, ref in (("champion", champion), ("challenger", challenger)):
        n = stats.arms[arm]
        share = n / stats.sent if stats.sent else 0.0
        print(f"  {arm:<12}{ref.version:>14}{n:>10}{share:>8.1%}")
    print(f"  non-2xx answers: {stats.errors}   p50 latency: {stats.p50_ms():.1f} ms")
