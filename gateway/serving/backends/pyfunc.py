"""Backend for any MLflow model, through the generic `mlflow.pyfunc` interface."""

from __future__ import annotations

from typing import Any

from core.errors import ModelLoadError
from gateway.serving.backends.base import Prediction
from gateway.serving.backends.common import check_finite, load_pyfunc, to_jsonable
from gateway.serving.backends.inputs import (
    ColumnInput,
    InputSpec,
    TensorInput,
    coerce_columns,
    coerce_tensor,
    spec_from_signature,
    summarize,
    synthetic_input,
)
from model_registry.refs import ModelRef


class PyfuncBackend:
    name = "pyfunc"

    def __init__(self, max_batch: int = 1024) -> None:
        self._max_batch = max_batch
        self._model: Any = None
        self._spec: InputSpec = None
        self._ref: ModelRef | None = None

    def load(self, ref: ModelRef) -> None:
        model = load_pyfunc(ref)
        self._model, self._ref = model, ref
        self._spec = spec_from_signature(model.metadata.signature)

    @property
    def model(self) -> Any:
        """The loaded PyFuncModel (text-generation models are also served token by token)."""
        return self._model

    def health_check(self) -> None:
        if self._model is None:
            raise ModelLoadError("no model loaded")
        sample = synthetic_input(self._spec)
        if sample is None:
            return
        try:
            outputs = self._run(sample)
        except Exception as exc:
            raise ModelLoadError(f"model {self._ref.name if self._ref else '?'} version "
                                 f"{self._ref.version if self._ref else '?'}: health check "
                                 f"inference failed: {exc}") from exc
        check_finite(to_jsonable(outputs), self._ref)

    def predict(self, inputs: Any) -> Prediction:
        if self._model is None:
            raise ModelLoadError("no model loaded")
        data: Any = inputs
        if isinstance(self._spec, TensorInput):
            data = coerce_tensor(inputs, self._spec, self._max_batch)
        elif isinstance(self._spec, ColumnInput):
            data = coerce_columns(inputs, self._spec, self._max_batch)
        outputs = to_jsonable(self._run(data))
        return Prediction(outputs=outputs, output_summary=summarize(outputs),
                          input_summary=summarize(data) if isinstance(self._spec, TensorInput)
                          else None)

    def _run(self, data: Any) -> Any:
        if isinstance(self._spec, ColumnInput):
            import pandas as pd

            data = pd.DataFrame.from_records(data, columns=list(self._spec.names))
        return self._model.predict(data)
