"""Adding champion capacity (`rollback_and_scale`) through Serve's external scaler API.

The gateway app is deployed with `external_scaler_enabled`, which lets the supervisor set a
deployment's target replica count on Serve's controller at runtime, without a redeploy.
"""

from __future__ import annotations

from typing import Any

import ray

from core.logs import get_logger

log = get_logger(__name__)

SERVE_CONTROLLER = "SERVE_CONTROLLER_ACTOR"
SERVE_NAMESPACE = "serve"


def slot_deployment(slot: str) -> str:
    return f"slot_{slot}"


def scale_deployment(app_name: str, deployment: str, replicas: int,
                     timeout_s: float = 10.0) -> None:
    """Ask Serve's controller for `replicas` replicas of `deployment` in `app_name`."""
    from ray.serve._private.common import DeploymentID

    controller = ray.get_actor(SERVE_CONTROLLER, namespace=SERVE_NAMESPACE)
    ref: Any = controller.update_deployment_replicas.remote(
        DeploymentID(name=deployment, app_name=app_name), replicas)
    ray.get(ref, timeout=timeout_s)
    log.info("scaled %s/%s to %d replicas", app_name, deployment, replicas)
