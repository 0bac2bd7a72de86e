"""ModelRegistry on a real MLflow SQLite store with real logged pyfunc models."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pytest
from mlflow import MlflowClient

from model_registry import history
from model_registry.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    RegistryError,
    VersionNotFoundError,
)
from model_registry.refs import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, ModelRef
from model_registry.registry import ModelRegistry
from model_registry.testing import LoggedModelInfo, log_linear_model
from model_registry.tracking import TRACKING_URI_ENV

Logged = tuple[LoggedModelInfo, LoggedModelInfo]


@pytest.fixture
def three_versions(registry: ModelRegistry, logged_models: Logged) -> list[ModelRef]:
    """Versions 1 (y=2x+1), 2 (y=3x), 3 (y=2x+1 again)."""
    first, second = logged_models
    return [registry.register(info.model_uri) for info in (first, second, first)]


def _local(source: str) -> Path:
    return Path(source.removeprefix("file://"))


# ---- register ---------------------------------------------------------------------------


def test_register_returns_a_ready_version_of_the_logged_model(
    registry: ModelRegistry, sqlite_uri: str, logged_models: Logged
) -> None:
    first, _ = logged_models
    ref = registry.register(first.model_uri, tags={"team": "risk"})
    assert (ref.name, ref.version, ref.run_id) == (registry.model_name, "1", first.run_id)
    raw = MlflowClient(sqlite_uri, sqlite_uri).get_model_version(registry.model_name, "1")
    assert raw.status == "READY"
    assert registry.get_version_tags("1") == {"team": "risk"}
    assert (_local(ref.source) / "MLmodel").is_file()
    # The source is the model itself: loading it gives y = 2x + 1.
    model = mlflow.pyfunc.load_model(ref.source)
    np.testing.assert_allclose(model.predict(np.array([0.0, 1.5])), [1.0, 4.0])


def test_register_accepts_a_runs_uri_and_numbers_versions(
    registry: ModelRegistry, logged_models: Logged
) -> None:
    first, second = logged_models
    by_model_id = registry.register(first.model_uri)
    by_run = registry.register(first.runs_uri)
    other = registry.register(second.model_uri)
    assert [by_model_id.version, by_run.version, other.version] == ["1", "2", "3"]
    assert by_run.source == by_model_id.source
    assert other.source != by_model_id.source and other.run_id == second.run_id
    assert registry.versions() == [by_model_id, by_run, other]


def test_register_copies_a_version_of_another_model(
    registry: ModelRegistry, sqlite_uri: str, model_name: str, logged_models: Logged
) -> None:
    original = registry.register(logged_models[1].model_uri)
    staging = ModelRegistry(f"{model_name}-staging", sqlite_uri)
    copy = staging.register(original.uri)
    assert (copy.name, copy.version) == (staging.model_name, "1")
    assert (copy.source, copy.run_id) == (original.source, original.run_id)


def test_register_an_unknown_run_names_the_uri(registry: ModelRegistry) -> None:
    uri = f"runs:/{'0' * 32}/model"
    with pytest.raises(RegistryError, match=uri) as info:
        registry.register(uri)
    assert registry.model_name in str(info.value)
    assert not isinstance(info.value, ModelNotFoundError)


def test_ensure_registered_model_is_idempotent(registry: ModelRegistry) -> None:
    assert registry.ensure_registered_model() is True
    assert registry.ensure_registered_model() is False
    assert registry.aliases() == {}


# ---- aliases ----------------------------------------------------------------------------


def test_resolve_each_alias_to_an_immutable_ref(
    registry: ModelRegistry, three_versions: list[ModelRef]
) -> None:
    for alias, ref in zip((PREVIOUS_CHAMPION, CHAMPION, CHALLENGER), three_versions,
                          strict=True):
        registry.set_alias(alias, ref.version)
    for alias, ref in zip((PREVIOUS_CHAMPION, CHAMPION, CHALLENGER), three_versions,
                          strict=True):
        resolved = registry.resolve(alias)
        assert resolved == ref == registry.get_version(ref.version)
        assert resolved.uri == f"models:/{registry.model_name}/{ref.version}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.version = "9"  # type: ignore[misc]
    assert registry.aliases() == {PREVIOUS_CHAMPION: "1", CHAMPION: "2", CHALLENGER: "3"}


def test_a_resolved_ref_does_not_follow_the_alias(
    registry: ModelRegistry, three_versions: list[ModelRef]
) -> None:
    registry.set_alias(CHAMPION, "1")
    held = registry.resolve(CHAMPION)
    registry.set_alias(CHAMPION, "2")
    assert held.version == "1" and registry.resolve(CHAMPION).version == "2"


def test_alias_version_is_none_until_set_and_follows_moves(
    registry: ModelRegistry, three_versions: list[ModelRef]
) -> None:
    assert registry.alias_version(CHALLENGER) is None
    assert registry.set_alias(CHALLENGER, 2) is None
    assert registry.alias_version(CHALLENGER) == "2"
    assert registry.set_alias(CHALLENGER, "3") == "2"
    assert registry.alias_version(CHALLENGER) == "3"


def test_delete_alias(registry: ModelRegistry, three_versions: list[ModelRef]) -> None:
    registry.set_alias(CHALLENGER, "3")
    assert registry.delete_alias(CHALLENGER, actor="ops", reason="abandon") == "3"
    assert registry.alias_version(CHALLENGER) is None
    with pytest.raises(AliasNotFoundError):
        registry.resolve(CHALLENGER)
    events_before = registry.alias_history()
    assert registry.delete_alias(CHALLENGER) is None  # no-op: nothing recorded
    assert registry.alias_history() == events_before
    with pytest.raises(AliasNotFoundError, match=CHALLENGER):
        registry.delete_alias(CHALLENGER, missing_ok=False)


# ---- alias history ----------------------------------------------------------------------


def test_alias_history_is_recorded_oldest_first(
    registry: ModelRegistry, three_versions: list[ModelRef]
) -> None:
    start = time.time()
    registry.set_alias(CHAMPION, "1", actor="alice", reason="first release")
    registry.set_alias(CHALLENGER, "2", actor="bob", reason="try v2")
    registry.set_alias(PREVIOUS_CHAMPION, "1", actor="supervisor", reason="promote")
    registry.set_alias(CHAMPION, "2", actor="supervisor", reason="promote")
    registry.delete_alias(CHALLENGER, actor="supervisor", reason="promoted")
    events = registry.alias_history()
    assert [(e.alias, e.version, e.previous, e.actor, e.reason) for e in events] == [
        (CHAMPION, "1", None, "alice", "first release"),
        (CHALLENGER, "2", None, "bob", "try v2"),
        (PREVIOUS_CHAMPION, "1", None, "supervisor", "promote"),
        (CHAMPION, "2", "1", "supervisor", "promote"),
        (CHALLENGER, None, "2", "supervisor", "promoted"),
    ]
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    assert start - 1 <= events[0].time <= events[-1].time <= time.time() + 1
    assert [e.version for e in registry.alias_history(CHAMPION)] == ["1", "2"]
    assert [e.version for e in registry.alias_history(CHALLENGER)] == ["2", None]


def test_alias_history_is_bounded_to_the_newest_events(
    sqlite_uri: str, model_name: str, logged_models: Logged
) -> None:
    registry = ModelRegistry(model_name, sqlite_uri, history_limit=5)
    for info in logged_models:
        registry.register(info.model_uri)
    for i in range(8):
        registry.set_alias(CHAMPION, str(1 + i % 2), reason=f"move {i}")
    events = registry.alias_history()
    assert [e.reason for e in events] == [f"move {i}" for i in range(3, 8)]
    raw_tags = MlflowClient(sqlite_uri, sqlite_uri).get_registered_model(model_name).tags
    assert sum(history.is_history_key(k) for k in raw_tags) == 5


def test_a_long_reason_is_stored_truncated(
    registry: ModelRegistry, three_versions: list[ModelRef]
) -> None:
    registry.set_alias(CHAMPION, "1", reason="x" * 20_000)
    (event,) = registry.alias_history()
    assert event.reason == "x" * history.MAX_REASON_CHARS


# ---- tags -------------------------------------------------------------------------------


def test_version_tags(registry: ModelRegistry, three_versions: list[ModelRef]) -> None:
    registry.set_version_tag("2", "gateway.verdict", "rollback")
    registry.set_version_tag(2, "gateway.verdict", "promote")
    registry.set_version_tag("2", "reason", "p95 +12%")
    assert registry.get_version_tags("2") == {"gateway.verdict": "promote", "reason": "p95 +12%"}
    assert registry.get_version_tags("1") == {}


def test_model_tags_hide_and_protect_the_history(
    registry: ModelRegistry, three_versions: list[ModelRef]
) -> None:
    registry.set_alias(CHAMPION, "1")
    registry.set_model_tag("gateway.rollout", '{"phase": "canary", "step": 1}')
    assert registry.get_model_tags() == {"gateway.rollout": '{"phase": "canary", "step": 1}'}
    registry.delete_model_tag("gateway.rollout")
    registry.delete_model_tag("gateway.rollout")  # absent: no-op
    assert registry.get_model_tags() == {}
    reserved = history.history_key(1)
    with pytest.raises(RegistryError, match="reserved"):
        registry.set_model_tag(reserved, "{}")
    with pytest.raises(RegistryError, match="reserved"):
        registry.delete_model_tag(reserved)
    assert len(registry.alias_history()) == 1


# ---- errors -----------------------------------------------------------------------------

MISSING_MODEL_CALLS: dict[str, Callable[[ModelRegistry], Any]] = {
    "resolve": lambda r: r.resolve(CHAMPION),
    "alias_version": lambda r: r.alias_version(CHAMPION),
    "aliases": lambda r: r.aliases(),
    "get_version": lambda r: r.get_version("1"),
    "set_alias": lambda r: r.set_alias(CHAMPION, "1"),
    "delete_alias": lambda r: r.delete_alias(CHAMPION),
    "alias_history": lambda r: r.alias_history(),
    "get_version_tags": lambda r: r.get_version_tags("1"),
    "set_version_tag": lambda r: r.set_version_tag("1", "k", "v"),
    "get_model_tags": lambda r: r.get_model_tags(),
    "set_model_tag": lambda r: r.set_model_tag("k", "v"),
    "versions": lambda r: r.versions(),
}


@pytest.mark.parametrize("call", MISSING_MODEL_CALLS.values(), ids=MISSING_MODEL_CALLS.keys())
def test_a_missing_model_is_named(
    registry: ModelRegistry, sqlite_uri: str, call: Callable[[ModelRegistry], Any]
) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        call(registry)
    assert registry.model_name in str(info.value) and sqlite_uri in str(info.value)
    assert info.value.model == registry.model_name


def test_an_unset_alias_is_named(registry: ModelRegistry, three_versions: list[ModelRef]) -> None:
    registry.set_alias(CHAMPION, "1")
    with pytest.raises(AliasNotFoundError) as info:
        registry.resolve(CHALLENGER)
    assert f"'{CHALLENGER}'" in str(info.value) and registry.model_name in str(info.value)
    assert info.value.alias == CHALLENGER


MISSING_VERSION_CALLS: dict[str, Callable[[ModelRegistry], Any]] = {
    "get_version": lambda r: r.get_version("99"),
    "set_alias": lambda r: r.set_alias(CHAMPION, "99"),
    "get_version_tags": lambda r: r.get_version_tags(99),
    "set_version_tag": lambda r: r.set_version_tag("99", "k", "v"),
}


@pytest.mark.parametrize("call", MISSING_VERSION_CALLS.values(),
                         ids=MISSING_VERSION_CALLS.keys())
def test_a_missing_version_is_named(
    registry: ModelRegistry, three_versions: list[ModelRef],
    call: Callable[[ModelRegistry], Any]
) -> None:
    with pytest.raises(VersionNotFoundError) as info:
        call(registry)
    assert "'99'" in str(info.value) and registry.model_name in str(info.value)
    assert info.value.version == "99"
    assert registry.alias_history() == []  # a failed set_alias records nothing


@pytest.mark.parametrize("version", ["abc", "0", "-1", "1.5", ""])
def test_a_malformed_version_is_a_missing_version(
    registry: ModelRegistry, version: str
) -> None:
    with pytest.raises(VersionNotFoundError, match="positive integers"):
        registry.get_version(version)


def test_an_invalid_alias_name_is_named(
    registry: ModelRegistry, three_versions: list[ModelRef]
) -> None:
    with pytest.raises(RegistryError, match="'bad alias!'"):
        registry.set_alias("bad alias!", "1")


# ---- the embedded default store ---------------------------------------------------------


def test_default_store_keeps_everything_under_dot_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    registry = ModelRegistry("embedded")
    gateway_dir = tmp_path.resolve() / ".gateway"
    assert registry.tracking_uri == f"sqlite:///{gateway_dir}/mlflow.db"
    assert (gateway_dir / "mlflow.db").is_file()
    client = MlflowClient(registry.tracking_uri)
    assert client.get_experiment("0").artifact_location.startswith(str(gateway_dir / "mlruns"))
    ref = registry.register(log_linear_model(registry.tracking_uri, 1.0, 0.0).model_uri)
    assert _local(ref.source).is_relative_to(gateway_dir / "mlruns")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gateway"]
