"""The one error hierarchy of champion-gateway.

Every error a user can cause names the field, input, model, alias or version at fault.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error raised on purpose by champion-gateway."""


class ConfigError(GatewayError):
    """A configuration value is missing or wrong; the message names the dotted field path."""


class InputError(GatewayError):
    """A client request is malformed. Never counted against a model.

    `status` is the HTTP status the ingress answers with (400, 413 or 422).
    """

    def __init__(self, message: str, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class ModelLoadError(GatewayError):
    """A model version could not be loaded or failed its health check."""
