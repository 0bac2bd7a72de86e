"""Slot replica counts through Serve's controller (its external scaler API).

The gateway app is deployed with `external_scaler_enabled`, which lets the supervisor set a
deployment's target replica count at runtime, without a redeploy: champion capacity on a
rollback (`gateway.control.capacity`). With Serve autoscaling on a slot, its autoscaler
takes over again from the count set here (downscaling only after `downscale_delay_s`).
"""

from __future__ import annotations

from typing import Any

import ray

from core.logs import get_logger
from gateway.control.capacity import ReplicaCount

__all__ = ["ServeScaler", "scale_deployment", "slot_deployment"]

log = get_logger(__name__)

SERVE_CONTROLLER = "SERVE_CONTROLLER_ACTOR"
SERVE_NAMESPACE = "serve"


def slot_deployment(slot: str) -> str:
    return f"slot_{slot}"


def _controller() -> Any:
    return ray.get_actor(SERVE_CONTROLLER, namespace=SERVE_NAMESPACE)


def scale_deployment(app_name: str, deployment: str, replicas: int,
                     timeout_s: float = 10.0) -> None:
    """Ask Serve's controller for `replicas` replicas of `deployment` in `app_name`."""
    from ray.serve._private.common import DeploymentID

    ref: Any = _controller().update_deployment_replicas.remote(
        DeploymentID(name=deployment, app_name=app_name), replicas)
    ray.get(ref, timeout=timeout_s)
    log.info("scaled %s/%s to %d replicas", app_name, deployment, replicas)


class ServeScaler:
    """`gateway.control.capacity.ReplicaScaler` on Serve's controller, for one app's slots."""

    def __init__(self, app_name: str, timeout_s: float = 10.0) -> None:
        self._app = app_name
        self._timeout_s = timeout_s

    def count(self, slot: str) -> ReplicaCount:
        """Both figures from one read of Serve's state (it is the whole instance's)."""
        details = ray.get(_controller().get_serve_instance_details.remote(),
                          timeout=self._timeout_s)
        app = details.get("applications", {}).get(self._app) or {}
        deployment = app.get("deployments", {}).get(slot_deployment(slot)) or {}
        replicas = deployment.get("replicas") or []
        return ReplicaCount(running=sum(1 for r in replicas if r.get("state") == "RUNNING"),
                            target=int(deployment.get("target_num_replicas") or 0))

    def scale(self, slot: str, replicas: int) -> None:
        scale_deployment(self._app, slot_deployment(slot), replicas, self._timeout_s)
