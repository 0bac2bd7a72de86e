"""Dynamic batching inside a model slot: several requests in one model call, split back.

A backend that can batch (`BatchingBackend`) splits its `predict` in three: `prepare`
validates and coerces one request's inputs (an `InputError` for that request alone, before
anything is batched), `call_model` runs the model on rows, and `prediction` turns one
request's share of the outputs into its `Prediction`. `run_batch` concatenates the prepared
requests that fit together (equal `Prepared.key`: same trailing shape and dtype, or the same
columns), calls the model once per group, and cuts the outputs back by row count.

Each request keeps its own outcome: when a batched call raises, or its outputs do not come
back one per input row, every request of the group is run again on its own, so a bad row
fails only its own request and its batch-mates still get their answers. A model whose
outputs never split by rows is remembered as such and not batched again (`Batcher`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gateway.serving.backends.base import Prediction
from gateway.serving.backends.common import to_jsonable


@dataclass(frozen=True)
class Prepared:
    """One request's inputs, checked and in the form the model takes.

    `key`: requests with equal keys can share one model call (None: never batched, e.g. a
    model without a signature to say which axis holds the rows)."""

    data: Any  # a numpy array (rows on axis 0) or a list of records
    rows: int
    key: Hashable | None


@runtime_checkable
class BatchingBackend(Protocol):
    """A backend whose requests can share model calls (torch, pyfunc); see the module doc."""

    def prepare(self, inputs: Any) -> Prepared: ...

    def call_model(self, data: Any) -> Any: ...

    def prediction(self, item: Prepared, outputs: Any) -> Prediction: ...


@dataclass(frozen=True)
class Result:
    """What became of one request of a batch: its prediction or the exception its own run
    raised; how many requests shared its model call; its share of the call's time."""

    prediction: Prediction | None
    error: BaseException | None
    batch_size: int
    busy_s: float


def concat(parts: Sequence[Any]) -> Any:
    """Rows of several requests as one model input: arrays along axis 0, records chained."""
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts, axis=0)
    out: list[Any] = []
    for part in parts:
        out.extend(part)
    return out


def split_rows(outputs: Any, rows: Sequence[int]) -> list[Any] | None:
    """JSON-ready `outputs` of a batched call cut into each request's rows; None when they
    are not one per input row (a model that answers per batch, not per row)."""
    if not isinstance(outputs, list) or len(outputs) != sum(rows):
        return None
    parts, start = [], 0
    for n in rows:
        parts.append(outputs[start:start + n])
        start += n
    return parts


class Batcher:
    """Runs batches for one loaded backend; remembers a model whose outputs do not split by
    rows, so it is then run one request at a time instead of twice per batch."""

    def __init__(self, backend: BatchingBackend,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.backend = backend
        self._clock = clock
        self.splits_by_row = True

    def run(self, items: Sequence[Prepared]) -> list[Result]:
        results: list[Result | None] = [None] * len(items)
        groups: dict[Hashable, list[int]] = {}
        for i, item in enumerate(items):
            if item.key is None or not self.splits_by_row:
                results[i] = self._alone(item)
            else:
                groups.setdefault(item.key, []).append(i)
        for idx in groups.values():
            for i, res in zip(idx, self._group([items[i] for i in idx]), strict=True):
                results[i] = res
        return [r for r in results if r is not None]

    def _group(self, group: list[Prepared]) -> list[Result]:
        if len(group) == 1:
            return [self._alone(group[0])]
        rows = [item.rows for item in group]
        start = self._clock()
        try:
            parts = split_rows(to_jsonable(self.backend.call_model(
                concat([item.data for item in group]))), rows)
            if parts is None:
                self.splits_by_row = False
            preds = None if parts is None else [self.backend.prediction(item, part)
                                                for item, part in zip(group, parts, strict=True)]
        except Exception:  # one bad row (or a model that cannot batch): each on its own
            preds = None
        if preds is None:
            return [self._alone(item) for item in group]
        elapsed, total = self._clock() - start, sum(rows) or 1
        # Each request is charged its rows' share of the call (the cost guard's busy time).
        return [Result(p, None, len(group), elapsed * item.rows / total)
                for p, item in zip(preds, group, strict=True)]

    def _alone(self, item: Prepared) -> Result:
        start = self._clock()
        try:
            pred = self.backend.prediction(item, to_jsonable(self.backend.call_model(item.data)))
        except Exception as exc:
            return Result(None, exc, 1, self._clock() - start)
        return Result(pred, None, 1, self._clock() - start)


RECORDS = "records"  # the key of column (record) inputs: any two requests' records concatenate


def tensor_item(arr: np.ndarray[Any, Any], batchable: bool) -> Prepared:
    """A tensor request: batchable with others of the same trailing shape and dtype when its
    first axis holds the rows (`batchable`: the signature leaves that axis free)."""
    if not batchable or arr.ndim == 0:
        return Prepared(arr, 1, None)
    return Prepared(arr, int(arr.shape[0]), (arr.shape[1:], arr.dtype.str))
