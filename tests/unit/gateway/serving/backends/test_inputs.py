from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputError
from gateway.serving.backends.inputs import (
    ColumnInput,
    TensorInput,
    coerce_columns,
    coerce_tensor,
    summarize,
    synthetic_input,
)

SPEC = TensorInput(shape=(-1, 3), dtype=np.dtype(np.float32))


def test_valid_batch_is_converted_to_the_signature_dtype() -> None:
    arr = coerce_tensor([[1, 2, 3], [4.5, 5, 6]], SPEC, max_batch=10)
    assert arr.dtype == np.float32 and arr.shape == (2, 3)


@pytest.mark.parametrize(("inputs", "message"), [
    ([[1, 2]], "expected shape (N, 3), got (1, 2)"),
    ([1, 2, 3], "expected shape (N, 3), got (3)"),
    ([["a", "b", "c"]], "expected numbers"),
    ([[1, 2, 3], [1]], "ragged"),
    ({"a": 1}, "expected a list"),
    ([[float("nan"), 1, 1]], "NaN"),
    ([], "expected shape"),
    ([[True, False, True]], "expected numbers"),
])
def test_bad_tensor_inputs_name_the_problem(inputs: object, message: str) -> None:
    with pytest.raises(InputError) as err:
        coerce_tensor(inputs, SPEC, max_batch=10)
    assert message in str(err.value)
    assert err.value.status == 422


def test_batch_limit() -> None:
    with pytest.raises(InputError, match="exceeds the limit of 2"):
        coerce_tensor([[1, 2, 3]] * 3, SPEC, max_batch=2)


def test_integer_signature_rejects_floats() -> None:
    spec = TensorInput(shape=(-1,), dtype=np.dtype(np.int64))
    with pytest.raises(InputError, match="expected integers"):
        coerce_tensor([1.5, 2.0], spec, max_batch=10)


def test_columns() -> None:
    spec = ColumnInput(names=("age", "city"), dtypes=(np.dtype(np.float64), np.dtype(object)))
    assert coerce_columns({"age": 3, "city": "x"}, spec, 10) == [{"age": 3, "city": "x"}]
    with pytest.raises(InputError, match=r"inputs\[0\].city: missing column"):
        coerce_columns([{"age": 3}], spec, 10)
    with pytest.raises(InputError, match=r"inputs\[1\].age: expected a number"):
        coerce_columns([{"age": 3, "city": "x"}, {"age": "old", "city": "y"}], spec, 10)


def test_synthetic_input_fits_its_spec_and_summaries() -> None:
    sample = synthetic_input(SPEC)
    assert coerce_tensor(sample.tolist(), SPEC, 1).shape == (1, 3)
    assert synthetic_input(None) is None
    assert summarize([[1.0, 3.0]]) == 2.0
    assert summarize(["a"]) is None
