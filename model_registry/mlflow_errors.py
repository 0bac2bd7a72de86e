"""Translate MLflow's exceptions into RegistryError subclasses that name what is at fault."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import requests
from mlflow.exceptions import MlflowException

from model_registry.errors import (
    ModelNotFoundError,
    RegistryError,
    RegistryUnavailableError,
    VersionNotFoundError,
)

NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
INVALID_PARAMETER = "INVALID_PARAMETER_VALUE"
ALREADY_EXISTS = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"})
# OperationalError of the SQL stores (locked/unopenable database) arrives as this code.
_UNAVAILABLE_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"})


@dataclass(frozen=True)
class ErrorContext:
    """What an operation was about, for the message of the error it raises."""

    model: str
    tracking_uri: str
    alias: str | None = None
    version: str | None = None


def error_code(exc: BaseException) -> str | None:
    return exc.error_code if isinstance(exc, MlflowException) else None


def is_unavailable(exc: BaseException) -> bool:
    """True when the store could not be reached (as opposed to answering with an error)."""
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    if not isinstance(exc, MlflowException):
        return False
    if exc.error_code in _UNAVAILABLE_CODES:
        return True
    # MLflow wraps transport failures (refused, reset, timeout, retries exhausted) as
    # "API request to <url> failed with ..." under a generic code.
    message = str(exc.message)
    return message.startswith("API request to") and " failed with " in message


def translate(
    exc: BaseException, ctx: ErrorContext, model_exists: Callable[[], bool]
) -> RegistryError:
    """The RegistryError for `exc`. `model_exists` is asked only to tell a missing model
    from a missing version (MLflow reports both as RESOURCE_DOES_NOT_EXIST)."""
    where = {"model": ctx.model, "tracking_uri": ctx.tracking_uri, "alias": ctx.alias,
             "version": ctx.version}
    detail = f"{type(exc).__name__}: {exc}"
    subject = f"model {ctx.model!r}"
    if ctx.alias is not None:
        subject += f", alias {ctx.alias!r}"
    if ctx.version is not None:
        subject += f", version {ctx.version!r}"
    if is_unavailable(exc):
        return RegistryUnavailableError(f"model registry unavailable ({subject}): {detail}",
                                        **where)
    if error_code(exc) == NOT_FOUND:
        if ctx.version is None or not model_exists():
            return ModelNotFoundError(f"registered model {ctx.model!r} not found", **where)
        return VersionNotFoundError(
            f"version {ctx.version!r} of registered model {ctx.model!r} not found", **where)
    return RegistryError(f"registry operation failed ({subject}): {detail}", **where)
