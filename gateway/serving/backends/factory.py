"""The one factory of model backends: imports each backend lazily (vLLM and torch are
heavy, and vLLM is an optional extra)."""

from __future__ import annotations

from core.errors import ConfigError
from gateway.serving.backends.base import Backend


def make_backend(name: str, *, device: str = "cpu", max_batch: int = 1024,
                 max_tokens_limit: int = 1024) -> Backend:
    """Build the backend called `name`; raises ConfigError on an unknown name."""
    if name == "torch":
        from gateway.serving.backends.torch import TorchBackend

        return TorchBackend(device=device, max_batch=max_batch)
    if name == "pyfunc":
        from gateway.serving.backends.pyfunc import PyfuncBackend

        return PyfuncBackend(max_batch=max_batch)
    if name == "vllm":
        from gateway.serving.backends.vllm import VllmBackend

        return VllmBackend(max_tokens_limit=max_tokens_limit)
    raise ConfigError(f"model.backend: unknown backend {name!r} (known: torch, pyfunc, vllm)")
