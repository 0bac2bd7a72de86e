"""Dynamic batching: requests share a model call, and each keeps its own answer and fate.

`Batcher` over a small in-process backend (every model call recorded), then the real pyfunc
and torch backends on real MLflow versions in a temporary SQLite store: a batched call
answers each request exactly as its own call would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from core.errors import InputError
from gateway.demo.models import N_FEATURES, tensor_signature
from gateway.serving.backends.base import Prediction
from gateway.serving.backends.batching import (
    RECORDS,
    Batcher,
    BatchingBackend,
    Prepared,
    concat,
    split_rows,
    tensor_item,
)
from gateway.serving.backends.pyfunc import PyfuncBackend
from gateway.serving.backends.torch import TorchBackend
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from model_registry.testing import PoisonRowModel, log_pyfunc_model, use_tracking_uri


class RowSums:
    """Sums each row; raises on a row starting with 13; records the rows of every call."""

    def __init__(self, per_batch: bool = False) -> None:
        self.calls: list[int] = []
        self.per_batch = per_batch  # answer one number per call, not per row

    def prepare(self, inputs: Any) -> Prepared:
        if not isinstance(inputs, list):
            raise InputError("inputs: expected a list", field="inputs")
        return tensor_item(np.asarray(inputs, dtype=np.float32), True)

    def call_model(self, data: Any) -> Any:
        self.calls.append(len(data))
        if (data[:, 0] == 13).any():
            raise ValueError("poisoned row")
        return np.asarray([data.sum()]) if self.per_batch else data.sum(axis=1)

    def prediction(self, item: Prepared, outputs: Any) -> Prediction:
        return Prediction(outputs, output_summary=float(np.mean(outputs)))


def _items(backend: RowSums, *rows: list[list[float]]) -> list[Prepared]:
    return [backend.prepare(r) for r in rows]


def test_a_batch_is_one_model_call_split_back_per_request() -> None:
    model = RowSums()
    ticks = iter([0.0, 0.4])
    results = Batcher(model, clock=lambda: next(ticks)).run(
        _items(model, [[1, 2]], [[3, 4], [5, 6]], [[7, 8]]))
    assert model.calls == [4]
    assert [r.prediction.outputs for r in results if r.prediction] == [[3.0], [7.0, 11.0],
                                                                      [15.0]]
    assert [r.batch_size for r in results] == [3, 3, 3]
    # each request is charged its rows' share of the call
    assert [r.busy_s for r in results] == pytest.approx([0.1, 0.2, 0.1])
    assert isinstance(model, BatchingBackend)


def test_a_bad_row_fails_its_own_request_only() -> None:
    model = RowSums()
    results = Batcher(model).run(_items(model, [[1, 1]], [[13, 0]], [[2, 2]]))
    assert model.calls == [3, 1, 1, 1]  # the batch, then each on its own
    ok, bad, ok2 = results
    assert ok.prediction is not None and ok.prediction.outputs == [2.0]
    assert ok2.prediction is not None and ok2.prediction.outputs == [4.0]
    assert bad.prediction is None and isinstance(bad.error, ValueError)
    assert [r.batch_size for r in results] == [1, 1, 1]


def test_outputs_not_one_per_row_are_run_alone_and_remembered() -> None:
    model = RowSums(per_batch=True)
    batcher = Batcher(model)
    first = batcher.run(_items(model, [[1, 1]], [[2, 2]]))
    assert [r.prediction.outputs for r in first if r.prediction] == [[2.0], [4.0]]
    assert not batcher.splits_by_row
    model.calls.clear()
    batcher.run(_items(model, [[1, 1]], [[2, 2]]))
    assert model.calls == [1, 1]  # no more wasted batched call


def test_only_requests_that_fit_together_share_a_call() -> None:
    model = RowSums()
    items = [*_items(model, [[1, 1]], [[1, 1, 1]], [[2, 2]]), Prepared(np.ones((1, 2)), 1, None)]
    results = Batcher(model).run(items)
    assert sorted(model.calls) == [1, 1, 2]  # the two 2-wide rows together, the rest alone
    assert [r.batch_size for r in results] == [2, 1, 2, 1]
    assert [r.prediction.outputs for r in results if r.prediction] == [[2.0], [3.0], [4.0],
                                                                      [2.0]]


def test_concat_and_split() -> None:
    assert concat([[{"a": 1}], [{"a": 2}, {"a": 3}]]) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert concat([np.ones((1, 2)), np.zeros((2, 2))]).shape == (3, 2)
    assert split_rows([1, 2, 3], [1, 2]) == [[1], [2, 3]]
    assert split_rows([1, 2], [1, 2]) is None
    assert split_rows({"y": [1, 2, 3]}, [1, 2]) is None
    assert tensor_item(np.ones((1, 2)), batchable=False).key is None
    assert tensor_item(np.asarray(1.0), batchable=True).key is None


# --- the real backends ------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    db = tmp_path_factory.mktemp("batching") / "mlflow.db"
    return ModelRegistry("batching-test", f"sqlite:///{db}")


@pytest.fixture(autouse=True)
def _tracking(registry: ModelRegistry) -> Iterator[None]:
    with use_tracking_uri(registry.tracking_uri):
        yield


def _register(registry: ModelRegistry, model: Any, **log: Any) -> ModelRef:
    return registry.register(log_pyfunc_model(registry.tracking_uri, model, **log).runs_uri)


def _loaded(backend: Any, ref: ModelRef) -> Any:
    backend.load(ref)
    backend.health_check()
    return backend


def test_pyfunc_tensor_batch_answers_as_each_call_would(registry: ModelRegistry) -> None:
    backend = _loaded(PyfuncBackend(), _register(registry, PoisonRowModel(2.0),
                                                 signature=tensor_signature()))
    rows = [[[float(i)] * N_FEATURES] for i in range(5)] + [[[0.5] * N_FEATURES] * 3]
    alone = [backend.predict(r).outputs for r in rows]
    batched = Batcher(backend).run([backend.prepare(r) for r in rows])
    assert [r.prediction.outputs for r in batched] == alone
    assert {r.batch_size for r in batched} == {6}
    poisoned = Batcher(backend).run([backend.prepare(r) for r in
                                     ([[13.0] * N_FEATURES], *rows[:2])])
    assert poisoned[0].error is not None and "poisoned row" in str(poisoned[0].error)
    assert [r.prediction.outputs for r in poisoned[1:]] == alone[:2]
    with pytest.raises(InputError, match="expected shape"):
        backend.prepare([[1.0, 2.0]])  # a bad request is refused before any batch


def test_pyfunc_records_batch(registry: ModelRegistry) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    backend = _loaded(PyfuncBackend(), _register(
        registry, PoisonRowModel(1.0), signature=infer_signature(frame, np.zeros(2))))
    requests: list[Any] = [{"x": 1.0, "y": 2.0}, [{"x": 3.0, "y": 4.0}, {"x": 5.0, "y": 6.0}]]
    items = [backend.prepare(r) for r in requests]
    assert {item.key for item in items} == {RECORDS}
    results = Batcher(backend).run(items)
    assert [r.prediction.outputs for r in results] == [backend.predict(r).outputs
                                                       for r in requests]
    assert [r.batch_size for r in results] == [2, 2]


def test_torch_batch_answers_as_each_call_would(registry: ModelRegistry) -> None:
    torch = pytest.importorskip("torch")
    import mlflow
    import mlflow.pytorch

    from model_registry.experiments import ensure_experiment

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, 2))
    with mlflow.start_run(experiment_id=ensure_experiment(registry.tracking_uri,
                                                          registry.model_name)) as run:
        mlflow.pytorch.log_model(net, name="model", serialization_format="pickle",
                                 signature=tensor_signature(),
                                 pip_requirements=[f"torch=={torch.__version__}"])
    backend = _loaded(TorchBackend(), registry.register(f"runs:/{run.info.run_id}/model"))
    rng = np.random.default_rng(0)
    rows = [rng.normal(size=(n, N_FEATURES)).astype(np.float32).tolist() for n in (1, 1, 3, 1)]
    alone = [backend.predict(r).outputs for r in rows]
    batched = Batcher(backend).run([backend.prepare(r) for r in rows])
    for got, want in zip(batched, alone, strict=True):
        assert got.prediction is not None
        np.testing.assert_allclose(got.prediction.outputs, want, rtol=1e-5, atol=1e-6)
        assert got.batch_size == 4
