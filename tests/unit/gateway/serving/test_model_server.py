"""`load_backend`: the health check always calls the model before it gets traffic.

Real MLflow pyfunc versions in a temporary SQLite store; each case is one way a version can
be logged (with a signature, with only an input example, with neither)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from core.errors import ModelLoadError
from gateway.config import GatewayConfig, parse_config
from gateway.demo.models import tensor_signature
from gateway.serving.backends import NothingToCheck
from gateway.serving.model_server import load_backend
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from model_registry.testing import (
    FailingModel,
    LinearModel,
    log_pyfunc_model,
    use_tracking_uri,
)

EXAMPLE = np.full((2, 8), 0.5, dtype=np.float32)
REFUSED = ("has neither a signature nor an input example to health-check it; log one, or "
           "set slots.health_check: allow_unchecked (gateway.yaml) to serve it unchecked")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    db = tmp_path_factory.mktemp("model_server") / "mlflow.db"
    return ModelRegistry("slot-test", f"sqlite:///{db}")


def _register(registry: ModelRegistry, model: Any, **log: Any) -> ModelRef:
    info = log_pyfunc_model(registry.tracking_uri, model, **log)
    return registry.register(info.runs_uri)


@pytest.fixture(scope="module")
def versions(registry: ModelRegistry) -> dict[str, ModelRef]:
    return {
        "signed, failing": _register(registry, FailingModel(), signature=tensor_signature()),
        # MLflow infers the signature by calling the model on the example; the call raises,
        # so the version is logged with the example and no signature (the case that used to
        # skip the health check).
        "example, failing": _register(registry, FailingModel(), input_example=EXAMPLE),
        "example, healthy": _register(registry, LinearModel(2.0, 1.0), signature=False,
                                      input_example=EXAMPLE),
        "bare, healthy": _register(registry, LinearModel(2.0, 1.0)),
        "bare, failing": _register(registry, FailingModel()),
    }


@pytest.fixture(autouse=True)
def _tracking(registry: ModelRegistry) -> Iterator[None]:
    with use_tracking_uri(registry.tracking_uri):  # slots load through the global URI
        yield


def _load(ref: ModelRef, cfg: GatewayConfig | None = None) -> Any:
    return load_backend(cfg or GatewayConfig(), ref)


def test_the_logged_versions_are_what_each_case_says(versions: dict[str, ModelRef]) -> None:
    import mlflow.models

    def info(key: str) -> Any:
        return mlflow.models.get_model_info(versions[key].uri)

    assert info("signed, failing").signature is not None
    for key in ("example, failing", "example, healthy"):
        assert info(key).signature is None and info(key).saved_input_example_info, key
    for key in ("bare, healthy", "bare, failing"):
        assert info(key).signature is None and not info(key).saved_input_example_info, key


def test_a_signed_version_that_fails_every_call_does_not_load(
        versions: dict[str, ModelRef]) -> None:
    ref = versions["signed, failing"]
    with pytest.raises(ModelLoadError) as err:
        _load(ref)
    assert str(err.value) == (f"model {ref.name} version {ref.version}: health check on a "
                              "synthetic input from its signature failed: RuntimeError: "
                              "injected model failure")


def test_a_version_with_only_an_input_example_is_checked_on_it(
        versions: dict[str, ModelRef]) -> None:
    ref = versions["example, failing"]
    with pytest.raises(ModelLoadError) as err:
        _load(ref)
    assert not isinstance(err.value, NothingToCheck)
    assert str(err.value) == (f"model {ref.name} version {ref.version}: health check on its "
                              "logged input example failed: RuntimeError: injected model "
                              "failure")
    healthy = _load(versions["example, healthy"])
    assert healthy.predict([[1.0] * 8]).outputs == [[3.0] * 8]


def test_a_version_with_nothing_to_check_it_with_is_refused(
        versions: dict[str, ModelRef]) -> None:
    for key in ("bare, healthy", "bare, failing"):
        ref = versions[key]
        with pytest.raises(NothingToCheck) as err:
            _load(ref)
        assert str(err.value) == f"model {ref.name} version {ref.version} {REFUSED}"


def test_allow_unchecked_serves_such_a_version_unchecked(versions: dict[str, ModelRef]) -> None:
    cfg = parse_config({"slots": {"health_check": "allow_unchecked"}})
    backend = _load(versions["bare, healthy"], cfg)
    assert backend.predict([[1.0, 2.0]]).outputs == [[3.0, 5.0]]
    # Only the missing input is waived: a version that can be checked still must pass.
    with pytest.raises(ModelLoadError, match="logged input example failed"):
        _load(versions["example, failing"], cfg)
    assert _load(versions["bare, failing"], cfg) is not None  # what the operator accepted


def test_a_backend_that_fails_its_check_is_closed(
        versions: dict[str, ModelRef], monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine holding device memory (vLLM) must not keep it after failing its check."""
    from gateway.serving.backends.pyfunc import PyfuncBackend

    closed: list[str] = []
    monkeypatch.setattr(PyfuncBackend, "close", lambda self: closed.append(self._ref.version),
                        raising=False)
    for key in ("signed, failing", "bare, healthy"):
        with pytest.raises(ModelLoadError):
            _load(versions[key])
    _load(versions["example, healthy"])
    assert closed == [versions["signed, failing"].version, versions["bare, healthy"].version]
