"""The side effects of rollout decisions: registry aliases and tags, the audit record, the
MLflow run, alerts, champion scaling and the control plane's metrics.

Acting only: what the supervisor senses (resource readings) is `gateway.control.sensors`.
Runs in worker threads of the supervisor (MLflow calls block). Each effect is isolated: a
failing registry, MLflow or notifier is logged and never stops the others, and never undoes
the routing change that was already published.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from core.logs import get_logger
from gateway.config import GatewayConfig
from gateway.control import rollout as ro
from gateway.control.alerts import Alert, AlertDispatcher, make_notifiers
from gateway.control.audit import AuditLog, AuditRecord
from gateway.control.capacity import CapacityKeeper, ReplicaScaler
from gateway.control.ports import RolloutRegistry
from gateway.control.reports import timeline_artifacts
from gateway.control.rollout_run import RolloutRun
from gateway.control.scaling import ServeScaler
from gateway.control.store import VERDICT_TAG
from gateway.metrics import get_metrics
from guards.context import ResourceReadings
from guards.results import Action
from guards.verdict import Verdict
from guards.window import ArmWindow
from model_registry.refs import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, REASON_TAG

__all__ = ["EffectRunner"]

log = get_logger(__name__)


def _failing_guard(verdict: Any) -> str | None:
    if not verdict:
        return None
    if verdict.get("catastrophic"):
        return "catastrophic"
    return next((r["guard"] for r in verdict.get("results", []) if r.get("state") == "fail"),
                None)


def _unreachable(exc: BaseException) -> bool:
    """Whether `exc` says MLflow could not be reached (worth retrying), by its type or the
    chain of causes (MLflow wraps connection errors in its own)."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        text = str(seen)
        if (isinstance(seen, (ConnectionError, TimeoutError))
                or "Unavailable" in name or "Connection" in name or "Timeout" in name
                or "Max retries exceeded" in text or "Connection refused" in text
                or "TEMPORARILY_UNAVAILABLE" in text):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def _isolated(what: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        log.exception("%s failed (the rollout decision stands)", what)


class EffectRunner:
    """Carries out what the supervisor decided, in the order it asks (see its module doc)."""

    def __init__(self, cfg: GatewayConfig, registry: RolloutRegistry, tracking_uri: str,
                 scaler: ReplicaScaler | None = None) -> None:
        self._cfg = cfg
        self._registry = registry
        self._tracking_uri = tracking_uri
        self._audit = AuditLog(cfg.supervisor.audit_path)
        self._alerts = AlertDispatcher(make_notifiers(cfg.alerts))
        self._runs: dict[str, RolloutRun] = {}
        self._capacity = CapacityKeeper(scaler or ServeScaler(cfg.app_name), cfg.slots,
                                        wait_s=cfg.slots.health_check_timeout_s)
        # Registry updates that failed (registry unreachable), oldest first.
        self._pending: list[tuple[ro.RolloutState, ro.RolloutState, ro.Event]] = []
        self._pending_runs: list[tuple[ro.RolloutState, ro.RolloutState, ro.Event,
                                       ArmWindow, ArmWindow, Mapping[str, Any] | None]] = []
        self._registry_lock = threading.Lock()
        self._runs_lock = threading.Lock()

    # --- called by the supervisor ----------------------------------------------------------

    def record(self, old: ro.RolloutState, new: ro.RolloutState, event: ro.Event,
               table_to: int, table_from: int) -> None:
        """The durable record, right after the routing change: registry, then audit log."""
        with self._registry_lock:
            # In order: an older decision's deferred writes go first.
            self._pending.append((old, new, event))
            self._write_registry()
        with _isolated("audit record"):
            self._audit.append(self._record(old, new, event, table_from, table_to))

    def notify_and_track(self, old: ro.RolloutState, new: ro.RolloutState, event: ro.Event,
                         champion: ArmWindow, challenger: ArmWindow,
                         timeline: Mapping[str, Any] | None = None) -> None:
        """Then the alert, then the MLflow rollout run (seconds: reports, artifacts; with a
        finished rollout's `timeline`, its report)."""
        if event.alert:
            with _isolated("alert"):
                self._alerts.dispatch(self._alert(old, new, event))
        if event.name in ("rolled_back", "restored"):
            self._keep_capacity(new, scale_up=event.action is Action.ROLLBACK_AND_SCALE)
        with self._runs_lock:
            self._pending_runs.append((old, new, event, champion, challenger, timeline))
            self._log_runs()

    def registry_pending(self) -> int:
        """How many decisions' registry updates (aliases, verdict tags) wait for the
        registry to come back."""
        return len(self._pending)

    def retry_registry(self) -> int:
        """Write what was deferred while the registry was unreachable, oldest first, until
        a write fails (the rollout runs' updates too); returns how many registry updates
        still wait."""
        with self._registry_lock:
            self._write_registry()
        if self._runs_lock.acquire(blocking=False):  # else the effects chain is at it
            try:
                self._log_runs()
            finally:
                self._runs_lock.release()
        return self.registry_pending()

    def _write_registry(self) -> None:
        """Under `_registry_lock`. A failed write stays first in line: the registry is down,
        and no alias move or verdict tag may be lost or reordered (the supervisor holds the
        rollout meanwhile)."""
        while self._pending:
            old, new, event = self._pending[0]
            try:
                self._update_registry(old, new, event)
            except Exception as exc:
                log.warning("registry update for %s deferred (%d waiting): %s", event.name,
                            len(self._pending), exc)
                return
            self._pending.pop(0)

    def _log_runs(self) -> None:
        """Under `_runs_lock`: the rollout-run updates in order until MLflow is unreachable.
        One that fails for another reason is logged and dropped (it would never succeed)."""
        while self._pending_runs:
            old, new, event, champion, challenger, timeline = self._pending_runs[0]
            try:
                self._track_run(old, new, event, champion, challenger, timeline)
            except Exception as exc:
                if _unreachable(exc):
                    log.warning("MLflow unreachable; %d rollout-run update(s) wait: %s",
                                len(self._pending_runs), exc)
                    return
                log.exception("MLflow rollout run for %s failed (the decision stands)",
                              event.name)
            self._pending_runs.pop(0)

    def audit_manual(self, state: ro.RolloutState, actor: str, reason: str,
                     table_version: int) -> None:
        with _isolated("audit record"):
            self._audit.append(self._record(state, state, ro.Event("weights_set", actor=actor,
                                                                     reason=reason),
                                             table_version, table_version))

    def record_verdict_metrics(self, verdict: Verdict) -> None:
        metrics = get_metrics()
        for r in verdict.results:
            metrics.guard(r.guard, r.state.value, r.value, r.threshold)

    def record_event_metrics(self, event: ro.Event) -> None:
        """Verdicts that moved the rollout, and rollbacks, by a short reason code."""
        metrics = get_metrics()
        guard = _failing_guard(event.verdict)
        if event.verdict is not None or event.action is not None:
            metrics.verdict(event.action.value if event.action else event.name,
                            guard or event.name)
        if event.name in ("rolled_back", "restored"):
            cause = "guard" if guard else ("manual" if event.actor != "supervisor"
                                           else "deadline")
            metrics.rollback(cause, guard or "none")

    def record_arm_metrics(self, state: ro.RolloutState, champion: ArmWindow,
                           challenger: ArmWindow, resources: ResourceReadings | None,
                           device: str = "cpu") -> None:
        """Cost per inference and memory per arm (gauges, `device` as the memory's label),
        refreshed every control tick."""
        metrics = get_metrics()
        price = self._cfg.judge.price_per_replica_second
        arms = (("champion", state.champion, champion,
                 resources.champion if resources else None),
                ("challenger", state.challenger, challenger,
                 resources.challenger if resources else None))
        for arm, ref, window, res in arms:
            if ref is None:
                continue
            if price is not None and window.n_requests:
                metrics.cost(arm, ref.version, price * window.busy_s / window.n_requests)
            if res is not None:
                metrics.memory(arm, ref.version, device, res.used_bytes, res.total_bytes)

    def close(self) -> None:
        self._alerts.flush(5.0)
        self._alerts.close()

    # --- pieces ----------------------------------------------------------------------------

    def _keep_capacity(self, new: ro.RolloutState, scale_up: bool) -> None:
        """The champion (back on all traffic) gets the capacity it needs, in a thread of its
        own: waiting for its new replicas must not hold up the alerts and runs behind it."""
        if self._cfg.slots.autoscaling is None and not scale_up:
            return  # fixed counts: the champion is sized for all the traffic already

        def handover() -> None:
            with _isolated("keeping the champion's capacity"):
                self._capacity.after_rollback(new.champion_slot, new.free_slot, scale_up)

        threading.Thread(target=handover, name="capacity-handover", daemon=True).start()

    def _update_registry(self, old: ro.RolloutState, new: ro.RolloutState,
                         event: ro.Event) -> None:
        reg, actor, reason = self._registry, event.actor, event.reason
        if (event.name in ("rolled_back", "load_failed", "superseded", "aborted")
                and old.challenger is not None):
            version = old.challenger.version
            if reg.alias_version(CHALLENGER) == version:
                reg.delete_alias(CHALLENGER, actor=actor, reason=reason)
            self._tag(version, event.name, reason)
        elif event.name == "promoted" and old.challenger and old.champion:
            reg.set_alias(PREVIOUS_CHAMPION, old.champion.version, actor=actor, reason=reason)
            reg.set_alias(CHAMPION, old.challenger.version, actor=actor, reason=reason)
            if reg.alias_version(CHALLENGER) == old.challenger.version:
                reg.delete_alias(CHALLENGER, actor=actor, reason=reason)
            self._tag(old.challenger.version, "promoted", reason)
        elif event.name == "restored" and new.champion and old.champion:
            reg.set_alias(CHAMPION, new.champion.version, actor=actor, reason=reason)
            reg.set_alias(PREVIOUS_CHAMPION, old.champion.version, actor=actor, reason=reason)
            self._tag(old.champion.version, "rolled_back_after_promotion", reason)

    def _tag(self, version: str, verdict: str, reason: str) -> None:
        self._registry.set_version_tag(version, VERDICT_TAG, verdict)
        self._registry.set_version_tag(version, REASON_TAG, reason[:4000])
        self._registry.set_version_tag(version, "gateway.decided_at",
                                       time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def _record(self, old: ro.RolloutState, new: ro.RolloutState, event: ro.Event,
                table_from: int, table_to: int) -> AuditRecord:
        challenger = new.challenger or old.challenger
        champion = new.champion or old.champion
        return AuditRecord(
            time=time.time(), event=event.name, actor=event.actor, model=self._cfg.model.name,
            rollout_id=new.rollout_id or old.rollout_id, phase_from=old.phase.value,
            phase_to=new.phase.value, table_version_from=table_from, table_version_to=table_to,
            champion_version=champion.version if champion else None,
            challenger_version=challenger.version if challenger else None,
            reason=event.reason, verdict=event.verdict)

    def _alert(self, old: ro.RolloutState, new: ro.RolloutState, event: ro.Event) -> Alert:
        challenger = old.challenger or new.challenger
        champion = new.champion
        what = f"v{challenger.version}" if challenger else "challenger"
        return Alert(
            title=f"{self._cfg.app_name}: {self._cfg.model.name} {what} {event.name}",
            severity=event.alert or "info", summary=event.reason or event.name,
            model=self._cfg.model.name, rollout_id=new.rollout_id or old.rollout_id,
            champion_version=champion.version if champion else None,
            challenger_version=challenger.version if challenger else None,
            action=event.action.value if event.action else event.name,
            reasons=tuple(r for r in event.reason.split("; ") if r),
            details={"verdict": event.verdict} if event.verdict else {})

    def _track_run(self, old: ro.RolloutState, new: ro.RolloutState, event: ro.Event,
                   champion: ArmWindow, challenger: ArmWindow,
                   timeline: Mapping[str, Any] | None = None) -> None:
        rid = new.rollout_id
        if rid is None:
            return
        run = self._runs.get(rid)
        if run is None and event.name != "rollout_started":  # e.g. after a restart
            run = RolloutRun.find(self._tracking_uri, self._cfg.supervisor.rollout_experiment,
                                  rid)
        if event.name == "rollout_started" and new.challenger and new.champion:
            self._runs[rid] = RolloutRun.start(
                self._tracking_uri, self._cfg.supervisor.rollout_experiment, rid,
                self._cfg.model.name, new.champion.version, new.challenger.version,
                self._cfg.rollout.to_params())
            return
        if run is None:
            return
        if event.verdict:
            run.log_guards(old.step, list(event.verdict.get("results", [])))
        if new.phase in (ro.Phase.PROMOTED, ro.Phase.ROLLED_BACK, ro.Phase.FAILED):
            with tempfile.TemporaryDirectory() as tmp:
                artifacts = self._drift_report(champion, challenger, Path(tmp))
                if timeline is not None:
                    with _isolated("rollout report"):
                        artifacts.update(timeline_artifacts(timeline, Path(tmp)))
                outcome = event.name if event.name in ("superseded", "aborted") else \
                    new.phase.value
                run.finish(outcome, event.reason, event.verdict, artifacts)
            self._runs.pop(rid, None)

    @staticmethod
    def _drift_report(champion: ArmWindow, challenger: ArmWindow,
                      folder: Path) -> dict[str, Path]:
        if champion.is_empty() or challenger.is_empty():
            return {}
        out = folder / "drift_report.html"
        try:
            page = _render_drift_html(champion.to_bytes(), challenger.to_bytes())
        except ValueError as exc:  # e.g. no outputs to compare (every call failed)
            log.info("no drift report: %s", exc)
            return {}
        out.write_text(page, encoding="utf-8")
        return {"drift_report.html": out}


def _render_drift_html(champion: bytes, challenger: bytes) -> str:
    """The drift report's HTML, rendered in a Ray worker that exits afterwards when Ray is
    up: evidently and pandas take ~150 MiB once imported, which the long-lived supervisor
    would otherwise keep for good (its memory stepped up at the first rollout's end)."""
    import ray

    if not ray.is_initialized():
        return _render_here(champion, challenger)
    task = ray.remote(num_cpus=0, max_calls=1)(_render_here)
    return str(ray.get(task.remote(champion, challenger), timeout=300))


def _render_here(champion: bytes, challenger: bytes) -> str:
    from guards.drift_report import render_drift_report

    with tempfile.TemporaryDirectory() as tmp:
        path = render_drift_report(ArmWindow.from_bytes(champion), ArmWindow.from_bytes(challenger),
                                   Path(tmp) / "drift_report.html")
        return path.read_text(encoding="utf-8")
