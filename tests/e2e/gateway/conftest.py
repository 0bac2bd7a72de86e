"""Fixtures for the gateway e2e tests: a registry with real model versions, deployed apps."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from gateway.demo.models import Faults
from gateway.demo.run import register_pyfunc_model
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import Deployed, deployed, gateway_config, linear
from tests.e2e.gateway.rollout_helpers import Sink


@pytest.fixture(scope="session")
def registry(tracking_uri: str) -> ModelRegistry:
    return ModelRegistry(f"gw-{uuid.uuid4().hex[:8]}", tracking_uri=tracking_uri)


@pytest.fixture(scope="session")
def models(registry: ModelRegistry) -> dict[str, ModelRef]:
    """Real MLflow pyfunc versions: healthy ones and challengers with injected faults."""
    return {
        "v1": register_pyfunc_model(registry, linear(), "healthy v1"),
        "v2": register_pyfunc_model(registry, linear(scale=1.01), "healthy v2"),
        "raises": register_pyfunc_model(registry, linear(Faults(error_rate=1.0)), "raises"),
        "slow": register_pyfunc_model(registry, linear(Faults(delay_s=0.6)), "slow"),
    }


@pytest.fixture(scope="module")
def healthy_app(ray_serve: str, registry: ModelRegistry,
                models: dict[str, ModelRef]) -> Iterator[Deployed]:
    cfg = replace(gateway_config(weight=30.0), app_name="gw-healthy")
    with deployed(ray_serve, registry, models["v1"], models["v2"], cfg) as app:
        yield app


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    """A local HTTP server receiving the alerts of the rollout tests."""
    s = Sink()
    yield s
    s.server.shutdown()
    s.server.server_close()
