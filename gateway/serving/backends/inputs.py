"""Turn JSON `inputs` into what a model expects, per its MLflow signature.

Every mismatch is an `InputError` (HTTP 422) naming what is wrong, raised before the model
runs, so bad input never counts against a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import InputError


@dataclass(frozen=True)
class TensorInput:
    """A tensor-based signature: shape with -1 for free dimensions, and a numpy dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class ColumnInput:
    """A column-based signature: named columns, each with a numpy dtype (None: any)."""

    names: tuple[str, ...]
    dtypes: tuple[np.dtype[Any] | None, ...]


InputSpec = TensorInput | ColumnInput | None


def spec_from_signature(signature: Any) -> InputSpec:
    """Read an MLflow ModelSignature's input schema (None when the model has none)."""
    schema = getattr(signature, "inputs", None)
    if schema is None:
        return None
    if schema.is_tensor_spec():
        first = schema.inputs[0]
        return TensorInput(shape=tuple(int(d) for d in first.shape), dtype=np.dtype(first.type))
    names = tuple(str(n) for n in schema.input_names())
    dtypes: list[np.dtype[Any] | None] = []
    for col in schema.inputs:
        try:
            dtypes.append(np.dtype(col.type.to_numpy()))
        except Exception:  # Array/Object/Map columns have no numpy dtype; accept any.
            dtypes.append(None)
    return ColumnInput(names=names, dtypes=tuple(dtypes))


def coerce_tensor(inputs: Any, spec: TensorInput, max_batch: int) -> np.ndarray[Any, Any]:
    """JSON nested lists -> a numpy array matching `spec`, or an InputError saying why not."""
    if not isinstance(inputs, list):
        raise InputError(f"inputs: expected a list (batch) of shape {_fmt(spec.shape)}, "
                         f"got {type(inputs).__name__}", field="inputs")
    try:
        arr = np.asarray(inputs)
    except ValueError:
        raise InputError("inputs: ragged nested lists; every row must have the same length",
                         field="inputs") from None
    if arr.dtype == object:
        raise InputError("inputs: ragged nested lists or mixed types", field="inputs")
    _check_dtype(arr, spec.dtype)
    _check_shape(arr.shape, spec.shape)
    if arr.shape and arr.shape[0] > max_batch:
        raise InputError(f"inputs: batch of {arr.shape[0]} rows exceeds the limit of {max_batch}",
                         field="inputs")
    out = arr.astype(spec.dtype, copy=False)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise InputError("inputs: NaN or infinite values are not accepted", field="inputs")
    return out


def coerce_columns(inputs: Any, spec: ColumnInput, max_batch: int) -> list[dict[str, Any]]:
    """JSON records (or one record) -> validated records with every required column."""
    records = [inputs] if isinstance(inputs, dict) else inputs
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"inputs: expected a list of records with columns {list(spec.names)}",
                         field="inputs")
    if not records:
        raise InputError("inputs: empty batch", field="inputs")
    if len(records) > max_batch:
        raise InputError(f"inputs: batch of {len(records)} rows exceeds the limit of {max_batch}",
                         field="inputs")
    for i, rec in enumerate(records):
        for name, dtype in zip(spec.names, spec.dtypes, strict=True):
            if name not in rec:
                raise InputError(f"inputs[{i}].{name}: missing column", field=f"inputs[{i}]")
            if dtype is not None:
                _check_scalar(rec[name], dtype, f"inputs[{i}].{name}")
    return records


def _check_dtype(arr: np.ndarray[Any, Any], want: np.dtype[Any]) -> None:
    kind = arr.dtype.kind
    if want.kind == "f" and kind not in "iuf":
        raise InputError(f"inputs: expected numbers (dtype {want}), got {_kind_name(kind)}",
                         field="inputs")
    if want.kind in "iu" and kind not in "iu":
        raise InputError(f"inputs: expected integers (dtype {want}), got {_kind_name(kind)}",
                         field="inputs")
    if want.kind in "US" and kind not in "US":
        raise InputError(f"inputs: expected strings, got {_kind_name(kind)}", field="inputs")
    if want.kind == "b" and kind != "b":
        raise InputError(f"inputs: expected booleans, got {_kind_name(kind)}", field="inputs")


def _check_shape(got: tuple[int, ...], want: tuple[int, ...]) -> None:
    ok = len(got) == len(want) and all(w == -1 or g == w for g, w in zip(got, want, strict=True))
    if not ok or (got and got[0] == 0):
        raise InputError(f"inputs: expected shape {_fmt(want)}, got {_fmt(got)}", field="inputs")


def _check_scalar(value: Any, want: np.dtype[Any], path: str) -> None:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if want.kind == "f" and not numeric:
        raise InputError(f"{path}: expected a number, got {type(value).__name__}", field=path)
    if want.kind == "f" and not math.isfinite(float(value)):
        raise InputError(f"{path}: NaN or infinite values are not accepted", field=path)
    if want.kind in "iu" and (not isinstance(value, int) or isinstance(value, bool)):
        raise InputError(f"{path}: expected an integer, got {type(value).__name__}", field=path)
    if want.kind in "USO" and not isinstance(value, str):
        raise InputError(f"{path}: expected a string, got {type(value).__name__}", field=path)
    if want.kind == "b" and not isinstance(value, bool):
        raise InputError(f"{path}: expected true or false, got {type(value).__name__}", field=path)


def _kind_name(kind: str) -> str:
    return {"U": "strings", "S": "bytes", "b": "booleans", "f": "floats", "i": "integers",
            "u": "integers"}.get(kind, "values of another type")


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join("N" if d == -1 else str(d) for d in shape) + ")"


def summarize(values: Any) -> float | None:
    """Mean of a numeric array-like (a cheap scalar for drift histograms); None if not numeric."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.size == 0:
        return None
    mean = float(arr.mean())
    return mean if math.isfinite(mean) else None


def synthetic_input(spec: InputSpec) -> Any:
    """A one-row input that fits `spec`, for health checks."""
    if isinstance(spec, TensorInput):
        shape = tuple(1 if d == -1 else d for d in spec.shape)
        return np.zeros(shape, dtype=spec.dtype)
    if isinstance(spec, ColumnInput):
        row: dict[str, Any] = {}
        for name, dtype in zip(spec.names, spec.dtypes, strict=True):
            kind = dtype.kind if dtype is not None else "f"
            row[name] = "" if kind in "USO" else (False if kind == "b" else 0)
        return [row]
    return None
