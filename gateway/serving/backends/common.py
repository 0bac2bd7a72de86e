"""Pieces shared by the MLflow-backed backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from core.errors import ModelLoadError
from gateway.serving.backends.base import NothingToCheck
from model_registry.refs import ModelRef

# Where a health-check input came from, for the error message.
FROM_SIGNATURE = "a synthetic input from its signature"
FROM_EXAMPLE = "its logged input example"
FROM_PROMPT = "a short prompt"


def load_pyfunc(ref: ModelRef) -> Any:
    """`mlflow.pyfunc.load_model` of the version, a ModelLoadError naming it when that fails."""
    import mlflow.pyfunc

    try:
        return mlflow.pyfunc.load_model(ref.uri)
    except Exception as exc:
        raise ModelLoadError(f"model {ref.name} version {ref.version}: cannot load "
                             f"{ref.uri}: {exc}") from exc


def load_signature(ref: ModelRef) -> Any:
    """The MLflow signature of an immutable model version (None when it has none)."""
    import mlflow.models

    try:
        return mlflow.models.get_model_info(ref.uri).signature
    except Exception as exc:
        raise ModelLoadError(f"model {ref.name} version {ref.version}: cannot read its "
                             f"MLflow metadata from {ref.uri}: {exc}") from exc


def load_input_example(ref: ModelRef, meta: Any = None) -> Any:
    """The input example logged with the version, as MLflow reads it back (`input_example.json`
    per `MLmodel`'s `saved_input_example_info`: an ndarray, DataFrame, dict...); None when it
    was logged without one. `meta`: the version's already loaded `mlflow.models.Model`."""
    from mlflow.models import Model

    try:
        model = meta if meta is not None else Model.load(ref.uri)
        if not model.saved_input_example_info:
            return None
        return model.load_input_example(ref.uri)
    except Exception as exc:
        raise ModelLoadError(f"model {ref.name} version {ref.version}: cannot read its "
                             f"input example from {ref.uri}: {exc}") from exc


def nothing_to_check(ref: ModelRef) -> NothingToCheck:
    return NothingToCheck(
        f"model {ref.name} version {ref.version} has neither a signature nor an input example "
        "to health-check it; log one, or set slots.health_check: allow_unchecked "
        "(gateway.yaml) to serve it unchecked")


def run_health_check(ref: ModelRef, source: str, call: Callable[[], Any]) -> None:
    """One health-check inference (`source` says on what input): a ModelLoadError naming the
    version when the model raises or answers non-finite numbers (a `call` that checks its
    own answer returns None)."""
    try:
        outputs = call()
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"model {ref.name} version {ref.version}: health check on "
                             f"{source} failed: {type(exc).__name__}: {exc}") from exc
    if outputs is not None:
        check_finite(to_jsonable(outputs), ref)


def flavors(ref: ModelRef) -> dict[str, Any]:
    """The MLflow flavours a model version was logged with."""
    import mlflow.models

    try:
        return dict(mlflow.models.get_model_info(ref.uri).flavors)
    except Exception as exc:
        raise ModelLoadError(f"model {ref.name} version {ref.version}: cannot read its "
                             f"MLflow metadata from {ref.uri}: {exc}") from exc


def model_metadata(ref: ModelRef) -> dict[str, Any]:
    """The free-form `metadata` of a version's MLmodel file ({} when it has none)."""
    import mlflow.models

    try:
        return dict(mlflow.models.get_model_info(ref.uri).metadata or {})
    except Exception as exc:
        raise ModelLoadError(f"model {ref.name} version {ref.version}: cannot read its "
                             f"MLflow metadata from {ref.uri}: {exc}") from exc


def to_jsonable(value: Any) -> Any:
    """numpy / pandas / torch outputs -> plain JSON types."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a pandas DataFrame
        if len(value.columns) == 1:
            return to_jsonable(value.iloc[:, 0].to_numpy())
        return value.to_dict(orient="records")
    if hasattr(value, "to_numpy"):  # a pandas Series
        value = value.to_numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def check_finite(outputs: Any, ref: ModelRef | None) -> None:
    """Raise ModelLoadError if a health-check output is not finite numbers."""
    try:
        arr = np.asarray(outputs, dtype=np.float64)
    except (TypeError, ValueError):
        return  # non-numeric outputs (text, records) have nothing to check here
    if not np.isfinite(arr).all():
        where = f"model {ref.name} version {ref.version}" if ref else "model"
        raise ModelLoadError(f"{where}: health check produced non-finite outputs")
