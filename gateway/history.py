"""`gateway history`: past rollouts, read from the MLflow run the supervisor keeps for each
(`gateway.control.rollout_run`: tags `gateway.rollout_id`, `.model`, `.champion_version`,
`.challenger_version`, `.outcome`, `.reason`, `.verdict.*`; the run's start and end times),
and who started each one, from the registry's alias history (the `challenger` alias move
that started it; the `champion` alias for a champion set by hand). Blocking MLflow calls."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from core.errors import GatewayError
from gateway.status_view import shorten
from model_registry.errors import redact_uri
from model_registry.history import AliasEvent
from model_registry.refs import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from rich.table import Table

__all__ = ["DEFAULT_EXPERIMENT", "HistoryError", "RolloutRecord", "history_table",
           "read_history", "started_by"]

DEFAULT_EXPERIMENT = "champion-gateway-rollouts"  # gateway.config SupervisorConfig's default
TAG = "gateway."
# The supervisor names a rollout of a champion set by hand `<model>-v<n>-champion-<hex8>`.
_CHAMPION_ROLLOUT = re.compile(r"-champion-[0-9a-f]{8}$")
# The supervisor sees an alias move at its next registry poll; allow for that and for clock
# skew between the machine that moved the alias and the supervisor's.
ALIAS_SLACK_S = 120.0


class HistoryError(GatewayError):
    """The rollout runs could not be read (names the tracking URI, without a password)."""


@dataclass(frozen=True)
class RolloutRecord:
    rollout_id: str
    model: str
    champion_version: str | None
    challenger_version: str | None
    outcome: str  # running, promoted, rolled_back, failed, aborted, superseded
    reason: str
    verdict: str | None  # the last verdict's state (pass, fail, inconclusive)
    started_at: float  # Unix seconds
    ended_at: float | None
    started_by: str | None  # the actor of the alias move that started it, if recorded
    start_reason: str | None
    run_id: str

    @property
    def duration_s(self) -> float:
        return (self.ended_at if self.ended_at is not None else time.time()) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": round(self.duration_s, 3)}


def read_history(tracking_uri: str, model: str | None = None, limit: int = 20,
                 experiment: str = DEFAULT_EXPERIMENT) -> list[RolloutRecord]:
    """The newest `limit` rollouts (of `model`, else of every model), newest first."""
    with _errors(tracking_uri, f"read the rollout runs of experiment {experiment!r}"):
        client = _client(tracking_uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        query = f"tags.`{TAG}model` = '{_quoted(model)}'" if model is not None else ""
        runs = client.search_runs([str(found.experiment_id)], filter_string=query,
                                  max_results=limit, order_by=["attributes.start_time DESC"])
    histories: dict[str, list[AliasEvent] | None] = {}
    return [_record(run, histories, tracking_uri) for run in runs]


def started_by(events: Sequence[AliasEvent], alias: str, version: str | None,
               started_at: float) -> AliasEvent | None:
    """The last move of `alias` to `version` recorded up to the rollout's start."""
    if version is None:
        return None
    hits = [e for e in events if e.alias == alias and e.version == version
            and e.time <= started_at + ALIAS_SLACK_S]
    return hits[-1] if hits else None


def _record(run: Any, histories: dict[str, list[AliasEvent] | None],
            tracking_uri: str) -> RolloutRecord:
    tags = run.data.tags
    rollout_id = tags.get(f"{TAG}rollout_id", "")
    model = tags.get(f"{TAG}model", "")
    challenger = tags.get(f"{TAG}challenger_version")
    started = run.info.start_time / 1000.0
    end = run.info.end_time
    if model not in histories:
        histories[model] = _alias_history(model, tracking_uri)
    alias = CHAMPION if _CHAMPION_ROLLOUT.search(rollout_id) else CHALLENGER
    event = started_by(histories[model] or [], alias, challenger, started)
    return RolloutRecord(
        rollout_id=rollout_id, model=model, champion_version=tags.get(f"{TAG}champion_version"),
        challenger_version=challenger, outcome=tags.get(f"{TAG}outcome", "unknown"),
        reason=tags.get(f"{TAG}reason", ""), verdict=tags.get(f"{TAG}verdict.state") or None,
        started_at=started, ended_at=end / 1000.0 if end else None,
        started_by=event.actor if event else None,
        start_reason=event.reason if event else None, run_id=run.info.run_id)


def _alias_history(model: str, tracking_uri: str) -> list[AliasEvent] | None:
    """The model's alias history; None when it cannot be read (the model was deleted):
    who started a rollout is then unknown, the rest of the history still shows."""
    from model_registry.errors import RegistryError
    from model_registry.registry import ModelRegistry

    if not model:
        return None
    try:
        return ModelRegistry(model, tracking_uri=tracking_uri).alias_history()
    except RegistryError:
        return None


def history_table(records: Sequence[RolloutRecord], reason_width: int = 60) -> Table:
    """The records as a table: rollout, versions, outcome, started, duration, by, reason."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("rollout", "versions", "outcome", "started", "duration", "by"):
        table.add_column(name, no_wrap=True)
    table.add_column("reason", overflow="ellipsis", no_wrap=True, max_width=reason_width)
    for r in records:
        # Text cells, not strings: a reason or an actor is never read as rich markup.
        outcome = Text(r.outcome, style=_OUTCOME_STYLE.get(r.outcome, ""))
        if r.verdict:
            outcome.append(f" (verdict {r.verdict})", style="dim")
        table.add_row(Text(r.rollout_id), Text(f"v{r.champion_version or '?'} -> "
                                               f"v{r.challenger_version or '?'}"),
                      outcome,
                      Text(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))),
                      Text(_duration(r.duration_s) + ("" if r.ended_at else " (running)")),
                      Text(r.started_by or "-"), Text(shorten(r.reason, reason_width)))
    return table


_OUTCOME_STYLE = {"promoted": "green", "rolled_back": "red", "failed": "red",
                  "load_failed": "red", "aborted": "yellow", "superseded": "yellow",
                  "running": "cyan"}


def _duration(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"


def _quoted(text: str) -> str:
    return text.replace("'", "\\'")


def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    from model_registry.connectivity import apply_fast_fail_defaults, probe_http
    from model_registry.tracking import is_http_uri

    if is_http_uri(tracking_uri):  # fail in seconds, not after MLflow's minutes of retries
        apply_fast_fail_defaults()
        probe_http(tracking_uri, "rollout history")
    return MlflowClient(tracking_uri=tracking_uri)


@contextmanager
def _errors(tracking_uri: str, what: str) -> Iterator[None]:
    """Any MLflow, database or transport failure as one HistoryError line."""
    try:
        yield
    except GatewayError:
        raise
    except Exception as exc:  # MLflow raises many unrelated types (SQL, requests, OS)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise HistoryError(f"cannot {what} at tracking URI {redact_uri(tracking_uri)!r}: "
                           f"{type(exc).__name__}: {shorten(first, 200)}") from exc
