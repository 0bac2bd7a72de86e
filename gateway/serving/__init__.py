"""The data plane: the Ray Serve deployments that answer requests.

`gateway.serving` holds the ingress (HTTP API, arm choice, failover, observations, with the
OpenAI endpoints in `openai_routes`), the model slots (`model_server`, over `backends`) and
the LLM pieces (`llm`). It may import `core`, the libraries (`guards`, `model_registry`,
`gpu_monitor`), `gateway.wire`, `gateway.config`, `gateway.metrics` and itself; never
`gateway.control`: the supervisor is reached only through `gateway.wire.handles`.

The deployments are imported on first use (PEP 562), so importing a light module of the
package (`http`, `feedback`) does not load Ray Serve and the model backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.serving.ingress import Ingress
    from gateway.serving.model_server import ModelServer

__all__ = ["Ingress", "ModelServer"]


def __getattr__(name: str) -> Any:
    if name == "Ingress":
        from gateway.serving.ingress import Ingress

        return Ingress
    if name == "ModelServer":
        from gateway.serving.model_server import ModelServer

        return ModelServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
