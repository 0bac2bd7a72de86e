"""Backend for models logged with `mlflow.pytorch`."""

from __future__ import annotations

import contextlib
from typing import Any

from core.errors import InputError, ModelLoadError
from gateway.serving.backends.base import Prediction
from gateway.serving.backends.batching import Prepared, tensor_item
from gateway.serving.backends.common import (
    FROM_EXAMPLE,
    FROM_SIGNATURE,
    load_input_example,
    load_signature,
    nothing_to_check,
    run_health_check,
    to_jsonable,
)
from gateway.serving.backends.inputs import (
    ColumnInput,
    InputSpec,
    TensorInput,
    coerce_tensor,
    spec_from_signature,
    summarize,
    synthetic_input,
)
from model_registry.refs import ModelRef


class TorchBackend:
    name = "torch"

    def __init__(self, device: str = "cpu", max_batch: int = 1024) -> None:
        self._device = device
        self._max_batch = max_batch
        self._model: Any = None
        self._spec: InputSpec = None
        self._ref: ModelRef | None = None

    def load(self, ref: ModelRef) -> None:
        import mlflow.pytorch

        spec = spec_from_signature(load_signature(ref))
        if isinstance(spec, ColumnInput):
            raise ModelLoadError(f"model {ref.name} version {ref.version}: the torch backend "
                                 "needs a tensor signature; serve it with backend: pyfunc")
        try:
            model = mlflow.pytorch.load_model(ref.uri, map_location=self._device)
        except Exception as exc:
            raise ModelLoadError(f"model {ref.name} version {ref.version}: cannot load "
                                 f"{ref.uri} with mlflow.pytorch: {exc}") from exc
        with contextlib.suppress(NotImplementedError):
            # torch.export (pt2) modules keep the mode they were exported in and refuse eval().
            model.eval()
        self._model, self._spec, self._ref = model, spec, ref

    def health_check(self) -> None:
        """Call the model on one row made from its signature, else on its logged input
        example (as a float tensor, as `predict` makes one without a signature)."""
        ref = self._ref
        if self._model is None or ref is None:
            raise ModelLoadError("no model loaded")
        sample = synthetic_input(self._spec)
        if sample is not None:
            run_health_check(ref, FROM_SIGNATURE, lambda: self._run(sample))
            return
        example = load_input_example(ref)
        if example is None:
            raise nothing_to_check(ref)
        run_health_check(ref, FROM_EXAMPLE, lambda: self._run(_as_float_array(example)))

    def predict(self, inputs: Any) -> Prediction:
        item = self.prepare(inputs)
        return self.prediction(item, to_jsonable(self.call_model(item.data)))

    def prepare(self, inputs: Any) -> Prepared:
        """Check and coerce one request's inputs (`BatchingBackend`); rows on axis 0."""
        if self._model is None:
            raise ModelLoadError("no model loaded")
        if isinstance(self._spec, TensorInput):
            arr = coerce_tensor(inputs, self._spec, self._max_batch)
            batchable = bool(self._spec.shape) and self._spec.shape[0] == -1
        else:
            arr = _as_float_array(inputs)
            batchable = True  # a torch module takes its batch on the first axis
        return tensor_item(arr, batchable)

    def call_model(self, data: Any) -> Any:
        return self._run(data)

    def prediction(self, item: Prepared, outputs: Any) -> Prediction:
        return Prediction(outputs=outputs, output_summary=summarize(outputs),
                          input_summary=summarize(item.data))

    def _run(self, arr: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self._model(torch.as_tensor(arr, device=self._device))


def _as_float_array(inputs: Any) -> Any:
    import numpy as np

    try:
        return np.asarray(inputs, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError("inputs: expected nested lists of numbers", field="inputs") from None
