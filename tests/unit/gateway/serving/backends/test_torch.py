"""The torch backend's health check always calls the model: on an input from its signature,
else on its logged input example, else it has nothing to check and says so (real
`mlflow.pytorch` versions in a temporary SQLite store)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from core.errors import ModelLoadError
from gateway.demo.models import N_FEATURES, tensor_signature
from gateway.serving.backends import NothingToCheck
from gateway.serving.backends.torch import TorchBackend
from model_registry.experiments import ensure_experiment
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from model_registry.testing import use_tracking_uri

torch = pytest.importorskip("torch")
EXAMPLE = np.full((2, N_FEATURES), 0.5, dtype=np.float32)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    db = tmp_path_factory.mktemp("torch_backend") / "mlflow.db"
    return ModelRegistry("torch-backend-test", f"sqlite:///{db}")


@pytest.fixture(autouse=True)
def _tracking(registry: ModelRegistry) -> Iterator[None]:
    with use_tracking_uri(registry.tracking_uri):
        yield


def _register(registry: ModelRegistry, in_features: int, **log: Any) -> ModelRef:
    """A linear layer taking `in_features`: with 3, every call with the 8 features the
    gateway's models take fails (a challenger that fails every call)."""
    import mlflow
    import mlflow.pytorch

    torch.manual_seed(0)
    model = torch.nn.Linear(in_features, 1)
    experiment_id = ensure_experiment(registry.tracking_uri, registry.model_name)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        # pickle: pt2 (MLflow's default) needs an example to trace, and the case without
        # one is under test.
        mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                 pip_requirements=[f"torch=={torch.__version__}"], **log)
    return registry.register(f"runs:/{run.info.run_id}/model")


def _checked(ref: ModelRef) -> TorchBackend:
    backend = TorchBackend()
    backend.load(ref)
    backend.health_check()
    return backend


def test_a_signed_model_that_fails_every_call_fails_its_check(registry: ModelRegistry) -> None:
    ref = _register(registry, 3, signature=tensor_signature())
    with pytest.raises(ModelLoadError, match=f"version {ref.version}: health check on a "
                                             "synthetic input from its signature failed: "
                                             "RuntimeError"):
        _checked(ref)


def test_a_model_with_only_an_input_example_is_checked_on_it(registry: ModelRegistry) -> None:
    import mlflow.models

    # MLflow's signature inference calls the model on the example, which fails: no signature.
    failing = _register(registry, 3, input_example=EXAMPLE)
    assert mlflow.models.get_model_info(failing.uri).signature is None
    with pytest.raises(ModelLoadError, match=f"version {failing.version}: health check on its "
                                             "logged input example failed: RuntimeError"):
        _checked(failing)
    healthy = _checked(_register(registry, N_FEATURES, signature=False, input_example=EXAMPLE))
    assert len(healthy.predict([[0.5] * N_FEATURES]).outputs) == 1


def test_a_model_with_nothing_to_check_it_with_says_so(registry: ModelRegistry) -> None:
    ref = _register(registry, N_FEATURES)
    with pytest.raises(NothingToCheck, match=f"version {ref.version} has neither a signature "
                                             "nor an input example"):
        _checked(ref)
