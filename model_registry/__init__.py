"""MLflow model registry access: champion/challenger aliases, versions, tags, alias history.

A library: it may import `core` and nothing else of the project. Importing this package
stays light (no MLflow import: it exports the refs, errors and tracking-URI helpers below);
the registry itself lives in `model_registry.registry` (`from model_registry.registry
import ModelRegistry`), test helpers in `model_registry.testing`.
"""

from model_registry.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    RegistryError,
    RegistryUnavailableError,
    VersionNotFoundError,
)
from model_registry.history import AliasEvent
from model_registry.refs import CHALLENGER, CHAMPION, KNOWN_ALIASES, PREVIOUS_CHAMPION, ModelRef
from model_registry.tracking import default_tracking_uri, resolve_tracking_uri

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "KNOWN_ALIASES",
    "PREVIOUS_CHAMPION",
    "AliasEvent",
    "AliasNotFoundError",
    "ModelNotFoundError",
    "ModelRef",
    "RegistryError",
    "RegistryUnavailableError",
    "VersionNotFoundError",
    "default_tracking_uri",
    "resolve_tracking_uri",
]
