"""Backend for any MLflow model, through the generic `mlflow.pyfunc` interface."""

from __future__ import annotations

from typing import Any

from core.errors import ModelLoadError
from gateway.serving.backends.base import Prediction
from gateway.serving.backends.batching import RECORDS, Prepared, tensor_item
from gateway.serving.backends.common import (
    FROM_EXAMPLE,
    FROM_PROMPT,
    FROM_SIGNATURE,
    load_input_example,
    load_pyfunc,
    nothing_to_check,
    run_health_check,
    to_jsonable,
)
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
from gateway.serving.llm.pyfunc_textgen import check_generates, is_text_generation
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
        """Call the model on the first input there is: one row made from the signature, the
        logged input example, or for a text-generation model a short prompt in the records
        the gateway sends it."""
        model, ref = self._model, self._ref
        if model is None or ref is None:
            raise ModelLoadError("no model loaded")
        sample = synthetic_input(self._spec)
        if sample is not None:
            run_health_check(ref, FROM_SIGNATURE, lambda: self._run(sample))
            return
        example = load_input_example(ref, model.metadata)
        if example is not None:
            run_health_check(ref, FROM_EXAMPLE, lambda: model.predict(example))
            return
        if is_text_generation(model):
            run_health_check(ref, FROM_PROMPT, lambda: check_generates(model))
            return
        raise nothing_to_check(ref)

    def predict(self, inputs: Any) -> Prediction:
        item = self.prepare(inputs)
        return self.prediction(item, to_jsonable(self.call_model(item.data)))

    def prepare(self, inputs: Any) -> Prepared:
        """Check and coerce one request's inputs (`BatchingBackend`). Records share a call;
        tensors when the signature leaves the first axis free (the batch axis); a model
        without a signature takes what it is sent, alone."""
        if self._model is None:
            raise ModelLoadError("no model loaded")
        if isinstance(self._spec, TensorInput):
            arr = coerce_tensor(inputs, self._spec, self._max_batch)
            return tensor_item(arr, bool(self._spec.shape) and self._spec.shape[0] == -1)
        if isinstance(self._spec, ColumnInput):
            records = coerce_columns(inputs, self._spec, self._max_batch)
            return Prepared(records, len(records), RECORDS)
        return Prepared(inputs, 1, None)

    def call_model(self, data: Any) -> Any:
        return self._run(data)

    def prediction(self, item: Prepared, outputs: Any) -> Prediction:
        return Prediction(outputs=outputs, output_summary=summarize(outputs),
                          input_summary=summarize(item.data)
                          if isinstance(self._spec, TensorInput) else None)

    def _run(self, data: Any) -> Any:
        if isinstance(self._spec, ColumnInput):
            import pandas as pd

            data = pd.DataFrame.from_records(data, columns=list(self._spec.names))
        return self._model.predict(data)
