"""ModelRegistry: champion/challenger aliases, versions and tags of one registered model.

MLflow's aliases are the source of truth for which version is champion, challenger and
previous-champion. Reads return immutable `ModelRef`s (a version, never an alias), so moving
an alias never changes what a running slot serves.

Global MLflow state: none is touched, except that for HTTP tracking URIs MLflow's HTTP retry
and timeout defaults are lowered process-wide where unset (see `connectivity`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from model_registry import history
from model_registry.connectivity import (
    DEFAULT_PROBE_TIMEOUT_S,
    apply_fast_fail_defaults,
    probe_http,
)
from model_registry.errors import (
    AliasNotFoundError,
    RegistryError,
    VersionNotFoundError,
    redact_uri,
)
from model_registry.history import DEFAULT_HISTORY_LIMIT, AliasEvent
from model_registry.mlflow_errors import (
    ALREADY_EXISTS,
    INVALID_PARAMETER,
    NOT_FOUND,
    ErrorContext,
    error_code,
    is_unavailable,
    translate,
)
from model_registry.refs import ModelRef
from model_registry.sources import VersionSource, resolve_source
from model_registry.tracking import (
    default_tracking_uri,
    ensure_local_store,
    is_http_uri,
    resolve_tracking_uri,
)

__all__ = ["ModelRegistry", "default_tracking_uri", "resolve_tracking_uri"]

_READY = "READY"
_PENDING = "PENDING_REGISTRATION"
DEFAULT_REGISTER_TIMEOUT_S = 300.0


class ModelRegistry:
    """One registered model in MLflow, seen through the gateway's needs.

    Contract: every method raises a `RegistryError` subclass (never an MLflow exception) that
    names the model, alias or version at fault and the tracking URI: `ModelNotFoundError`,
    `AliasNotFoundError`, `VersionNotFoundError`, `RegistryUnavailableError`. Versions are
    given and returned as strings of positive integers (ints are accepted).
    """

    def __init__(
        self,
        model_name: str,
        tracking_uri: str | None = None,
        *,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
    ) -> None:
        if not model_name or not model_name.strip():
            raise RegistryError("model name must be a non-empty string")
        if history_limit < 1:
            raise RegistryError(f"history_limit must be >= 1, got {history_limit}")
        self.model_name = model_name
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.history_limit = history_limit
        if is_http_uri(self.tracking_uri):
            apply_fast_fail_defaults()
            probe_http(self.tracking_uri, model_name, probe_timeout_s)
        with self._errors():
            ensure_local_store(self.tracking_uri)
            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def __repr__(self) -> str:
        uri = redact_uri(self.tracking_uri)
        return f"ModelRegistry(model_name={self.model_name!r}, tracking_uri={uri!r})"

    # ---- aliases -------------------------------------------------------------------------

    def resolve(self, alias: str) -> ModelRef:
        """The version `alias` points at. AliasNotFoundError when the alias is unset."""
        mv = self._version_by_alias(alias)
        if mv is None:
            raise AliasNotFoundError(
                f"alias {alias!r} is not set on registered model {self.model_name!r}",
                model=self.model_name, tracking_uri=self.tracking_uri, alias=alias)
        return self._to_ref(mv)

    def alias_version(self, alias: str) -> str | None:
        """The version `alias` points at, or None when unset. One cheap call (for polling)."""
        mv = self._version_by_alias(alias)
        return None if mv is None else str(mv.version)

    def aliases(self) -> dict[str, str]:
        """Every alias of the model and the version it points at."""
        return self._snapshot()[0]

    def set_alias(
        self, alias: str, version: str | int, *, actor: str = "gateway", reason: str = ""
    ) -> str | None:
        """Point `alias` at `version`; record the change; return the version it pointed at."""
        version = self._check_version(version)
        aliases, tags = self._snapshot()
        previous = aliases.get(alias)
        with self._errors(alias=alias, version=version):
            self._client.set_registered_model_alias(self.model_name, alias, version)
        self._record(tags, alias, version, previous, actor, reason)
        return previous

    def delete_alias(
        self, alias: str, *, actor: str = "gateway", reason: str = "", missing_ok: bool = True
    ) -> str | None:
        """Remove `alias`; record the change; return the version it pointed at.

        An unset alias is a no-op returning None (nothing is recorded), or AliasNotFoundError
        when `missing_ok` is False.
        """
        aliases, tags = self._snapshot()
        previous = aliases.get(alias)
        if previous is None:
            if missing_ok:
                return None
            raise AliasNotFoundError(
                f"cannot delete alias {alias!r}: not set on registered model "
                f"{self.model_name!r}", model=self.model_name, tracking_uri=self.tracking_uri,
                alias=alias)
        with self._errors(alias=alias):
            self._client.delete_registered_model_alias(self.model_name, alias)
        self._record(tags, alias, None, previous, actor, reason)
        return previous

    def alias_history(self, alias: str | None = None) -> list[AliasEvent]:
        """Recorded alias changes, oldest first (the last `history_limit` of them)."""
        return history.events_from_tags(self._raw_model_tags(), alias)

    # ---- versions ------------------------------------------------------------------------

    def get_version(self, version: str | int) -> ModelRef:
        version = self._check_version(version)
        with self._errors(version=version):
            mv = self._client.get_model_version(self.model_name, version)
        return self._to_ref(mv)

    def versions(self) -> list[ModelRef]:
        """Every version of the model, oldest first."""
        self._raw_model_tags()  # raises ModelNotFoundError for a missing model
        with self._errors():
            found = self._client.search_model_versions(f"name = '{self._quoted_name()}'")
        return sorted((self._to_ref(mv) for mv in found), key=lambda r: int(r.version))

    def ensure_registered_model(self) -> bool:
        """Create the registered model if missing; True when this call created it."""
        try:
            self._client.create_registered_model(self.model_name)
        except Exception as exc:
            if error_code(exc) in ALREADY_EXISTS:
                return False
            raise self._translate(exc, ErrorContext(self.model_name, self.tracking_uri)) from exc
        return True

    def register(
        self,
        model_uri: str,
        *,
        tags: dict[str, str] | None = None,
        timeout_s: float = DEFAULT_REGISTER_TIMEOUT_S,
    ) -> ModelRef:
        """Register a logged model (`runs:/<run>/<path>`, `models:/<model_id>`, ...) as a new
        version, creating the registered model if missing; returns once it is READY."""
        self.ensure_registered_model()
        src = self._resolve_source(model_uri)
        with self._errors():
            mv = self._client.create_model_version(
                self.model_name, src.source, run_id=src.run_id, tags=tags,
                await_creation_for=0, model_id=src.model_id)
        return self._to_ref(self._await_ready(str(mv.version), timeout_s))

    # ---- tags ----------------------------------------------------------------------------

    def get_version_tags(self, version: str | int) -> dict[str, str]:
        version = self._check_version(version)
        with self._errors(version=version):
            mv = self._client.get_model_version(self.model_name, version)
        return {str(k): str(v) for k, v in dict(mv.tags or {}).items()}

    def set_version_tag(self, version: str | int, key: str, value: str) -> None:
        version = self._check_version(version)
        with self._errors(version=version):
            self._client.set_model_version_tag(self.model_name, version, key, str(value))

    def get_model_tags(self) -> dict[str, str]:
        """The registered model's tags, without the internal alias-history tags."""
        return {k: v for k, v in self._raw_model_tags().items() if not history.is_history_key(k)}

    def set_model_tag(self, key: str, value: str) -> None:
        self._reject_reserved(key)
        with self._errors():
            self._client.set_registered_model_tag(self.model_name, key, str(value))

    def delete_model_tag(self, key: str) -> None:
        """Delete a model tag; deleting a tag that is not there is a no-op."""
        self._reject_reserved(key)
        if key not in self._raw_model_tags():
            return
        with self._errors():
            self._client.delete_registered_model_tag(self.model_name, key)

    # ---- internals -----------------------------------------------------------------------

    def _version_by_alias(self, alias: str) -> ModelVersion | None:
        try:
            return self._client.get_model_version_by_alias(self.model_name, alias)
        except Exception as exc:
            # MLflow answers an unset alias with INVALID_PARAMETER_VALUE and a missing model
            # with RESOURCE_DOES_NOT_EXIST (SQL, file and REST stores alike).
            if error_code(exc) == INVALID_PARAMETER:
                return None
            raise self._translate(exc, ErrorContext(
                self.model_name, self.tracking_uri, alias=alias)) from exc

    def _resolve_source(self, model_uri: str) -> VersionSource:
        try:
            return resolve_source(self._client, model_uri)
        except Exception as exc:
            if is_unavailable(exc):
                ctx = ErrorContext(self.model_name, self.tracking_uri)
                raise self._translate(exc, ctx) from exc
            # A missing run or logged model is about the URI, not about our registered model.
            raise RegistryError(
                f"cannot register {model_uri!r} as a version of {self.model_name!r}: "
                f"{type(exc).__name__}: {exc}", model=self.model_name,
                tracking_uri=self.tracking_uri) from exc

    def _raw_model_tags(self) -> dict[str, str]:
        return self._snapshot()[1]

    def _snapshot(self) -> tuple[dict[str, str], dict[str, str]]:
        """(aliases, raw tags) of the registered model, from one call."""
        with self._errors():
            model = self._client.get_registered_model(self.model_name)
        aliases = {str(k): str(v) for k, v in dict(model.aliases or {}).items()}
        return aliases, {str(k): str(v) for k, v in dict(model.tags or {}).items()}

    def _record(
        self, tags: dict[str, str], alias: str, version: str | None, previous: str | None,
        actor: str, reason: str,
    ) -> None:
        """Append one event after the tags read in `tags`, then drop the oldest beyond limit.

        Read-then-write: correct for one writer at a time (the supervisor, or an operator);
        two simultaneous writers could reuse a sequence number and lose one event.
        """
        seq = history.next_seq(tags)
        event = AliasEvent(seq=seq, alias=alias, version=version, previous=previous,
                           actor=actor, reason=reason, time=time.time())
        key = history.history_key(seq)
        with self._errors(alias=alias):
            self._client.set_registered_model_tag(self.model_name, key, history.encode(event))
            for old in history.keys_to_prune({**tags, key: ""}, self.history_limit):
                self._client.delete_registered_model_tag(self.model_name, old)

    def _await_ready(self, version: str, timeout_s: float) -> ModelVersion:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._errors(version=version):
                mv = self._client.get_model_version(self.model_name, version)
            if mv.status == _READY:
                return mv
            if mv.status != _PENDING or time.monotonic() >= deadline:
                raise RegistryError(
                    f"version {version!r} of registered model {self.model_name!r} is "
                    f"{mv.status} ({mv.status_message or 'no message'}), not READY",
                    model=self.model_name, tracking_uri=self.tracking_uri, version=version)
            time.sleep(0.2)

    def _to_ref(self, mv: ModelVersion) -> ModelRef:
        source = str(mv.source)
        if source.startswith("models:/"):
            # Registered by someone else from a models:/ URI: report where the files are.
            with self._errors(version=str(mv.version)):
                source = self._client.get_model_version_download_uri(
                    self.model_name, str(mv.version))
        return ModelRef(name=str(mv.name), version=str(mv.version), source=source,
                        run_id=mv.run_id or None)

    def _check_version(self, version: str | int) -> str:
        text = str(version).strip()
        if not text.isdigit() or int(text) < 1:
            raise VersionNotFoundError(
                f"version {version!r} of registered model {self.model_name!r} does not exist: "
                "versions are positive integers", model=self.model_name,
                tracking_uri=self.tracking_uri, version=str(version))
        return str(int(text))

    def _reject_reserved(self, key: str) -> None:
        if history.is_history_key(key):
            raise RegistryError(
                f"model tag {key!r} of {self.model_name!r} is reserved for the alias history",
                model=self.model_name, tracking_uri=self.tracking_uri)

    def _quoted_name(self) -> str:
        return self.model_name.replace("'", "\\'")

    def _model_exists(self) -> bool:
        try:
            self._client.get_registered_model(self.model_name)
        except Exception as exc:
            if error_code(exc) == NOT_FOUND:
                return False
            raise self._translate(exc, ErrorContext(self.model_name, self.tracking_uri)) from exc
        return True

    def _translate(self, exc: BaseException, ctx: ErrorContext) -> RegistryError:
        return translate(exc, ctx, self._model_exists)

    @contextmanager
    def _errors(self, *, alias: str | None = None, version: str | None = None) -> Iterator[None]:
        """Re-raise anything but a RegistryError as the RegistryError that names the context."""
        try:
            yield
        except RegistryError:
            raise
        except Exception as exc:
            ctx = ErrorContext(self.model_name, self.tracking_uri, alias=alias, version=version)
            raise self._translate(exc, ctx) from exc
