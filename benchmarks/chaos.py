"""Chaos suite: infrastructure and model faults under bounded loopback load.

    python -m benchmarks.chaos [--case NAME ...] [--json OUT]

Each case deploys the real gateway on a private local Ray instance (MLflow on SQLite, or a
real `mlflow server` for `mlflow_down`), drives open-loop traffic through the Serve proxy
(`gateway.demo.traffic.Traffic`), injects one fault and reports:

- client-visible errors (non-2xx answers and transport errors), with their times;
- time to recover (what "recovered" means is named per case);
- lost records: audit records missing for transitions the case observed (or duplicated for
  one transition), the rollout's phase and verdict against what the case expects, and
  `POST /v1/feedback` for request ids served during the fault (each must get 202, or be
  accounted for by a clear 503 that a later retry turns into a 202).

Cases state the intended behaviour (issue 13): a slot replica lost to the infrastructure is
not counted against the challenger (the rollout is held and resumes), an unreachable
registry holds the rollout, and no audit record, verdict or feedback is lost. A case that
fails says which check failed and with what evidence. The e2e tests
(`tests/e2e/gateway/test_chaos.py`) run the key cases through the same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from gateway.demo.models import LinearModel

# --- fault-injecting models (pickled by value: replicas need not import this module) ------


class HangingModel(LinearModel):
    """A healthy linear model whose loading takes `hang_s` seconds (a stuck download, a
    dead-locked initialiser)."""

    hang_s: float = 0.0

    def load_context(self, context):  # type: ignore[no-untyped-def]  # MLflow reads hints
        time.sleep(self.hang_s)


class LeakyModel(LinearModel):
    """A linear model that keeps `leak_bytes` of touched memory per prediction. A thread
    allocates it (a cache growing behind the requests), so the service time stays the
    same and only the memory guard can tell."""

    leak_bytes: int = 0

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        import queue

        if "_leaks" not in self.__dict__:
            self._leaks: queue.SimpleQueue[int] = queue.SimpleQueue()
            threading.Thread(target=self._leak, daemon=True).start()
        self._leaks.put(self.leak_bytes)
        return super().predict(context, model_input, params)

    def _leak(self) -> None:
        hog = []
        while True:
            hog.append(b"x" * self._leaks.get())  # written, so resident (not lazy zeros)


def register_custom(registry: Any, model: Any, description: str) -> Any:
    """Register `model` (its class's module pickled by value: replicas need not import it)
    as a new version, with its requirements given: MLflow would otherwise load the model
    to infer them (and hang)."""
    import cloudpickle
    import mlflow
    import mlflow.pyfunc

    from gateway.demo.models import tensor_signature
    from gateway.demo.run import _use_experiment

    module = sys.modules[type(model).__module__]
    cloudpickle.register_pickle_by_value(module)
    try:
        _use_experiment(registry)
        with mlflow.start_run(run_name=description) as run:
            mlflow.pyfunc.log_model(name="model", python_model=model,
                                    signature=tensor_signature(),
                                    pip_requirements=["mlflow", "numpy"])
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    return registry.register(f"runs:/{run.info.run_id}/model",
                             tags={"description": description})


def hanging(hang_s: float) -> HangingModel:
    from gateway.demo.models import demo_weights

    model = HangingModel(demo_weights(), 0.1)
    model.hang_s = hang_s
    return model


def leaky(leak_bytes: int) -> LeakyModel:
    from gateway.demo.models import demo_weights

    model = LeakyModel(demo_weights(), 0.1)
    model.leak_bytes = leak_bytes
    return model


# --- what the clients saw --------------------------------------------------------------


@dataclass
class Seen:
    """One answer: when it was sent (wall clock), its status, latency and request id."""

    sent: float
    status: int
    latency_s: float
    request_id: str
    arm: str


class Recorder:
    """`on_answer` for Traffic: keeps every answer (thread-safe enough: appends only)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def __call__(self, answer: Any, resp: Any, latency_s: float) -> None:
        rid = resp.headers.get("x-request-id", "") if resp is not None else ""
        self.seen.append(Seen(answer.sent, answer.status, latency_s, rid, answer.arm))

    def errors(self, since: float = 0.0, until: float = float("inf")) -> list[Seen]:
        return [s for s in self.seen if since <= s.sent < until and not 200 <= s.status < 300]

    def served(self, since: float, until: float) -> list[str]:
        return [s.request_id for s in self.seen
                if since <= s.sent < until and s.status == 200 and s.request_id]


def client_summary(rec: Recorder, fault_at: float | None = None) -> dict[str, Any]:
    """Requests, errors by status, and the errors' offsets from the fault (seconds)."""
    errors = rec.errors()
    out: dict[str, Any] = {"requests": len(rec.seen), "errors": len(errors),
                           "error_statuses": dict(Counter(str(e.status) for e in errors))}
    if fault_at is not None and errors:
        out["error_offsets_s"] = [round(e.sent - fault_at, 3) for e in errors[:20]]
    if errors:  # a transport error after ~timeout_s is a timeout; at once, a refused call
        out["error_latency_s"] = [round(e.latency_s, 3) for e in errors[:20]]
        out["first_error_sent_s_after_start"] = round(errors[0].sent - rec.seen[0].sent, 3)
    return out


@contextlib.contextmanager
def load(url: str, rate: float, max_s: float = 600.0) -> Iterator[Recorder]:
    """Open-loop traffic at `rate` req/s through the proxy for the duration of the block."""
    from gateway.demo.traffic import Traffic, random_rows

    rec = Recorder()
    with Traffic(url, rate=rate, max_s=max_s, payload=random_rows(seed=13), on_answer=rec):
        yield rec


def send_feedback(url: str, request_ids: Sequence[str], retry_after_s: float = 0.0,
                  ) -> dict[str, Any]:
    """POST /v1/feedback for each id; a 503 (supervisor unreachable, retry later) is retried
    once after `retry_after_s`. Lost: ids whose final answer is not 202."""
    import httpx

    first: Counter[str] = Counter()
    final: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=10.0, trust_env=False) as client:
        def post(rid: str) -> int:
            try:
                return client.post("/v1/feedback", json={"request_id": rid,
                                                         "outcome": True}).status_code
            except httpx.HTTPError:
                return 599

        for rid in request_ids:
            final[rid] = post(rid)
            first[str(final[rid])] += 1
        retry = [rid for rid, status in final.items() if status in (503, 599)]
        if retry:
            time.sleep(retry_after_s)
            for rid in retry:
                final[rid] = post(rid)
    lost = [rid for rid, status in final.items() if status != 202]
    return {"sent": len(request_ids), "first_answers": dict(first),
            "final_answers": dict(Counter(str(s) for s in final.values())),
            "lost": len(lost)}


# --- what the control plane did --------------------------------------------------------


@dataclass
class Snapshot:
    at: float
    phase: str
    step: int | None
    held: bool
    weight: float
    rollout_id: str | None
    reachable: bool  # the supervisor answered (not the replica's local view)


class StatusPoller:
    """Polls GET /admin/rollout every `interval_s` on a thread and keeps each change."""

    def __init__(self, url: str, token: str, interval_s: float = 0.25) -> None:
        self._url, self._token, self._interval = url, token, interval_s
        self.changes: list[Snapshot] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="status-poller")

    def __enter__(self) -> StatusPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self._url, timeout=6.0, trust_env=False) as client:
            while not self._stop.is_set():
                with contextlib.suppress(Exception):
                    s = client.get("/admin/rollout",
                                   headers={"authorization": f"Bearer {self._token}"}).json()
                    snap = Snapshot(time.time(), s["phase"], s.get("step"),
                                    bool(s.get("held")), float(s["table"]["challenger_weight"]),
                                    s.get("rollout_id"), "supervisor" not in s)
                    last = self.changes[-1] if self.changes else None
                    if last is None or (last.phase, last.step, last.held, last.weight,
                                        last.rollout_id, last.reachable) != (
                            snap.phase, snap.step, snap.held, snap.weight,
                            snap.rollout_id, snap.reachable):
                        self.changes.append(snap)
                self._stop.wait(self._interval)

    def first(self, since: float, pred: Callable[[Snapshot], bool],
              wait_s: float = 5.0) -> float | None:
        """When a snapshot taken after `since` first satisfied `pred` (waiting up to
        `wait_s` for the next polls: the caller may have seen it first)."""
        deadline = time.monotonic() + wait_s
        while True:
            found = next((c.at for c in list(self.changes) if c.at >= since and pred(c)), None)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(self._interval)


def audit_check(records: Sequence[dict[str, Any]], changes: Sequence[Snapshot],
                rollout_id: str) -> dict[str, Any]:
    """Audit records of `rollout_id` against the transitions a poller saw: every phase the
    rollout was seen in, every step it was seen to reach and every hold must have a record
    (missing), and no transition may be recorded twice (duplicates: same event, phase and
    table version; or more step_advanced records than steps)."""
    ours = [r for r in records if r.get("rollout_id") == rollout_id]
    events = [r["event"] for r in ours]
    seen = [c for c in changes if c.rollout_id == rollout_id]
    missing: list[str] = []
    for phase in dict.fromkeys(c.phase for c in seen):
        if phase != "loading" and not any(r.get("phase_to") == phase for r in ours):
            missing.append(f"phase {phase}")
    steps = sorted({c.step for c in seen if c.step is not None})
    advanced = events.count("step_advanced")
    if steps and advanced < steps[-1] - steps[0]:
        missing.append(f"step_advanced to step {steps[-1]} (records: {advanced})")
    if any(c.held for c in seen) and "held" not in events:
        missing.append("held")
    keys = Counter((r["event"], r.get("phase_to"), r.get("table_version_to")) for r in ours)
    duplicates = [f"{k[0]}->{k[1]}@{k[2]}" for k, n in keys.items() if n > 1]
    if steps and advanced > max(steps) - min(steps):
        duplicates.append(f"{advanced} step_advanced records for steps {steps}")
    for once in ("rollout_started", "loaded"):
        if events.count(once) > 1:
            duplicates.append(f"{events.count(once)} {once} records")
    return {"events": events, "missing": missing, "duplicates": duplicates,
            "reasons": {r["event"]: r.get("reason", "") for r in ours if r.get("reason")}}


def read_audit(path: str) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


# --- the infrastructure a case runs on -------------------------------------------------


@dataclass
class Env:
    """Where a case runs: the Serve base URL, the admin token and a registry."""

    url: str
    token: str
    registry: Any
    rate: float = 20.0  # open-loop request rate of every case
    models: dict[str, Any] = field(default_factory=dict)  # cached champion / healthy refs

    def model(self, key: str) -> Any:
        """A healthy linear version registered once per registry (v1: champion)."""
        if key not in self.models:
            from gateway.demo.run import register_pyfunc_model
            from tests.e2e.gateway.harness import linear

            scale = {"v1": 1.0, "v2": 1.01}.get(key, 1.02)
            self.models[key] = register_pyfunc_model(self.registry, linear(scale=scale), key)
        return self.models[key]

    def fresh(self, what: str) -> Any:
        """A new healthy challenger version: a version once judged (rolled back) is never
        rolled out again, so each case gets its own."""
        return self.model(f"{what}-{uuid.uuid4().hex[:6]}")


@dataclass
class CaseResult:
    name: str
    passed: bool = False
    checks: dict[str, bool] = field(default_factory=dict)
    client: dict[str, Any] = field(default_factory=dict)
    recover_s: dict[str, float | None] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    feedback: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, name: str, ok: bool) -> None:
        self.checks[name] = bool(ok)

    def done(self) -> CaseResult:
        self.passed = all(self.checks.values()) if self.checks else False
        return self


def config(name: str, overrides: dict[str, Any], *, judged: bool = False) -> Any:
    from tests.e2e.gateway.harness import gateway_config

    cfg = gateway_config(overrides, judged=judged)
    return replace(cfg, app_name=f"chaos-{name}"[:40])


def hold(weight: float) -> list[dict[str, Any]]:
    return [{"weight": weight, "min_requests": 10**9, "min_duration_s": 10**6}]


def timed_then_hold(first_s: float) -> list[dict[str, Any]]:
    """Step 0 (10%) passes after `first_s` seconds; step 1 (30%) holds."""
    return [{"weight": 10.0, "min_requests": 0, "min_duration_s": first_s}, *hold(30.0)]


@contextlib.contextmanager
def gateway(env: Env, cfg: Any, challenger: Any | None,
            wait_phase: str | None = "canary") -> Iterator[Any]:
    from tests.e2e.gateway.harness import deployed

    with deployed(env.url, env.registry, env.model("v1"), challenger, cfg,
                  wait_phase=wait_phase) as app:
        yield app


def status(app: Any) -> dict[str, Any]:
    return dict(app.status())


def wait_until(pred: Callable[[], Any], timeout_s: float, interval_s: float = 0.2) -> Any:
    """pred()'s first truthy value, or None after `timeout_s` (a case reports, not raises)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = pred()
            if value:
                return value
        time.sleep(interval_s)
    return None


def since(t0: float, t: float | None) -> float | None:
    return None if t is None else round(t - t0, 3)


def serve_running(app_name: str, deployment: str) -> int:
    """RUNNING replicas of one deployment, per Serve's controller."""
    from ray import serve

    dep = serve.status().applications[app_name].deployments[deployment]
    running = {str(k): v for k, v in dep.replica_states.items()}.get("RUNNING", 0)
    return int(running) if dep.status == "HEALTHY" else 0


def replica_actors(app_name: str, deployment: str) -> list[tuple[str, str]]:
    """(name, namespace) of the deployment's replica actors."""
    import ray

    return [(a["name"], a["namespace"]) for a in ray.util.list_named_actors(all_namespaces=True)
            if f"{app_name}#{deployment}#" in a["name"]]


def kill_actor(name: str, namespace: str) -> None:
    import ray

    ray.kill(ray.get_actor(name, namespace=namespace), no_restart=False)


def slot_pids(st: dict[str, Any], slot: str) -> dict[str, int]:
    return {rid: int(r["pid"]) for rid, r in (st.get("slots") or {}).get(slot, {}).items()
            if r.get("pid")}


def finish(result: CaseResult, app: Any, rec: Recorder, poller: StatusPoller,
           rollout_id: str, fault_at: float | None, t0: float) -> CaseResult:
    st = status(app)
    result.client = client_summary(rec, fault_at)
    path = app.cfg.supervisor.audit_path
    # the audit record follows the state change (and its registry write) by a moment
    wait_until(lambda: not audit_check(read_audit(path), poller.changes, rollout_id)["missing"],
               15.0)
    result.audit = audit_check(read_audit(path), poller.changes, rollout_id)
    result.final = {"phase": st["phase"], "step": st.get("step"), "held": st.get("held"),
                    "reason": st.get("reason"), "rollout_id": st.get("rollout_id"),
                    "weight": st["table"]["challenger_weight"]}
    result.check("no audit record missing", not result.audit["missing"])
    result.check("no duplicate audit record", not result.audit["duplicates"])
    if result.feedback:
        result.check("no feedback lost", result.feedback["lost"] == 0)
    result.seconds = round(time.monotonic() - t0, 1)
    result.notes.append("transitions seen: " + "; ".join(
        f"+{c.at - (fault_at or c.at):.1f}s {c.phase}/{c.step}/held={c.held}/w={c.weight:g}"
        f"{'' if c.reachable else '/supervisor unreachable'}" for c in poller.changes))
    return result.done()


# --- cases -----------------------------------------------------------------------------


def case_challenger_replica(env: Env, how: str = "ray_kill") -> CaseResult:
    """1. The challenger's only slot replica dies mid-canary (ray.kill or SIGKILL)."""
    t0 = time.monotonic()
    result = CaseResult(f"challenger_replica_{how}")
    cfg = config(f"chal-{how}", {"rollout": {"steps": hold(30.0), "auto_promote": False}},
                 judged=True)
    with gateway(env, cfg, env.fresh(cfg.app_name)) as app, \
            StatusPoller(env.url, env.token) as poller, load(env.url, env.rate) as rec:
        time.sleep(3.0)
        st = status(app)
        rollout_id, slot = st["rollout_id"], ("b" if st["table"]["champion_slot"] == "a" else "a")
        old = slot_pids(st, slot)
        fault_at = time.time()
        if how == "ray_kill":
            victims = replica_actors(cfg.app_name, f"slot_{slot}")
            result.notes.append(f"killed actor {victims[0][0]}")
            kill_actor(*victims[0])
        else:
            pid = next(iter(old.values()))
            result.notes.append(f"SIGKILL to pid {pid}")
            os.kill(pid, signal.SIGKILL)
        time.sleep(2.0)
        result.feedback = send_feedback(env.url, rec.served(fault_at - 1, fault_at + 2))

        def slot_back() -> bool:
            pids = slot_pids(status(app), slot)
            return serve_running(cfg.app_name, f"slot_{slot}") >= 1 and \
                bool(set(pids.values()) - set(old.values()))

        back = wait_until(slot_back, 90)
        back_at = time.time() if back else None
        resumed = wait_until(lambda: (s := status(app))["phase"] == "canary"
                             and not s["held"] and s["table"]["challenger_weight"] == 30.0, 30)
        time.sleep(2.0)
        result.recover_s = {"replica_replaced_s": since(fault_at, back_at),
                            "rollout_resumed_s": since(fault_at, poller.first(
                                fault_at + 0.01, lambda c: c.phase == "canary" and not c.held
                                and c.weight == 30.0 and back_at is not None and c.at >= back_at)
                                if resumed else None)}
        finish(result, app, rec, poller, rollout_id, fault_at, t0)
        ev = result.audit["events"]
        result.check("zero client-visible errors", result.client["errors"] == 0)
        result.check("not rolled back (lost to the infrastructure)",
                     result.final["phase"] == "canary" and "rolled_back" not in ev)
        result.check("held while the replica was replaced",
                     bool({"held", "replica_lost"} & set(ev)))
        result.check("resumed after the replacement", bool(resumed) and bool(
            {"hold_released", "resumed", "replica_restored"} & set(ev)))
        return result.done()


def case_champion_replica(env: Env) -> CaseResult:
    """2. One of the champion slot's two replicas dies mid-canary."""
    cfg = config("champ", {"slots": {"num_replicas": 2},
                           "rollout": {"steps": hold(30.0), "auto_promote": False}}, judged=True)
    return kill_one_of_two(env, CaseResult("champion_replica"), cfg,
                           lambda st: f"slot_{st['table']['champion_slot']}")


def case_ingress_replica(env: Env) -> CaseResult:
    """3. One of two ingress replicas dies under load."""
    cfg = config("ingress", {"ingress": {"num_replicas": 2},
                             "rollout": {"steps": hold(30.0), "auto_promote": False}},
                 judged=True)
    return kill_one_of_two(env, CaseResult("ingress_replica"), cfg, lambda _st: "ingress")


def kill_one_of_two(env: Env, result: CaseResult, cfg: Any,
                    deployment_of: Callable[[dict[str, Any]], str]) -> CaseResult:
    """Kill one of a deployment's two replicas mid-canary, under load: no client error, the
    rollout unaffected, the replica replaced."""
    t0 = time.monotonic()
    with gateway(env, cfg, env.fresh(cfg.app_name)) as app, \
            StatusPoller(env.url, env.token) as poller, load(env.url, env.rate) as rec:
        time.sleep(3.0)
        st = status(app)
        rollout_id, deployment = st["rollout_id"], deployment_of(st)
        victims = replica_actors(cfg.app_name, deployment)
        result.notes.append(f"killed actor {victims[0][0]} of {len(victims)}")
        fault_at = time.time()
        kill_actor(*victims[0])
        time.sleep(2.0)
        result.feedback = send_feedback(env.url, rec.served(fault_at - 1, fault_at + 2))
        gone = wait_until(lambda: serve_running(cfg.app_name, deployment) < 2, 10, 0.05)
        back = wait_until(lambda: serve_running(cfg.app_name, deployment) >= 2, 90)
        back_at = time.time() if back else None
        time.sleep(2.0)
        result.recover_s = {"replica_replaced_s": since(fault_at, back_at)}
        if not gone:
            result.notes.append("Serve never reported fewer than 2 running replicas")
        finish(result, app, rec, poller, rollout_id, fault_at, t0)
        result.check("zero client-visible errors", result.client["errors"] == 0)
        result.check("rollout unaffected", result.final["phase"] == "canary"
                     and result.final["rollout_id"] == rollout_id)
        result.check("replica replaced", back_at is not None)
        return result.done()


def case_supervisor(env: Env) -> CaseResult:
    """4. The supervisor dies mid-step: it resumes at the same step and acts once."""
    import ray

    t0 = time.monotonic()
    result = CaseResult("supervisor")
    step_s = 15.0
    cfg = config("sup", {"rollout": {"steps": timed_then_hold(step_s), "auto_promote": False}})
    with gateway(env, cfg, env.fresh(cfg.app_name)) as app, \
            StatusPoller(env.url, env.token) as poller, load(env.url, env.rate) as rec:
        st = status(app)
        rollout_id = st["rollout_id"]
        loaded_at = poller.first(0, lambda c: c.phase == "canary") or time.time()
        time.sleep(4.0)
        served_before = rec.served(0, time.time())[-50:]
        fault_at = time.time()
        ray.kill(ray.get_actor(cfg.control.supervisor_name, namespace=cfg.control.namespace),
                 no_restart=False)
        answering = wait_until(lambda: "supervisor" not in status(app), 60)
        back_at = time.time() if answering else None
        result.feedback = send_feedback(env.url, served_before, retry_after_s=2.0)
        advanced = wait_until(lambda: status(app).get("step") == 1, step_s + 60)
        time.sleep(3.0)
        step1_at = poller.first(0, lambda c: c.step == 1)
        result.recover_s = {"supervisor_answering_s": since(fault_at, back_at),
                            "step_advanced_after_loaded_s": since(loaded_at, step1_at)}
        finish(result, app, rec, poller, rollout_id, fault_at, t0)
        ev = result.audit["events"]
        result.check("zero client-visible errors", result.client["errors"] == 0)
        result.check("same rollout resumed", result.final["rollout_id"] == rollout_id)
        result.check("advanced once, to step 1", bool(advanced) and ev.count("step_advanced") == 1)
        result.check("step clock kept (no restart of step 0)", step1_at is not None
                     and step1_at - loaded_at < step_s + 8.0)
        return result.done()


# --- a real MLflow tracking server -------------------------------------------------------


class MlflowServer:
    """`mlflow server` on SQLite and a local artifact root, on a loopback port; stop() and
    start() again on the same port and store."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        from benchmarks.common import free_port

        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        exe = Path(sys.executable).with_name("mlflow")
        (self.root / "artifacts").mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(exe), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--default-artifact-root", (self.root / "artifacts").as_uri(),
             "--no-serve-artifacts", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "server.log", "ab"),  # noqa: SIM115
            start_new_session=True)  # its own group: stop() reaches its workers too
        import httpx

        if not wait_until(lambda: httpx.get(f"{self.url}/health", timeout=2.0,
                                            trust_env=False).status_code == 200, timeout_s, 0.5):
            self.stop()
            raise RuntimeError(f"mlflow server did not start; see {self.root / 'server.log'}")

    def stop(self) -> None:
        """SIGTERM to the server's process group (only processes it started), then wait."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        from benchmarks.procs import stop_process_group

        stop_process_group(proc, grace_s=30.0)


def case_mlflow_down(env: Env, server: MlflowServer, down_s: float = 25.0) -> CaseResult:
    """5. The tracking server stops mid-step: serving unaffected, the rollout holds (no step
    advance while the registry is unreachable), resumes when it is back, nothing lost.
    `env.registry` must point at `server`."""
    from gateway.control.store import RolloutStore

    t0 = time.monotonic()
    result = CaseResult("mlflow_down")
    step_s = 10.0
    cfg = config("mlflow", {"rollout": {"steps": timed_then_hold(step_s), "auto_promote": False},
                            "supervisor": {"judge_persist_s": 2.0}})
    with gateway(env, cfg, env.fresh(cfg.app_name)) as app, \
            StatusPoller(env.url, env.token) as poller, load(env.url, env.rate) as rec:
        rollout_id = status(app)["rollout_id"]
        time.sleep(3.0)
        fault_at = time.time()
        server.stop()
        time.sleep(3.0)
        result.feedback = send_feedback(env.url, rec.served(fault_at - 1, fault_at + 2))
        time.sleep(max(0.0, down_s - 3.0))
        step_during = [c.step for c in poller.changes if fault_at <= c.at]
        restart_at = time.time()
        server.start()
        advanced = wait_until(lambda: status(app).get("step") == 1, 180)
        time.sleep(3.0)
        persisted = RolloutStore(env.registry, cfg.app_name).load_state(env.model("v1"))
        step1_at = poller.first(0, lambda c: c.step == 1)
        result.recover_s = {"down_s": round(restart_at - fault_at, 1),
                            "step_advanced_after_restart_s": since(restart_at, step1_at)}
        finish(result, app, rec, poller, rollout_id, fault_at, t0)
        result.final["persisted"] = {"phase": persisted.phase.value, "step": persisted.step,
                                     "rollout_id": persisted.rollout_id}
        result.check("zero client-visible errors", result.client["errors"] == 0)
        result.check("held while the registry was down (no step advance)",
                     1 not in step_during and step1_at is not None and step1_at >= restart_at)
        result.check("resumed when it was back", bool(advanced))
        result.check("registry state caught up", persisted.rollout_id == rollout_id
                     and persisted.step == 1)
        return result.done()


def case_bad_artifact(env: Env) -> CaseResult:
    """6. The challenger's model file is missing, then corrupt: load_failed names the cause,
    no client sees an error."""
    from mlflow import MlflowClient

    from gateway.demo.run import register_pyfunc_model
    from model_registry.refs import CHALLENGER
    from tests.e2e.gateway.harness import linear

    t0 = time.monotonic()
    result = CaseResult("bad_artifact")
    cfg = config("artifact", {"rollout": {"steps": hold(30.0), "auto_promote": False}})
    client = MlflowClient(tracking_uri=env.registry.tracking_uri)
    with gateway(env, cfg, None) as app, StatusPoller(env.url, env.token) as poller, \
            load(env.url, env.rate) as rec:
        for how in ("missing", "corrupt"):
            ref = register_pyfunc_model(env.registry, linear(scale=1.05), f"{how} artifact")
            uri = client.get_model_version_download_uri(env.registry.model_name, ref.version)
            pkl = Path(uri.removeprefix("file://")) / "python_model.pkl"
            if how == "missing":
                pkl.unlink()
            else:
                pkl.write_bytes(b"\x80\x05not a pickle" + os.urandom(64))
            fault_at = time.time()
            env.registry.set_alias(CHALLENGER, ref.version, actor="chaos", reason=how)
            tag = f"-v{ref.version}-"
            ended = wait_until(partial(_failed, app, tag), 60)
            reason = (ended or {}).get("reason") or ""
            result.recover_s[f"{how}_load_failed_s"] = since(
                fault_at, poller.first(fault_at, partial(_failed_seen, tag)))
            result.notes.append(f"{how}: reason {reason[:300]!r}")
            result.check(f"{how}: load_failed", bool(ended))
            # the version, and the loader's own error after it
            result.check(f"{how}: reason names the version and the error",
                         f"version {ref.version}" in reason
                         and bool(reason.rsplit(":", 1)[-1].strip()))
            if "python_model.pkl" not in reason:
                result.notes.append(f"{how}: the reason does not name the file at fault")
            if ended:
                rid = ended["rollout_id"]
                records = wait_until(partial(_audit_events, cfg, rid, "load_failed"), 15) or []
                result.check(f"{how}: one audit load_failed record", len(records) == 1)
            wait_until(lambda: status(app)["table"]["slot_models"].get(
                "b" if status(app)["table"]["champion_slot"] == "a" else "a") is None, 30)
        time.sleep(1.0)
    result.client = client_summary(rec)
    result.check("zero client-visible errors", result.client["errors"] == 0)
    result.notes.append("transitions seen: " + "; ".join(
        f"{c.phase}/{c.rollout_id}" for c in poller.changes))
    result.seconds = round(time.monotonic() - t0, 1)
    return result.done()


def _failed(app: Any, tag: str) -> dict[str, Any] | None:
    s = status(app)
    return s if s["phase"] == "failed" and tag in (s["rollout_id"] or "") else None


def _audit_events(cfg: Any, rollout_id: str, event: str) -> list[dict[str, Any]]:
    return [r for r in read_audit(cfg.supervisor.audit_path)
            if r.get("rollout_id") == rollout_id and r["event"] == event]


def _failed_seen(tag: str, c: Snapshot) -> bool:
    return c.phase == "failed" and tag in (c.rollout_id or "")


def case_hanging_load(env: Env, timeout_s: float = 8.0, hang_s: float = 40.0) -> CaseResult:
    """7. The challenger's load hangs longer than rollout.load_timeout_s."""
    t0 = time.monotonic()
    result = CaseResult("hanging_load")
    ref = register_custom(env.registry, hanging(hang_s), "hangs while loading")
    cfg = config("hang", {"rollout": {"steps": hold(30.0), "auto_promote": False,
                                      "load_timeout_s": timeout_s}})
    from model_registry.refs import CHALLENGER

    with gateway(env, cfg, None) as app, StatusPoller(env.url, env.token) as poller, \
            load(env.url, env.rate) as rec:
        time.sleep(1.0)
        fault_at = time.time()
        env.registry.set_alias(CHALLENGER, ref.version, actor="chaos", reason="hang")
        ended = wait_until(lambda: (s := status(app))["phase"] == "failed" and s, 60)
        time.sleep(2.0)
        rollout_id = (ended or status(app)).get("rollout_id") or ""
        result.recover_s = {"load_failed_s": since(fault_at, poller.first(
            fault_at, lambda c: c.phase == "failed"))}
        finish(result, app, rec, poller, rollout_id, fault_at, t0)
        reason = result.audit["reasons"].get("load_failed", "")
        result.check("zero client-visible errors", result.client["errors"] == 0)
        result.check("load_failed for the timeout", f"within {timeout_s:g}s" in reason)
        return result.done()


def case_memory_leak(env: Env, leak_bytes: int = 2**19) -> CaseResult:
    """8. The challenger keeps 512 KiB per request: the memory guard rolls it back."""
    t0 = time.monotonic()
    result = CaseResult("memory_leak")
    ref = register_custom(env.registry, leaky(leak_bytes), "leaks memory")
    cfg = config("leak", {"rollout": {"steps": hold(50.0), "auto_promote": False},
                          "supervisor": {"resource_interval_s": 1.0}}, judged=True)
    with gateway(env, cfg, ref) as app, StatusPoller(env.url, env.token) as poller, \
            load(env.url, min(env.rate, 20.0)) as rec:
        rollout_id = status(app)["rollout_id"]
        loaded_at = time.time()
        ended = wait_until(lambda: (s := status(app))["phase"] in ("rolled_back", "failed",
                                                                   "promoted") and s, 180)
        time.sleep(2.0)
        result.recover_s = {"rolled_back_after_loaded_s": since(loaded_at, poller.first(
            loaded_at, lambda c: c.phase == "rolled_back"))}
        finish(result, app, rec, poller, rollout_id, loaded_at, t0)
        reason = result.audit["reasons"].get("rolled_back", "")
        result.check("zero client-visible errors", result.client["errors"] == 0)
        result.check("rolled back", bool(ended) and ended["phase"] == "rolled_back")
        result.check("by the memory guard", "memory" in reason.lower())
        return result.done()


# --- the suite --------------------------------------------------------------------------

def case_challenger_ray_kill(env: Env) -> CaseResult:
    return case_challenger_replica(env, "ray_kill")


def case_challenger_sigkill(env: Env) -> CaseResult:
    return case_challenger_replica(env, "sigkill")


def case_mlflow_down_with_server(env: Env) -> CaseResult:
    return _with_server(env, case_mlflow_down)


CASES: dict[str, Callable[[Env], CaseResult]] = {
    "challenger_replica_ray_kill": case_challenger_ray_kill,
    "challenger_replica_sigkill": case_challenger_sigkill,
    "champion_replica": case_champion_replica,
    "ingress_replica": case_ingress_replica,
    "supervisor": case_supervisor,
    "mlflow_down": case_mlflow_down_with_server,
    "bad_artifact": case_bad_artifact,
    "hanging_load": case_hanging_load,
    "memory_leak": case_memory_leak,
}


def _with_server(env: Env, case: Callable[[Env, MlflowServer], CaseResult]) -> CaseResult:
    """Run `case` with a registry on its own `mlflow server`."""
    from model_registry.registry import ModelRegistry

    root = Path(tempfile.mkdtemp(prefix="chaos-mlflow-"))
    server = MlflowServer(root)
    server.start()
    try:
        registry = ModelRegistry(f"chaos-{uuid.uuid4().hex[:8]}", tracking_uri=server.url)
        return case(replace(env, registry=registry, models={}), server)
    finally:
        server.stop()


def run_case(name: str, env: Env) -> CaseResult:
    try:
        return CASES[name](env)
    except Exception as exc:  # a broken case is reported, the suite goes on
        result = CaseResult(name)
        result.notes.append(f"case raised {type(exc).__name__}: {exc}")
        return result


def run(names: Sequence[str], rate: float) -> dict[str, Any]:
    from benchmarks.common import local_serve, machine_info, prepare_env, temp_registry

    token = prepare_env()
    machine = machine_info()
    results = []
    with temp_registry() as registry, local_serve() as url:
        env = Env(url, token, registry, rate)
        for name in names:
            log(f"case {name} ...")
            r = run_case(name, env)
            log(f"  {'PASS' if r.passed else 'FAIL'} in {r.seconds:.0f}s: "
                f"{json.dumps(r.checks)} client {r.client} recover {r.recover_s}")
            results.append(asdict(r))
    return {"benchmark": "chaos", "machine": machine, "rate_rps": rate,
            "passed": [r["name"] for r in results if r["passed"]],
            "failed": [r["name"] for r in results if not r["passed"]], "cases": results}


def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new`'s cases, then `old`'s cases it did not run (each keeps its own machine line)."""
    ran = {c["name"] for c in new["cases"]}
    for c in new["cases"]:
        c.setdefault("machine", new["machine"])
    kept = [{**c, "machine": c.get("machine", old.get("machine"))}
            for c in old.get("cases", []) if c["name"] not in ran]
    order = list(CASES)
    cases = sorted([*new["cases"], *kept],
                   key=lambda c: order.index(c["name"]) if c["name"] in order else len(order))
    return {**new, "passed": [c["name"] for c in cases if c["passed"]],
            "failed": [c["name"] for c in cases if not c["passed"]], "cases": cases}


def log(msg: str) -> None:
    print(f"[chaos] {msg}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--case", action="append", choices=sorted(CASES), dest="cases",
                   help="run only this case (repeatable); default: every case")
    p.add_argument("--rate", type=float, default=20.0, help="open-loop requests per second")
    p.add_argument("--json", type=Path, default=None,
                   help="write the report here (default benchmarks/results/chaos.json)")
    args = p.parse_args(argv)
    rep = run(args.cases or list(CASES), args.rate)
    from benchmarks.common import RESULTS_DIR, rounded

    out = args.json or RESULTS_DIR / "chaos.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.cases and out.exists():  # a partial run replaces its cases, keeps the others
        rep = merged(json.loads(out.read_text()), rep)
    out.write_text(json.dumps(rounded(rep), indent=2) + "\n")
    log(f"passed {rep['passed']}; failed {rep['failed']}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
