"""MLflow prints a finished run's link built from the tracking URI as given: with
credentials in the URI the rollout run turns that print off (the supervisor's stdout is a
Ray log file)."""

from __future__ import annotations

import pytest

from gateway.control.rollout_run import SUPPRESS_RUN_LINKS_ENV, quiet_run_links


@pytest.mark.parametrize("uri", ["http://gw:s3cret@mlflow:5000", "https://token@mlflow",
                                 "postgresql://user:pw@db/mlflow"])
def test_credentials_in_the_uri_turn_run_links_off(
        uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT

    monkeypatch.delenv(SUPPRESS_RUN_LINKS_ENV, raising=False)
    assert MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get() is False
    quiet_run_links(uri)
    assert MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get() is True


@pytest.mark.parametrize("uri", ["http://mlflow:5000", "sqlite:////tmp/mlflow.db",
                                 "databricks"])
def test_uris_without_credentials_keep_run_links(
        uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SUPPRESS_RUN_LINKS_ENV, raising=False)
    quiet_run_links(uri)
    assert SUPPRESS_RUN_LINKS_ENV not in __import__("os").environ
