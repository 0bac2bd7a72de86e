"""Build the Serve application from config.

`serve run configs/serve.yaml` (import path `gateway.app:build`) and `gateway serve` both
end here. Aliases are resolved once, here, to immutable versions: the slots load those.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import ray
from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment

from gateway.config import GatewayConfig, load_config, parse_config
from gateway.control.alerts import make_notifiers
from gateway.control.supervisor import get_or_create_supervisor
from gateway.serving.ingress import Ingress
from gateway.serving.model_server import ModelServer
from gateway.wire.routing import Mode, RoutingTable
from model_registry.refs import CHAMPION
from model_registry.registry import ModelRegistry
from model_registry.tracking import resolve_tracking_uri


def initial_table(registry: ModelRegistry) -> RoutingTable:
    """The champion in slot a, nothing else: a challenger only gets a slot (and then traffic)
    through the supervisor, after it passed its health check."""
    champion = registry.resolve(CHAMPION)
    return RoutingTable(version=0, champion_slot="a", challenger_slot=None,
                        challenger_weight=0.0, mode=Mode.PINNED,
                        slot_models={"a": champion, "b": None})


def build_app(cfg: GatewayConfig, tracking_uri: str | None = None) -> Application:
    uri = resolve_tracking_uri(tracking_uri or cfg.model.tracking_uri)
    registry = ModelRegistry(cfg.model.name, tracking_uri=uri)
    table = initial_table(registry)
    # Fail here, in the caller's terminal, rather than in a replica or the supervisor.
    cfg.admin_token()
    for notifier in make_notifiers(cfg.alerts):
        close = getattr(notifier, "close", None)
        if close is not None:
            close()
    sup = get_or_create_supervisor(cfg, uri, table)
    # Slots and ingress start from the supervisor's table: it may be resuming a rollout.
    table = RoutingTable.from_dict(ray.get(sup.get_table.remote()))
    raw_cfg = dataclasses.asdict(cfg)
    raw_table = table.to_dict()
    slots = cfg.slots
    slot_opts: dict[str, Any] = {
        **slots.replica_options(),
        "max_ongoing_requests": slots.max_ongoing_requests,
        "ray_actor_options": slots.actor_options(),
        "health_check_timeout_s": slots.health_check_timeout_s,
        "graceful_shutdown_timeout_s": 5,
    }
    slot_dep = cast(Deployment, serve.deployment(ModelServer))
    slot_a = slot_dep.options(name="slot_a", **slot_opts).bind("a", raw_cfg, uri, raw_table)
    slot_b = slot_dep.options(name="slot_b", **slot_opts).bind("b", raw_cfg, uri, raw_table)
    ing = cfg.ingress
    ingress = cast(Deployment, serve.deployment(Ingress)).options(
        name="ingress", **ing.replica_options(),
        max_ongoing_requests=ing.max_ongoing_requests,
        # The admin token is read from the replica's environment (inherited from the process
        # that started Ray), never passed in the deployment config the dashboard shows.
        ray_actor_options=ing.actor_options(),
    )
    return ingress.bind(raw_cfg, slot_a, slot_b, raw_table)


def build(args: dict[str, Any]) -> Application:
    """Serve's application builder: `args` may carry `config` (a path) or `config_dict`."""
    if "config_dict" in args:
        cfg = parse_config(args["config_dict"])
    else:
        cfg = load_config(args.get("config"))
    return build_app(cfg, args.get("tracking_uri"))


def deploy(cfg: GatewayConfig, tracking_uri: str | None = None) -> None:
    """Start Serve's HTTP proxy on the configured address and run the gateway app on it."""
    serve.start(proxy_location=cfg.http.proxy_location,
                http_options={"host": cfg.http.host, "port": cfg.http.port})
    # external_scaler_enabled: the supervisor may add champion replicas (rollback_and_scale).
    serve.run(build_app(cfg, tracking_uri), name=cfg.app_name, route_prefix="/",
              external_scaler_enabled=True)


def teardown(cfg: GatewayConfig) -> None:
    """Delete the app and its detached supervisor (it would otherwise outlive the app)."""
    from gateway.control.supervisor import kill_supervisor

    serve.delete(cfg.app_name)
    kill_supervisor(cfg.control.supervisor_name, cfg.control.namespace)
