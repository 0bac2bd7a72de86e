"""One MLflow run per rollout: the policy as params, guard values per step as metrics, the
verdict as tags and verdict.json, the drift report as an artifact.

Every call blocks (MLflow calls, and MLflow's first import takes seconds): run them off the
event loop. MLflow must never stand in the way of a rollback: callers on the decision path
use the `safe_*` methods, which log and swallow every failure.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core.errors import GatewayError
from core.logs import get_logger
from gateway.control.notifiers.base import jsonable

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "RolloutRun",
    "RolloutRunError",
    "flatten_params",
    "guard_metrics",
]

log = get_logger(__name__)


class RolloutRunError(GatewayError):
    """An MLflow operation on a rollout run failed; names the rollout, run and tracking URI."""


TAG_PREFIX = "gateway."
MAX_KEY = 250  # MLflow's limit on param, metric and tag names
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
BATCH = 100  # MLflow's limit on params or tags per log_batch call
STATE_CODES = {"pass": 0.0, "inconclusive": 1.0, "fail": 2.0}
GUARD_METRICS = ("value", "statistic", "threshold", "n_champion", "n_challenger")
FAILED_OUTCOMES = frozenset({"rolled_back", "rollback", "failed", "load_failed",
                             "manual_rollback"})
KILLED_OUTCOMES = frozenset({"aborted", "superseded", "cancelled"})
_BAD_KEY_CHARS = re.compile(r"[^\w.\- ]")


def flatten_params(params: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings, sequences and dataclasses as flat MLflow params: `steps.0.weight`.
    Names keep only characters MLflow accepts; values are cut to MLflow's length limit."""
    out: dict[str, str] = {}
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    if isinstance(params, Mapping):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in params.items()]
    elif isinstance(params, list | tuple):
        items = [(str(i), v) for i, v in enumerate(params)]
    else:
        return {_key(prefix or "value"): _value(params, MAX_PARAM_VALUE)}
    if not items and prefix:
        return {_key(prefix): "[]" if isinstance(params, list | tuple) else "{}"}
    for name, value in items:
        key = f"{prefix}.{name}" if prefix else name
        if isinstance(value, Mapping | list | tuple) or (
                dataclasses.is_dataclass(value) and not isinstance(value, type)):
            out.update(flatten_params(value, key))
        else:
            out[_key(key)] = _value(value, MAX_PARAM_VALUE)
    return out


def _key(name: str) -> str:
    return _BAD_KEY_CHARS.sub("_", name)[:MAX_KEY]


def _value(value: Any, limit: int) -> str:
    text = str(value.value) if isinstance(value, enum.Enum) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RolloutRun:
    """One MLflow run per rollout. Build with `start` (or `resume` after a restart).

    Contract: every method raises RolloutRunError (never an MLflow exception) naming the
    rollout, run and tracking URI. On the decision path use `safe_start`, `safe_log_guards`
    and `safe_finish`, which log and swallow any failure, so a rollback never waits on or
    fails because of MLflow. All methods block (run them off the event loop).
    """

    def __init__(self, client: MlflowClient, tracking_uri: str, run_id: str,
                 rollout_id: str | None = None) -> None:
        self._client = client
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.rollout_id = rollout_id

    def __repr__(self) -> str:
        return f"RolloutRun(run_id={self.run_id!r}, rollout_id={self.rollout_id!r})"

    # -- construction --

    @classmethod
    def start(cls, tracking_uri: str, experiment: str, rollout_id: str, model: str,
              champion_version: str, challenger_version: str,
              policy_params: Mapping[str, Any] | Any) -> RolloutRun:
        """Create the run for `rollout_id` (policy flattened into params; rollout id, model
        and versions as tags). If a RUNNING run for this rollout id already exists (a
        supervisor that crashed before persisting the run id), that run is reused."""
        with _errors(f"start run for rollout {rollout_id!r}", tracking_uri):
            client = _client(tracking_uri)
            experiment_id = _experiment_id(client, tracking_uri, experiment)
            existing = _find(client, experiment_id, rollout_id)
            if existing is not None and existing.info.status == "RUNNING":
                return cls(client, tracking_uri, existing.info.run_id, rollout_id)
            tags = {
                f"{TAG_PREFIX}rollout_id": rollout_id,
                f"{TAG_PREFIX}model": model,
                f"{TAG_PREFIX}champion_version": str(champion_version),
                f"{TAG_PREFIX}challenger_version": str(challenger_version),
                f"{TAG_PREFIX}outcome": "running",
            }
            run = client.create_run(experiment_id, tags=tags, run_name=f"rollout-{rollout_id}")
            run_id = run.info.run_id
            _log_params(client, run_id, flatten_params(policy_params))
        return cls(client, tracking_uri, run_id, rollout_id)

    @classmethod
    def resume(cls, tracking_uri: str, run_id: str) -> RolloutRun:
        """The existing run `run_id`, for a restarted supervisor to continue logging."""
        with _errors(f"resume run {run_id!r}", tracking_uri):
            client = _client(tracking_uri)
            run = client.get_run(run_id)
            if run.info.lifecycle_stage == "deleted":
                raise RolloutRunError(f"MLflow run {run_id!r} is deleted")
            rollout_id = run.data.tags.get(f"{TAG_PREFIX}rollout_id")
        return cls(client, tracking_uri, run_id, rollout_id)

    @classmethod
    def find(cls, tracking_uri: str, experiment: str, rollout_id: str) -> RolloutRun | None:
        """The newest run of `rollout_id` in `experiment`, or None."""
        with _errors(f"find run of rollout {rollout_id!r}", tracking_uri):
            client = _client(tracking_uri)
            found = client.get_experiment_by_name(experiment)
            if found is None:
                return None
            run = _find(client, str(found.experiment_id), rollout_id)
        return None if run is None else cls(client, tracking_uri, run.info.run_id, rollout_id)

    @classmethod
    def safe_start(cls, *args: Any, **kwargs: Any) -> RolloutRun | None:
        """`start`, or None (logged) on any failure."""
        try:
            return cls.start(*args, **kwargs)
        except Exception as exc:
            log.warning("MLflow rollout run not started: %s", exc)
            return None

    # -- logging --

    def log_guards(self, step: int, results: Sequence[Mapping[str, Any] | Any],
                   timestamp_ms: int | None = None) -> None:
        """Each guard result (a `GuardResult.to_dict()`, or a GuardResult) as metrics at
        `step`: guard.<name>.value, .statistic, .threshold, .n_champion, .n_challenger and
        .state (0 pass, 1 inconclusive, 2 fail). Missing or non-finite values are skipped."""
        from mlflow.entities import Metric

        ts = timestamp_ms if timestamp_ms is not None else _now_ms()
        metrics = [Metric(key, value, ts, step) for key, value in guard_metrics(results).items()]
        with self._errors(f"log guard metrics at step {step}"):
            _probe(self.tracking_uri)
            for chunk in _chunks(metrics, 1000):
                self._client.log_batch(self.run_id, metrics=chunk)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags on the run (values cut to MLflow's limit)."""
        with self._errors("set tags"):
            _probe(self.tracking_uri)
            _log_tags(self._client, self.run_id, tags)

    def finish(self, outcome: str, reason: str, verdict: Mapping[str, Any] | None,
               artifacts: Mapping[str, Path] | None = None) -> None:
        """Tag the outcome, reason and verdict (state, action, severity, reasons, each
        guard's state), store verdict.json and `artifacts` (artifact name -> local file or
        folder, e.g. {"drift_report.html": path}), and end the run: FAILED for a rollback
        or failure, KILLED for aborted/superseded, else FINISHED. The run is ended even if
        an artifact fails; the error is raised afterwards."""
        with self._errors(f"finish with outcome {outcome!r}"):
            _probe(self.tracking_uri)
            _log_tags(self._client, self.run_id, _finish_tags(outcome, reason, verdict))
        problems = self._log_artifacts(verdict, artifacts or {})
        with self._errors("end the run"):
            self._client.set_terminated(self.run_id, status=_status(outcome))
        if problems:
            raise RolloutRunError(f"MLflow run {self.run_id!r} of rollout {self.rollout_id!r}: "
                                  f"artifacts not stored: {'; '.join(problems)}")

    def safe_log_guards(self, step: int, results: Sequence[Mapping[str, Any] | Any]) -> bool:
        """`log_guards`; False (logged) on any failure."""
        return self._safely("log guards", self.log_guards, step, results)

    def safe_finish(self, outcome: str, reason: str, verdict: Mapping[str, Any] | None,
                    artifacts: Mapping[str, Path] | None = None) -> bool:
        """`finish`; False (logged) on any failure."""
        return self._safely("finish", self.finish, outcome, reason, verdict, artifacts)

    # -- internals --

    def _safely(self, what: str, fn: Any, *args: Any) -> bool:
        try:
            fn(*args)
            return True
        except Exception as exc:
            log.warning("MLflow rollout run %s: %s failed: %s", self.run_id, what, exc)
            return False

    def download_artifact(self, name: str, folder: Path) -> Path | None:
        """Artifact `name` (top level) of this run, downloaded under `folder`; None if the
        run has none of that name."""
        with self._errors(f"download artifact {name!r}"):
            if name not in {f.path for f in self._client.list_artifacts(self.run_id)}:
                return None
            return Path(self._client.download_artifacts(self.run_id, name, str(folder)))

    def _log_artifacts(self, verdict: Mapping[str, Any] | None,
                       artifacts: Mapping[str, Path]) -> list[str]:
        problems = []
        with tempfile.TemporaryDirectory(prefix="gateway-run-") as tmp:
            if verdict is not None:
                path = Path(tmp) / "verdict.json"
                path.write_text(json.dumps(jsonable(verdict), indent=2, sort_keys=True))
                problems += self._store("verdict.json", path, tmp)
            for name, local in artifacts.items():
                problems += self._store(name, Path(local), tmp)
        return problems

    def _store(self, name: str, local: Path, tmp: str) -> list[str]:
        """Store `local` under artifact name `name`; a list with the problem, if any."""
        target = Path(name)
        sub = None if str(target.parent) == "." else target.parent.as_posix()
        try:
            with self._errors(f"store artifact {name!r}"):
                if local.is_dir():
                    self._client.log_artifacts(self.run_id, str(local), artifact_path=name)
                    return []
                if not local.is_file():
                    raise RolloutRunError(f"{local} is not a file")
                if local.name != target.name:  # MLflow names the artifact after the file
                    staged = Path(tmp) / "staged" / target.name
                    staged.parent.mkdir(exist_ok=True)
                    local = Path(shutil.copyfile(local, staged))
                self._client.log_artifact(self.run_id, str(local), artifact_path=sub)
                return []
        except RolloutRunError as exc:
            return [f"{name}: {exc}"]

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        with _errors(f"{what} (run {self.run_id!r}, rollout {self.rollout_id!r})",
                     self.tracking_uri):
            yield


def guard_metrics(results: Sequence[Mapping[str, Any] | Any]) -> dict[str, float]:
    """The metric names and values `log_guards` logs for `results`."""
    out: dict[str, float] = {}
    for result in results:
        data = result.to_dict() if hasattr(result, "to_dict") else result
        name = _key(str(data.get("guard", "unknown")))
        for field_name in GUARD_METRICS:
            value = jsonable(data.get(field_name))
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[f"guard.{name}.{field_name}"] = float(value)
        state = STATE_CODES.get(str(data.get("state")))
        if state is not None:
            out[f"guard.{name}.state"] = state
    return out


def _finish_tags(outcome: str, reason: str,
                 verdict: Mapping[str, Any] | None) -> dict[str, Any]:
    tags: dict[str, Any] = {f"{TAG_PREFIX}outcome": outcome, f"{TAG_PREFIX}reason": reason}
    if verdict is None:
        return tags
    for key in ("state", "action", "severity", "catastrophic"):
        tags[f"{TAG_PREFIX}verdict.{key}"] = verdict.get(key)
    tags[f"{TAG_PREFIX}verdict.reasons"] = "\n".join(str(r) for r in verdict.get("reasons") or ())
    for result in verdict.get("results") or ():
        name = _key(str(result.get("guard", "unknown")))
        tags[f"{TAG_PREFIX}guard.{name}.state"] = result.get("state")
        tags[f"{TAG_PREFIX}guard.{name}.detail"] = result.get("detail")
    return tags


def _status(outcome: str) -> str:
    if outcome in FAILED_OUTCOMES:
        return "FAILED"
    return "KILLED" if outcome in KILLED_OUTCOMES else "FINISHED"


def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    _probe(tracking_uri)
    quiet_run_links(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


SUPPRESS_RUN_LINKS_ENV = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def quiet_run_links(tracking_uri: str) -> None:
    """Stop MLflow printing run links when `tracking_uri` carries credentials.

    Ending a run against a tracking server, MLflow writes "View run ... at: <link>" to stdout,
    the link built from the tracking URI as given, user and password included; the
    supervisor's stdout is a Ray log file. MLflow reads the switch at every print, and it is
    process-wide, so it is set only where there is something to hide."""
    parts = urlsplit(tracking_uri)
    if parts.username or parts.password:
        os.environ[SUPPRESS_RUN_LINKS_ENV] = "true"


def _probe(tracking_uri: str) -> None:
    """For a tracking server: fail in milliseconds when it is down, instead of after
    MLflow's own retries (which `apply_fast_fail_defaults` also shortens)."""
    from model_registry.connectivity import apply_fast_fail_defaults, probe_http
    from model_registry.tracking import is_http_uri

    if is_http_uri(tracking_uri):
        apply_fast_fail_defaults()
        probe_http(tracking_uri, "rollout runs")


def _experiment_id(client: MlflowClient, tracking_uri: str, name: str) -> str:
    from model_registry.experiments import ensure_experiment

    try:
        experiment_id = ensure_experiment(tracking_uri, name)
    except Exception:
        found = client.get_experiment_by_name(name)  # created by someone else meanwhile
        if found is None:
            raise
        experiment_id = str(found.experiment_id)
    if client.get_experiment(experiment_id).lifecycle_stage == "deleted":
        raise RolloutRunError(f"MLflow experiment {name!r} is deleted; restore it or "
                              "configure another experiment")
    return experiment_id


def _find(client: MlflowClient, experiment_id: str, rollout_id: str) -> Any:
    if "'" in rollout_id:
        raise RolloutRunError(f"rollout id {rollout_id!r} must not contain quotes")
    runs = client.search_runs([experiment_id],
                              filter_string=f"tags.`{TAG_PREFIX}rollout_id` = '{rollout_id}'",
                              max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    entries = [Param(k, v) for k, v in params.items()]
    for chunk in _chunks(entries, BATCH):
        client.log_batch(run_id, params=chunk)


def _log_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    from mlflow.entities import RunTag

    entries = [RunTag(_key(k), _value("" if v is None else v, MAX_TAG_VALUE))
               for k, v in tags.items()]
    for chunk in _chunks(entries, BATCH):
        client.log_batch(run_id, tags=chunk)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _now_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def _errors(what: str, tracking_uri: str) -> Iterator[None]:
    """Turn any MLflow, database or transport failure into RolloutRunError."""
    try:
        yield
    except RolloutRunError:
        raise
    except Exception as exc:  # MLflow raises many unrelated types (SQL, requests, OS)
        from model_registry.errors import redact_uri

        raise RolloutRunError(f"MLflow: {what} failed at tracking URI "
                              f"{redact_uri(tracking_uri)!r}: {type(exc).__name__}: {exc}"
                              ) from exc
