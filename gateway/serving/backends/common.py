"""Pieces shared by the MLflow-backed backends."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import ModelLoadError
from model_registry.refs import ModelRef


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
