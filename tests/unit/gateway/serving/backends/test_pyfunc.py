"""The pyfunc backend's health check for text-generation models: signature first, else the
input example, else a short prompt in the records the OpenAI endpoints send (real MLflow
versions in a temporary SQLite store). `load_backend`'s cases for plain pyfunc models are in
tests/unit/gateway/serving/test_model_server.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.errors import ModelLoadError
from gateway.demo.textgen import UngroundedLM, load_corpus, textgen_signature, train_lm
from gateway.serving.backends.pyfunc import PyfuncBackend
from gateway.serving.llm.pyfunc_textgen import TASK_KEY, TEXT_GENERATION
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from model_registry.testing import FailingModel, log_pyfunc_model, use_tracking_uri

TEXTGEN = {TASK_KEY: TEXT_GENERATION}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    db = tmp_path_factory.mktemp("pyfunc_backend") / "mlflow.db"
    return ModelRegistry("pyfunc-backend-test", f"sqlite:///{db}")


@pytest.fixture(autouse=True)
def _tracking(registry: ModelRegistry) -> Iterator[None]:
    with use_tracking_uri(registry.tracking_uri):
        yield


def _register(registry: ModelRegistry, model: Any, **log: Any) -> ModelRef:
    return registry.register(log_pyfunc_model(registry.tracking_uri, model, **log).runs_uri)


def _checked(ref: ModelRef) -> PyfuncBackend:
    backend = PyfuncBackend()
    backend.load(ref)
    backend.health_check()
    return backend


def test_a_text_model_without_signature_or_example_is_checked_with_a_prompt(
        registry: ModelRegistry) -> None:
    healthy = _register(registry, UngroundedLM(train_lm(load_corpus())), metadata=TEXTGEN)
    backend = _checked(healthy)
    assert backend.model.metadata.signature is None
    failing = _register(registry, FailingModel(), metadata=TEXTGEN)
    with pytest.raises(ModelLoadError) as err:
        _checked(failing)
    assert str(err.value) == (f"model {failing.name} version {failing.version}: health check "
                              "on a short prompt failed: RuntimeError: injected model failure")


def test_a_text_model_answering_out_of_format_fails_its_check(registry: ModelRegistry) -> None:
    """A model that returns something other than one generation record per prompt would
    fail every OpenAI request: the prompt check reads its answer as the adapter does."""
    from model_registry.testing import LinearModel

    ref = _register(registry, _EchoRecords(), metadata=TEXTGEN)
    with pytest.raises(ModelLoadError, match=r"short prompt failed: TypeError: text-generation "
                                             r"model output lacks"):
        _checked(ref)
    numbers = _register(registry, LinearModel(1.0, 0.0), metadata=TEXTGEN)
    with pytest.raises(ModelLoadError, match="short prompt failed"):
        _checked(numbers)


def test_a_signed_text_model_that_fails_every_call_fails_on_its_signature(
        registry: ModelRegistry) -> None:
    ref = _register(registry, FailingModel(), metadata=TEXTGEN, signature=textgen_signature())
    with pytest.raises(ModelLoadError, match="synthetic input from its signature failed"):
        _checked(ref)


class _EchoRecords(FailingModel):
    """Answers every record with the record itself (no text, no token counts)."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return list(model_input) if isinstance(model_input, list) else \
            model_input.to_dict(orient="records")
