"""Typed gateway configuration, loaded from YAML (`configs/gateway.yaml`).

Every section is a frozen dataclass; `load_config` rejects unknown keys and bad values with a
`ConfigError` naming the dotted path, so a wrong setting fails at start, not mid-rollout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from core.configschema import bounded, load
from core.errors import ConfigError
from guards.context import JudgeContext
from guards.hallucination import DEFAULT_SCORER, make_scorer
from guards.results import TriggerSpec
from guards.verdict import default_triggers, parse_triggers

BackendName = Literal["auto", "torch", "pyfunc", "vllm"]
NotifierType = Literal["webhook", "slack", "pagerduty"]
SeverityName = Literal["critical", "high", "medium", "low", "info"]
HealthCheckMode = Literal["require", "allow_unchecked"]
# Retry-After may ask for longer; an alert that late is worth less than a free worker.
MAX_BACKOFF_S = 10.0


@dataclass(frozen=True)
class ModelConfig:
    name: str = "champion-gateway-demo"
    # None: MLFLOW_TRACKING_URI, else an embedded SQLite file under ./.gateway/
    tracking_uri: str | None = None
    # auto: torch for models with the pytorch flavour, else pyfunc
    backend: BackendName = "auto"


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = bounded(8000, ge=1, le=65535)
    max_body_bytes: int = bounded(1_048_576, ge=64)
    max_batch: int = bounded(1024, ge=1)
    # Serve's proxies: one on every node (a load balancer in front spreads clients), or
    # the head's only. Applied when `gateway serve` starts Serve.
    proxy_location: Literal["EveryNode", "HeadOnly"] = "EveryNode"


@dataclass(frozen=True)
class AutoscalingConfig:
    """Serve's `autoscaling_config` for one deployment (its `num_replicas` is then unused).

    The names and meanings are Serve's own; the defaults are Serve's except the delays,
    which are shorter upwards (a rollout shifts load within seconds)."""

    # At least 1 (Serve allows 0): the ingress holds the routing table and a slot's champion
    # must always answer; a cold start would be a client-visible outage.
    min_replicas: int = bounded(1, ge=1)
    max_replicas: int = bounded(4, ge=1)
    initial_replicas: int | None = None
    target_ongoing_requests: float = bounded(2.0, gt=0.0)
    upscale_delay_s: float = bounded(10.0, ge=0.0)
    downscale_delay_s: float = bounded(600.0, ge=0.0)
    look_back_period_s: float = bounded(30.0, gt=0.0)

    def __post_init__(self) -> None:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"autoscaling: min_replicas ({self.min_replicas}) > "
                             f"max_replicas ({self.max_replicas})")
        if self.initial_replicas is not None and not (
                self.min_replicas <= self.initial_replicas <= self.max_replicas):
            raise ValueError(f"autoscaling: initial_replicas ({self.initial_replicas}) must "
                             f"lie in [min_replicas, max_replicas]")

    def to_serve(self) -> dict[str, Any]:
        """The mapping Serve's `autoscaling_config` deployment option takes."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class DeploymentResources:
    num_replicas: int = bounded(1, ge=1)
    # Fractional CPUs: on a 2-core machine whole CPUs per replica would never schedule.
    num_cpus: float = bounded(0.25, ge=0.0)
    num_gpus: float = bounded(0.0, ge=0.0)
    max_ongoing_requests: int = bounded(256, ge=1)
    # Custom Ray resources each replica needs, e.g. {"gpu_node": 0.01} to place it on nodes
    # started with `--resources '{"gpu_node": 1}'` (or a KubeRay group's rayStartParams).
    resources: Mapping[str, float] = field(default_factory=dict)
    # Serve autoscaling instead of a fixed num_replicas.
    autoscaling: AutoscalingConfig | None = None
    # Serve's max_replicas_per_node: e.g. 1 spreads replicas so a lost node takes one.
    max_replicas_per_node: int | None = None

    def __post_init__(self) -> None:
        for name, amount in self.resources.items():
            if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
                raise ValueError(f"resources.{name}: must be a number >= 0, got {amount!r}")
            if name in ("CPU", "GPU", "memory"):
                raise ValueError(f"resources.{name}: use num_cpus/num_gpus, not resources")
        if self.max_replicas_per_node is not None and self.max_replicas_per_node < 1:
            raise ValueError(f"max_replicas_per_node: must be >= 1, got "
                             f"{self.max_replicas_per_node}")

    def actor_options(self) -> dict[str, Any]:
        """Serve's `ray_actor_options` for one replica."""
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            opts["resources"] = dict(self.resources)
        return opts

    def replica_options(self) -> dict[str, Any]:
        """Serve's replica-count options: fixed, or autoscaling."""
        out: dict[str, Any] = ({"num_replicas": self.num_replicas} if self.autoscaling is None
                               else {"autoscaling_config": self.autoscaling.to_serve()})
        if self.max_replicas_per_node is not None:
            out["max_replicas_per_node"] = self.max_replicas_per_node
        return out

    def min_replicas(self) -> int:
        """The fewest replicas the deployment runs (its count at start, when fixed)."""
        return self.num_replicas if self.autoscaling is None else self.autoscaling.min_replicas

    def max_replicas(self) -> int | None:
        """The most replicas the supervisor may ask for (None: no bound but the cluster)."""
        return None if self.autoscaling is None else self.autoscaling.max_replicas


@dataclass(frozen=True)
class BatchingConfig:
    """Dynamic batching in the model slots (torch and pyfunc models; vLLM batches itself):
    concurrent `/v1/predict` requests to a replica share one model call, of at most
    `max_batch_size` requests. A batch forms when the model is free, from every request
    that waited meanwhile; `batch_wait_timeout_s` only holds a lone request back (from its
    arrival) while the model is idle (`gateway.serving.batchqueue`). Each request keeps its
    own answer, latency and outcome."""

    max_batch_size: int = bounded(16, ge=1, le=4096)
    batch_wait_timeout_s: float = bounded(0.002, ge=0.0, le=10.0)


@dataclass(frozen=True)
class SlotsConfig(DeploymentResources):
    health_check_timeout_s: float = bounded(60.0, gt=0.0)
    # Absent (the default): every request is its own model call.
    batching: BatchingConfig | None = None
    # require: a version with neither a signature nor an input example (nothing to call it
    # with before traffic) fails to load; allow_unchecked serves it without a health check.
    health_check: HealthCheckMode = "require"


@dataclass(frozen=True)
class TimeoutsConfig:
    challenger_s: float = bounded(2.0, gt=0.0)
    champion_s: float = bounded(10.0, gt=0.0)
    shadow_s: float = bounded(5.0, gt=0.0)


@dataclass(frozen=True)
class RoutingConfig:
    sticky_header: str = "x-gateway-key"


@dataclass(frozen=True)
class AdminConfig:
    token_env: str = "GATEWAY_ADMIN_TOKEN"
    # Only for local use: serve the admin API with no token at all.
    allow_unauthenticated: bool = False


@dataclass(frozen=True)
class ControlConfig:
    namespace: str = "champion_gateway"
    supervisor_name: str = "champion-gateway-supervisor"
    long_poll_timeout_s: float = bounded(30.0, gt=0.0)
    # Ingress -> supervisor window deltas: every `flush_interval_s`, and within
    # `urgent_flush_s` of a failed challenger call (errors are what must roll back fastest).
    flush_interval_s: float = bounded(0.25, gt=0.0)
    urgent_flush_s: float = bounded(0.05, gt=0.0)
    # head: the supervisor actor runs on the Ray head node, which lives as long as the
    # cluster (worker nodes come and go: autoscaling, spot, node failures); any: anywhere.
    supervisor_placement: Literal["head", "any"] = "head"
    # node: each node's ingress replicas flush (and long-poll the table) through one
    # aggregator actor on their node, which forwards one merged delta per interval: the
    # supervisor's load grows with nodes, not replicas (benchmarks/RESULTS.md, control plane).
    # Costs a local hop and at most `urgent_flush_s` on a failing challenger's flush; worth it
    # past a few dozen ingress replicas. none: every replica talks to the supervisor.
    aggregation: Literal["none", "node"] = "none"


@dataclass(frozen=True)
class SupervisorConfig:
    tick_s: float = bounded(0.25, gt=0.0)  # control-loop period (time-based steps, loading)
    registry_poll_s: float = bounded(1.0, gt=0.0)  # how often the challenger alias is read
    resource_interval_s: float = bounded(2.0, gt=0.0)  # memory sampling of slot replicas
    judge_persist_s: float = bounded(5.0, gt=0.0)  # how often the judge's evidence is saved
    audit_path: str = ".gateway/audit.jsonl"
    rollout_experiment: str = "champion-gateway-rollouts"


@dataclass(frozen=True)
class FeedbackConfig:
    ttl_s: float = bounded(3600.0, gt=0.0)  # feedback for older requests gets 410
    capacity: int = bounded(200_000, ge=1)  # request ids remembered for feedback


@dataclass(frozen=True)
class ObservabilityConfig:
    # Ray's Prometheus export port when `gateway serve`/`demo` start a local Ray instance.
    metrics_export_port: int = bounded(8080, ge=1, le=65535)


@dataclass(frozen=True)
class LlmConfig:
    max_tokens_limit: int = bounded(1024, ge=1)  # larger max_tokens requests get 422


# ---- rollout (gateway.control.rollout) ----
@dataclass(frozen=True)
class Step:
    weight: float = bounded(10.0, gt=0.0, le=100.0)
    min_requests: int = bounded(100, ge=0)
    min_duration_s: float = bounded(10.0, ge=0.0)


@dataclass(frozen=True)
class ShadowPolicy:
    enabled: bool = False
    min_requests: int = bounded(100, ge=0)
    min_duration_s: float = bounded(10.0, ge=0.0)


@dataclass(frozen=True)
class RolloutPolicy:
    steps: tuple[Step, ...] = (Step(5.0, 200, 30.0), Step(25.0, 500, 60.0),
                               Step(50.0, 1000, 60.0))
    shadow: ShadowPolicy = field(default_factory=ShadowPolicy)
    # A step that stays inconclusive this long is paused (or rolled back) instead of waiting.
    step_deadline_s: float = bounded(900.0, gt=0.0)
    on_deadline: Literal["pause", "rollback"] = "pause"
    auto_promote: bool = True
    # The old champion stays loaded this long after a promotion, for an instant rollback.
    rollback_window_s: float = bounded(300.0, ge=0.0)
    load_timeout_s: float = bounded(300.0, gt=0.0)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("steps: at least one step is required")
        weights = [s.weight for s in self.steps]
        if weights != sorted(weights) or len(set(weights)) != len(weights):
            raise ValueError(f"steps: weights must strictly increase, got {weights}")

    def to_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {f"step{i}.{k}": v for i, s in enumerate(self.steps)
                                  for k, v in vars(s).items()}
        params.update({f"shadow.{k}": v for k, v in vars(self.shadow).items()})
        params.update(step_deadline_s=self.step_deadline_s, on_deadline=self.on_deadline,
                      auto_promote=self.auto_promote, rollback_window_s=self.rollback_window_s,
                      load_timeout_s=self.load_timeout_s)
        return params


# ---- alerts (gateway.control.alerts) ----
@dataclass(frozen=True)
class AlertSpec:
    """One entry of config `alerts:`. Strings in `url` and `headers` may reference
    environment variables as `${NAME}`, resolved when the notifier is built (at start), so
    secrets (Slack webhook URLs, bearer tokens) stay out of the YAML file."""

    type: NotifierType
    url: str | None = None
    routing_key_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = bounded(2.0, gt=0.0, le=60.0)
    retries: int = bounded(2, ge=0, le=10)
    min_severity: SeverityName = "info"
    # First retry waits this long, then doubles (a 429's Retry-After wins, up to 10 s).
    backoff_s: float = bounded(0.25, ge=0.0, le=MAX_BACKOFF_S)
    name: str | None = None


# ---- hallucination scoring (gateway.serving.llm.evaluator) ----
@dataclass(frozen=True)
class EvaluatorConfig:
    """How the pool samples, scores and delivers. Errors name `hallucination.<field>`."""

    scorer: str = DEFAULT_SCORER
    scorer_params: Mapping[str, Any] = field(default_factory=dict)
    sample_rate: float = 0.1  # share of answered requests that are scored, in [0, 1]
    actors: int = 2
    num_cpus: float = 0.0  # per actor; scoring is light and must not take a replica's CPU
    max_in_flight: int = 256  # client side: submit calls not yet accepted by an actor
    batch_size: int = 32  # an actor scores as soon as it holds this many pairs...
    flush_interval_s: float = 0.5  # ...or this long after the first one arrived
    max_buffer: int = 10_000  # actor side: pairs waiting to be scored; more are dropped

    def __post_init__(self) -> None:
        checks = {"sample_rate": 0.0 <= self.sample_rate <= 1.0, "actors": self.actors >= 1,
                  "num_cpus": self.num_cpus >= 0.0, "max_in_flight": self.max_in_flight >= 1,
                  "batch_size": self.batch_size >= 1,
                  "flush_interval_s": self.flush_interval_s > 0.0,
                  "max_buffer": self.max_buffer >= 1}
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"hallucination.{name}: invalid value "
                                  f"{getattr(self, name)!r}")
        make_scorer(self.scorer, **dict(self.scorer_params))  # fail at start, not in an actor


@dataclass(frozen=True)
class GatewayConfig:
    app_name: str = "champion-gateway"
    model: ModelConfig = field(default_factory=ModelConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    ingress: DeploymentResources = field(default_factory=DeploymentResources)
    slots: SlotsConfig = field(default_factory=lambda: SlotsConfig(max_ongoing_requests=64))
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    judge: JudgeContext = field(default_factory=JudgeContext)
    # None: the default trigger table (DESIGN.md); else a list of
    # {guard, threshold?, severity?, action?, params?} validated by guards.parse_triggers.
    triggers: tuple[dict[str, Any], ...] | None = None
    alerts: tuple[AlertSpec, ...] = ()
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    # Sampling and scoring of LLM answers for the hallucination guard (off the request path).
    hallucination: EvaluatorConfig = field(default_factory=EvaluatorConfig)

    def __post_init__(self) -> None:
        if self.triggers is not None:
            parse_triggers(list(self.triggers))

    def trigger_specs(self) -> tuple[TriggerSpec, ...]:
        return default_triggers() if self.triggers is None else parse_triggers(
            list(self.triggers))

    def admin_token(self) -> str | None:
        """The admin token from the environment; raises if it is required and absent."""
        token = os.environ.get(self.admin.token_env) or None
        if token is None and not self.admin.allow_unauthenticated:
            raise ConfigError(
                f"admin.token_env: environment variable {self.admin.token_env} is not set; "
                "set it, or set admin.allow_unauthenticated: true for local use only"
            )
        return token


def parse_config(data: Any) -> GatewayConfig:
    """Build a GatewayConfig from a plain mapping (e.g. parsed YAML)."""
    return load(GatewayConfig, data)


def load_config(path: str | os.PathLike[str] | None) -> GatewayConfig:
    """Load and validate a YAML file; None gives the embedded defaults."""
    if path is None:
        return GatewayConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p}: not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p}: invalid YAML: {exc}") from exc
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"config file {p}: {exc}") from exc
