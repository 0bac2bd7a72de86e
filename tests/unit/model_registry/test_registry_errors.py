"""Error hierarchy and the translation of real MLflow exceptions."""

from __future__ import annotations

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)

from core.errors import GatewayError
from model_registry.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    RegistryError,
    RegistryUnavailableError,
    VersionNotFoundError,
    redact_uri,
)
from model_registry.mlflow_errors import ErrorContext, translate

CTX = ErrorContext(model="fraud", tracking_uri="http://h:5000", alias="champion", version="4")


@pytest.mark.parametrize("cls", [AliasNotFoundError, ModelNotFoundError,
                                 VersionNotFoundError, RegistryUnavailableError])
def test_every_error_is_a_registry_and_gateway_error(cls: type[RegistryError]) -> None:
    assert issubclass(cls, RegistryError)
    assert issubclass(cls, GatewayError)


def test_message_names_the_tracking_uri_without_password() -> None:
    err = RegistryError("boom", model="m", tracking_uri="https://bob:s3cret@host:443/ml")
    assert "s3cret" not in str(err)
    assert "https://bob:***@host:443/ml" in str(err)
    assert err.tracking_uri == "https://bob:s3cret@host:443/ml"  # attribute kept intact


def test_redact_leaves_uris_without_password_alone() -> None:
    assert redact_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


@pytest.mark.parametrize("exc", [
    MlflowException("API request to http://h:5000/api/2.0/x failed with exception refused"),
    MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE),
    requests.exceptions.ConnectionError("refused"),
])
def test_transport_failures_are_unavailable(exc: Exception) -> None:
    err = translate(exc, CTX, model_exists=lambda: True)
    assert isinstance(err, RegistryUnavailableError)
    assert "'fraud'" in str(err) and "'champion'" in str(err) and "http://h:5000" in str(err)


def test_not_found_with_existing_model_is_a_missing_version() -> None:
    exc = MlflowException("Model Version not found", error_code=RESOURCE_DOES_NOT_EXIST)
    err = translate(exc, CTX, model_exists=lambda: True)
    assert isinstance(err, VersionNotFoundError)
    assert "'4'" in str(err) and "'fraud'" in str(err)


def test_not_found_with_missing_model_is_a_missing_model() -> None:
    exc = MlflowException("Registered Model not found", error_code=RESOURCE_DOES_NOT_EXIST)
    err = translate(exc, CTX, model_exists=lambda: False)
    assert type(err) is ModelNotFoundError
    assert "'fraud'" in str(err)


def test_other_errors_stay_generic_and_keep_mlflows_reason() -> None:
    exc = MlflowException("Invalid alias name: 'a b'", error_code=INVALID_PARAMETER_VALUE)
    err = translate(exc, CTX, model_exists=lambda: True)
    assert type(err) is RegistryError
    assert "Invalid alias name" in str(err) and "'champion'" in str(err)
