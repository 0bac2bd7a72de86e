"""Errors of the model registry. Each names the model, alias, version and tracking URI at fault.

Light on purpose (no MLflow import), so callers can catch these without loading MLflow.
"""

from __future__ import annotations

from core.errors import GatewayError
from core.redact import redact_url


def redact_uri(uri: str) -> str:
    """The URI without a password, so it can go into messages and logs (its query, which
    names no secret in a tracking URI, stays)."""
    return redact_url(uri, keep_query=True)


class RegistryError(GatewayError):
    """A registry operation failed. Attributes say which model/alias/version and where."""

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        tracking_uri: str | None = None,
        alias: str | None = None,
        version: str | None = None,
    ) -> None:
        if tracking_uri is not None:
            message = f"{message} (tracking URI {redact_uri(tracking_uri)!r})"
        super().__init__(message)
        self.model = model
        self.tracking_uri = tracking_uri
        self.alias = alias
        self.version = version


class ModelNotFoundError(RegistryError):
    """The registered model does not exist."""


class AliasNotFoundError(RegistryError):
    """The alias is not set on the registered model."""


class VersionNotFoundError(RegistryError):
    """The model version does not exist (or is not a valid version number)."""


class RegistryUnavailableError(RegistryError):
    """The tracking server or database cannot be reached."""
