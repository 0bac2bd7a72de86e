"""MLflow experiments and the global tracking URI, for code that logs runs or models
(the rollout run, model registration by the CLI and the demo). Imports MLflow."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow import MlflowClient

from model_registry.tracking import TRACKING_URI_ENV, artifact_root_for, ensure_local_store

DEFAULT_EXPERIMENT = "champion-gateway"


@contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking URI at `uri` for the block, then restore it (and the
    `MLFLOW_TRACKING_URI` variable, which `mlflow.set_tracking_uri` overwrites)."""
    saved_env = os.environ.get(TRACKING_URI_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        if saved_env is not None:
            os.environ[TRACKING_URI_ENV] = saved_env


def ensure_experiment(tracking_uri: str, name: str = DEFAULT_EXPERIMENT) -> str:
    """The id of experiment `name`, created if missing; for SQLite stores its artifacts go
    next to the database (like the Default experiment's, see `ensure_local_store`)."""
    ensure_local_store(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    root = artifact_root_for(tracking_uri)
    location = None if root is None else f"{root}/{name}"
    return str(client.create_experiment(name, artifact_location=location))
