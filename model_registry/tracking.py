"""Where the registry lives: tracking URI resolution and the embedded SQLite store.

No MLflow import at module level (MLflow takes seconds to import); `ensure_local_store`
imports it only when it has to create a database.
"""

from __future__ import annotations

import os
from pathlib import Path

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
GATEWAY_DIR = ".gateway"
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlruns"
_SQLITE_PREFIX = "sqlite:///"


def default_tracking_uri(cwd: Path | None = None) -> str:
    """The embedded store `sqlite:///<cwd>/.gateway/mlflow.db`; creates `.gateway/`."""
    gateway_dir = (cwd or Path.cwd()).resolve() / GATEWAY_DIR
    gateway_dir.mkdir(parents=True, exist_ok=True)
    return f"{_SQLITE_PREFIX}{gateway_dir / DB_FILE}"


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The explicit URI, else env `MLFLOW_TRACKING_URI`, else the embedded default."""
    if explicit:
        return explicit
    from_env = os.environ.get(TRACKING_URI_ENV, "").strip()
    return from_env or default_tracking_uri()


def is_http_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI; None for other URIs and in-memory databases."""
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    raw = uri[len(_SQLITE_PREFIX):].split("?", 1)[0]
    if raw in ("", ":memory:"):
        return None
    return Path(raw)


def artifact_root_for(uri: str) -> str | None:
    """Artifact root kept next to a SQLite database (`<db dir>/mlruns`); None otherwise.

    For the embedded default this is `.gateway/mlruns`, so nothing lands in `./mlruns`.
    """
    path = sqlite_path(uri)
    return None if path is None else str(path.resolve().parent / ARTIFACTS_DIR)


def ensure_local_store(uri: str) -> None:
    """Create a SQLite store whose Default experiment keeps artifacts next to the database.

    MlflowClient cannot be given an artifact root, and would create a fresh database with
    the Default experiment pointing at `<cwd>/mlruns`. Creating the database first with
    MLflow's own SqlAlchemyStore and our root fixes that location for good. A database that
    already exists is left alone.
    """
    path = sqlite_path(uri)
    root = artifact_root_for(uri)
    if path is None or root is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, root)
