"""Turn a model URI into the (storage source, run id, logged-model id) a version records.

MLflow's own `mlflow.register_model` does this with a global `MlflowClient()` (the process's
tracking URI), and its SQL store resolves `models:/<model_id>` sources the same way. We
resolve with our own client and hand MLflow a concrete storage location instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from mlflow import MlflowClient
from mlflow.entities import LoggedModel

_MLMODEL = "MLmodel"


@dataclass(frozen=True)
class VersionSource:
    source: str
    run_id: str | None
    model_id: str | None


def resolve_source(client: MlflowClient, model_uri: str) -> VersionSource:
    """Storage source of `runs:/<run>/<path>`, `models:/<model_id>`, `models:/<name>/<ver>`;
    any other URI or path is recorded as given."""
    scheme = urlsplit(model_uri).scheme
    if scheme == "runs":
        return _from_run(client, model_uri)
    if scheme == "models":
        parts = [p for p in model_uri[len("models:"):].split("/") if p]
        if len(parts) == 1:
            return _from_logged_model(client.get_logged_model(parts[0]))
        if len(parts) == 2:
            name, version = parts
            mv = client.get_model_version(name, version)
            source = client.get_model_version_download_uri(name, version)
            return VersionSource(source, mv.run_id, getattr(mv, "model_id", None))
        raise ValueError(f"model URI {model_uri!r}: expected models:/<model_id> or "
                         "models:/<name>/<version>")
    return VersionSource(model_uri, None, None)


def _from_logged_model(model: LoggedModel) -> VersionSource:
    # Without a run id MLflow's SQL store would look the model id up through the global
    # client; the model id is lineage only, so it is dropped rather than risk that.
    model_id = model.model_id if model.source_run_id else None
    return VersionSource(model.artifact_location, model.source_run_id, model_id)


def _from_run(client: MlflowClient, model_uri: str) -> VersionSource:
    path = urlsplit(model_uri).path.lstrip("/")
    run_id, _, artifact_path = path.partition("/")
    if not run_id or not artifact_path:
        raise ValueError(f"model URI {model_uri!r}: expected runs:/<run_id>/<artifact_path>")
    run = client.get_run(run_id)
    # MLflow 3 logs models as LoggedModels (artifacts outside the run); prefer the newest one
    # with this name from this run, as mlflow.register_model does.
    logged = [m for m in client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"name = '{artifact_path}'")
        if m.source_run_id == run_id]
    if logged:
        return _from_logged_model(max(logged, key=lambda m: m.creation_timestamp))
    names = {f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(run_id, artifact_path)}
    if _MLMODEL not in names:
        raise ValueError(f"model URI {model_uri!r}: run {run_id} has no model at "
                         f"{artifact_path!r}")
    return VersionSource(f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}", run_id, None)
