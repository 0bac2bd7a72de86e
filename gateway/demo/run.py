"""`gateway demo`: the whole story on one machine, from an empty directory.

Trains two small torch models, registers them in MLflow (embedded SQLite under ./.gateway/)
as champion and challenger, serves them through the gateway on a local Ray instance, drives
live traffic and shows what each arm served.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import (
    ControlConfig,
    GatewayConfig,
    HttpConfig,
    RolloutPolicy,
    Step,
    SupervisorConfig,
)
from gateway.demo.live import TrafficStats, drive
from gateway.demo.models import (
    Faults,
    LinearModel,
    demo_weights,
    make_data,
    tensor_signature,
    train_mlp,
)
from model_registry.errors import redact_uri
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

    from gateway.control.rollout_run import quiet_run_links
    from model_registry.experiments import ensure_experiment

    quiet_run_links(registry.tracking_uri)  # run links would print its credentials
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_experiment(experiment_id=ensure_experiment(registry.tracking_uri,
                                                          registry.model_name))


def _step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


DEMO_POLICY = RolloutPolicy(steps=(Step(25.0, 100, 3.0), Step(50.0, 100, 3.0),
                                   Step(75.0, 100, 3.0)), rollback_window_s=30.0)


def demo_config(port: int) -> GatewayConfig:
    """Fast steps and frequent looks, so the whole story fits in a couple of minutes."""
    return GatewayConfig(
        http=HttpConfig(port=port), rollout=DEMO_POLICY,
        control=ControlConfig(flush_interval_s=0.1, long_poll_timeout_s=10.0),
        supervisor=SupervisorConfig(tick_s=0.1, registry_poll_s=0.3,
                                    audit_path=str(Path(".gateway/audit.jsonl").resolve())))


def run_demo(duration_s: float = 60.0, rate: float = 50.0, port: int = 8000) -> int:
    from gateway.app import deploy, teardown
    from gateway.runtime import init_ray, print_urls

    token = os.environ.setdefault("GATEWAY_ADMIN_TOKEN", secrets.token_urlsafe(24))
    started = time.monotonic()
    registry = ModelRegistry(MODEL_NAME)
    _step(f"MLflow registry at {redact_uri(registry.tracking_uri)}")
    champion = register_torch_model(registry, train_mlp(epochs=40, seed=0), "champion MLP")
    faulty = register_pyfunc_model(
        registry, LinearModel(demo_weights(), 0.0, Faults(error_rate=0.25)),
        "faulty challenger: raises on 25% of requests")
    good = register_torch_model(registry, train_mlp(epochs=60, seed=1), "challenger MLP")
    registry.set_alias(CHAMPION, champion.version, actor="demo", reason="initial champion")
    registry.delete_alias(CHALLENGER, actor="demo", reason="demo starts clean")
    _step(f"registered champion v{champion.version}, a faulty challenger v{faulty.version} "
          f"and a good challenger v{good.version}")
    cfg = demo_config(port)
    init_ray(cfg)
    ok = False
    try:
        deploy(cfg, registry.tracking_uri)
        print_urls(cfg)
        base = f"http://{cfg.http.host}:{cfg.http.port}"
        headers = {"authorization": f"Bearer {token}"}
        acts = ((faulty, "rolled_back", "act 1: a faulty challenger"),
                (good, "promoted", "act 2: a good challenger"))
        outcomes: list[ActOutcome] = []
        stats = TrafficStats()
        for ref, goal, title in acts:
            _step(f"{title}: pointing the challenger alias at v{ref.version}; "
                  f"{rate:g} req/s of live traffic")
            registry.set_alias(CHALLENGER, ref.version, actor="demo", reason=title)
            act_stats = TrafficStats()
            watch = asyncio.run(drive(base, duration_s, rate, act_stats, admin_headers=headers,
                                      done=_ended(ref.version)))
            stats.merge(act_stats)
            view = watch.view
            print(f"  -> {view.get('phase')}: {view.get('reason') or '-'}")
            report = _save_report(base, token, view.get("rollout_id"), watch.canary_view)
            if report is not None:
                print(f"  report: {report} (open it in a browser; also in the rollout's "
                      "MLflow run)")
            outcomes.append(ActOutcome(title, ref.version, str(view.get("phase")), goal,
                                       str(view.get("reason") or ""), act_stats.sent,
                                       act_stats.errors, report))
        _summary(stats, registry, outcomes)
        ok = all(o.as_expected for o in outcomes) and stats.errors == 0
        teardown(cfg)
    finally:
        import ray

        ray.shutdown()
    _step(f"done in {time.monotonic() - started:.0f}s: "
          + ("faulty challenger rolled back, good challenger promoted, zero client errors"
             if ok else "the story did not go as expected (see above)"))
    return 0 if ok else 1


def _ended(version: str) -> Callable[[dict[str, Any]], bool]:
    def done(view: dict[str, Any]) -> bool:
        rollout = view.get("rollout_id") or ""
        return f"-v{version}-" in rollout and view.get("phase") in (
            "rolled_back", "promoted", "failed", "paused")
    return done


@dataclass(frozen=True)
class ActOutcome:
    title: str
    version: str
    outcome: str
    expected: str
    reason: str
    requests: int
    client_errors: int
    report: Path | None

    @property
    def as_expected(self) -> bool:
        return self.outcome == self.expected


def _save_report(base: str, token: str, rollout_id: Any,
                 canary_view: dict[str, Any] | None) -> Path | None:
    """The act's rollout report, from the admin API, under .gateway/reports/ (with the
    admin view seen mid-canary, for `docs/screenshots.py`)."""
    if not rollout_id:
        return None
    from gateway.admin_client import AdminClient, AdminError

    client = AdminClient(base, token, timeout_s=60.0, actor="demo")
    try:
        page = client.report(str(rollout_id))
    except AdminError as exc:
        print(f"  (no report: {exc})")
        return None
    finally:
        client.close()
    path = Path(".gateway/reports") / f"{rollout_id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    if canary_view is not None:
        path.with_suffix(".canary.json").write_text(json.dumps(canary_view), encoding="utf-8")
    return path


def _summary(stats: TrafficStats, registry: ModelRegistry,
             outcomes: list[ActOutcome]) -> None:
    print()
    print("  act                          challenger  outcome      requests  client errors")
    for o in outcomes:
        mark = "" if o.as_expected else f"  (expected {o.expected})"
        print(f"  {o.title[:28]:<28} v{o.version:<10} {o.outcome:<12} {o.requests:>8}  "
              f"{o.client_errors:>13}{mark}")
        print(f"    why: {_short(o.reason, 100)}")
        if o.report is not None:
            print(f"    report: {o.report}")
    print(f"  requests: {stats.sent}   non-2xx answers: {stats.errors}   "
          f"p50 latency: {stats.p50_ms():.1f} ms")
    print("  answers by model version: "
          + ", ".join(f"v{v}: {n}" for v, n in sorted(stats.versions.items())))
    print("  MLflow aliases now: "
          + ", ".join(f"{a} -> v{v}" for a, v in sorted(registry.aliases().items())))
    print("  audit trail: .gateway/audit.jsonl; rollout runs: MLflow experiment "
          "'champion-gateway-rollouts'")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split()) or "-"
    return text if len(text) <= limit else text[:limit - 3] + "..."
