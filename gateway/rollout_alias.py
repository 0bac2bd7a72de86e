"""`gateway rollout start|abort`: a rollout is started and aborted through the registry, by
moving the `challenger` alias (the supervisor acts on it at its next registry poll, see
`gateway.control.aliases`), so these work from any machine that reaches MLflow, with no
admin token. Blocking MLflow calls."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.errors import GatewayError
from model_registry.errors import redact_uri
from model_registry.refs import CHALLENGER, CHAMPION, REASON_TAG, VERDICT_TAG
from model_registry.tracking import DB_FILE, GATEWAY_DIR, TRACKING_URI_ENV, sqlite_path

__all__ = ["RolloutCommandError", "abort_rollout", "cli_tracking_uri", "start_rollout"]



class RolloutCommandError(GatewayError):
    """The command cannot do what was asked (the message says why and what to do)."""


def cli_tracking_uri(explicit: str | None) -> str:
    """`--tracking-uri`, else MLFLOW_TRACKING_URI, else `gateway serve`'s default store
    (./.gateway/mlflow.db). A SQLite store that does not exist is an error: the CLI only
    reads and moves what a gateway registered, it never creates an empty store."""
    uri = explicit or os.environ.get(TRACKING_URI_ENV, "").strip() or \
        f"sqlite:///{Path.cwd().resolve() / GATEWAY_DIR / DB_FILE}"
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        raise RolloutCommandError(
            f"no MLflow store at {path}: pass --tracking-uri or set {TRACKING_URI_ENV}")
    return uri


def start_rollout(model: str, version: str, tracking_uri: str, *, actor: str,
                  reason: str) -> dict[str, Any]:
    """Point the `challenger` alias of `model` at `version`, after checking that the version
    exists, is not the champion, is not the challenger already and was never judged (the
    supervisor ignores a judged version: it would look started and never run)."""
    from model_registry.registry import ModelRegistry

    registry = ModelRegistry(model, tracking_uri=tracking_uri)
    ref = registry.get_version(version)  # VersionNotFoundError names model and URI
    tags = registry.get_version_tags(ref.version)
    verdict = tags.get(VERDICT_TAG)
    if verdict:
        why = tags.get(REASON_TAG, "")
        raise RolloutCommandError(
            f"version {ref.version} of {model!r} was already judged ({verdict}"
            f"{': ' + why[:160] if why else ''}); a judged version is never rolled out "
            "again: register a new version")
    aliases = registry.aliases()
    if aliases.get(CHAMPION) == ref.version:
        raise RolloutCommandError(f"version {ref.version} of {model!r} is the champion")
    if aliases.get(CHALLENGER) == ref.version:
        raise RolloutCommandError(
            f"the challenger alias of {model!r} already points at version {ref.version} (its "
            "rollout runs or waits): `gateway watch` follows it")
    previous = registry.set_alias(CHALLENGER, ref.version, actor=actor, reason=reason)
    return {"model": model, "version": ref.version, "alias": CHALLENGER,
            "previous_challenger": previous, "champion": aliases.get(CHAMPION),
            "actor": actor, "reason": reason, "tracking_uri": redact_uri(tracking_uri)}


def abort_rollout(model: str, tracking_uri: str, *, actor: str, reason: str) -> dict[str, Any]:
    """Delete the `challenger` alias of `model`: the supervisor aborts its rollout."""
    from model_registry.registry import ModelRegistry

    registry = ModelRegistry(model, tracking_uri=tracking_uri)
    previous = registry.delete_alias(CHALLENGER, actor=actor, reason=reason)
    if previous is None:
        raise RolloutCommandError(
            f"no rollout to abort: the challenger alias of {model!r} is not set")
    return {"model": model, "version": previous, "alias": CHALLENGER, "deleted": True,
            "actor": actor, "reason": reason, "tracking_uri": redact_uri(tracking_uri)}


def describe_start(result: dict[str, Any]) -> str:
    moved = (f" (it pointed at v{result['previous_challenger']}: that rollout is superseded)"
             if result.get("previous_challenger") else "")
    return (f"challenger alias of {result['model']} -> v{result['version']}{moved}; the "
            f"gateway starts its rollout against champion v{result.get('champion') or '-'} at "
            "its next registry poll. Follow it with `gateway watch`.")


def describe_abort(result: dict[str, Any]) -> str:
    return (f"challenger alias of {result['model']} (v{result['version']}) deleted; the gateway "
            "aborts its rollout at its next registry poll (traffic back to the champion).")
