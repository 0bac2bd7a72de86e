"""Tracking URI resolution and the embedded SQLite location (no MLflow server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_registry.tracking import (
    TRACKING_URI_ENV,
    artifact_root_for,
    default_tracking_uri,
    is_http_uri,
    resolve_tracking_uri,
    sqlite_path,
)


def test_default_is_sqlite_under_dot_gateway_of_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri()
    assert uri == f"sqlite:///{tmp_path.resolve()}/.gateway/mlflow.db"
    assert (tmp_path / ".gateway").is_dir()
    assert artifact_root_for(uri) == str(tmp_path.resolve() / ".gateway" / "mlruns")


def test_explicit_uri_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRACKING_URI_ENV, "http://from-env:5000")
    assert resolve_tracking_uri("http://explicit:5000") == "http://explicit:5000"


def test_env_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRACKING_URI_ENV, "http://from-env:5000")
    assert resolve_tracking_uri(None) == "http://from-env:5000"


def test_default_when_neither(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(None) == default_tracking_uri()


@pytest.mark.parametrize("uri,path", [
    ("sqlite:////abs/db.sqlite", Path("/abs/db.sqlite")),
    ("sqlite:///rel.db?timeout=5", Path("rel.db")),
    ("sqlite:///:memory:", None),
    ("http://host:5000", None),
    ("postgresql://h/db", None),
])
def test_sqlite_path(uri: str, path: Path | None) -> None:
    assert sqlite_path(uri) == path


def test_artifact_root_only_for_sqlite() -> None:
    assert artifact_root_for("sqlite:////data/x/mlflow.db") == "/data/x/mlruns"
    assert artifact_root_for("http://host:5000") is None


@pytest.mark.parametrize("uri,expected", [
    ("http://h:1", True), ("https://h", True), ("sqlite:///x.db", False), ("databricks", False)])
def test_is_http_uri(uri: str, expected: bool) -> None:
    assert is_http_uri(uri) is expected
