"""How fast the gateway acts: from a challenger's first failure to weight 0 on every replica.

    python -m benchmarks.rollback_time [--runs 5] [--quick] [--rate 60] [--weight 50]
                                       [--verbose]

One private local Ray instance; the gateway with TWO ingress replicas, the default triggers
and a rollout that holds the challenger at `--weight`% (50: >= 20 req/s reach it at 60 req/s).
Open-loop traffic at `--rate` req/s runs throughout. Each run registers a challenger that
passes its health check and then raises on every request (LinearModel with
Faults(error_rate=1.0)), points the `challenger` alias at it, and records:

- first bad: when the first challenger failure was counted by an ingress replica (per-replica
  counters polled with `DeploymentHandle.broadcast`, every few ms, until seen);
- weight 0 everywhere: when every ingress replica reported a routing-table version at least
  that of the supervisor's weight-0 table (each replica's `/healthz` handler called through
  `broadcast`, every few ms);
- the supervisor's side from the audit log (table versions are wall-clock ms): the table that
  gave the challenger traffic (`loaded`) and the weight-0 table (`rolled_back`);
- client-visible errors (non-200 or transport errors) for the whole run.

Reported per run and as medians: first bad -> weight 0 on every replica (the goal, <= 1 s),
first bad -> weight-0 table published, published -> applied on every replica, and the poll
resolution. Prints JSON, writes benchmarks/results/rollback_time.json and a section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.common import (
    admin_status,
    gateway_config,
    local_serve,
    machine_info,
    machine_line,
    median,
    prepare_env,
    rate_traffic,
    register_linear,
    rounded,
    temp_registry,
    wait_for,
    write_json,
    write_section,
)

FAILURE_KEYS = ("challenger.server_error", "challenger.timeout")


@dataclass(frozen=True)
class Settings:
    runs: int
    rate: float
    weight: float
    replicas: int
    poll_interval_s: float
    poll_in_flight: int
    verbose: bool
    quick: bool


def parse_args(argv: Sequence[str] | None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rollback_time", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, help="rollouts to roll back (median reported); "
                   "default 5, 2 with --quick")
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--rate", type=float, default=60.0, help="client requests per second")
    p.add_argument("--weight", type=float, default=50.0, help="challenger weight, %%")
    p.add_argument("--replicas", type=int, default=2, help="ingress replicas")
    p.add_argument("--poll-interval-ms", type=float, default=10.0,
                   help="pause between replica polls (each poll asks every replica)")
    p.add_argument("--poll-in-flight", type=int, default=1,
                   help="outstanding polls: more gives finer resolution but loads the "
                   "replicas being measured")
    p.add_argument("--verbose", action="store_true", help="show the replicas' logs")
    a = p.parse_args(argv)
    return Settings(runs=a.runs or (2 if a.quick else 5), rate=a.rate, weight=a.weight,
                    replicas=a.replicas, poll_interval_s=a.poll_interval_ms / 1000.0,
                    poll_in_flight=a.poll_in_flight, verbose=a.verbose, quick=a.quick)


# --- per-replica evidence ------------------------------------------------------------------


@dataclass
class Poll:
    sent: float  # wall clock, like table versions
    received: float
    values: list[Any]  # one per replica, unordered


class _Loop:
    """One event loop on a thread for the whole benchmark: with RAY_SERVE_THROUGHPUT_OPTIMIZED
    a handle's router runs on (and stays bound to) the loop of its first caller."""

    _instance: _Loop | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance.loop


class ReplicaPoller:
    """Polls every ingress replica through `DeploymentHandle.broadcast`, a poll every
    `interval_s` with up to `in_flight` outstanding (so the resolution is not the round trip).

    There is no public per-replica view, so this calls two of the Ingress's own handlers:
    `_replica_counts()` (this replica's outcome counters) until a challenger failure shows,
    then `_healthz(None)` (this replica's current table version) until `stop()`. Results
    come unordered and without a replica id; every question asked here ("has any replica
    counted a failure?", "do all replicas have version >= v?") needs none.
    """

    def __init__(self, app_name: str, interval_s: float = 0.01, in_flight: int = 1) -> None:
        self._app_name = app_name
        self._interval_s = interval_s
        self._in_flight = in_flight
        self.baseline = 0
        self.count_polls: list[Poll] = []
        self.version_polls: list[Poll] = []
        self._seen_failure = False
        self._stop = threading.Event()
        self._future: Any = None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start polling; returns once the failure counters' baseline is known."""
        ready = threading.Event()
        self._future = asyncio.run_coroutine_threadsafe(self._run(ready), _Loop.get())
        if not ready.wait(timeout_s):
            raise TimeoutError("the replica poller did not start")

    def stop(self) -> None:
        self._stop.set()
        if self._future is not None:
            self._future.result(60)

    async def _ask(self, handle: Any, method: str, *args: Any) -> Poll:
        sent = time.time()
        values = await handle.broadcast(method, *args).results_async(timeout_s=5.0)
        return Poll(sent, time.time(), list(values))

    async def _one(self, handle: Any) -> None:
        if not self._seen_failure:
            poll = await self._ask(handle, "describe")
            poll.values = [v["counts"] for v in poll.values]
            self.count_polls.append(poll)
            if failures(poll.values) > self.baseline:
                self._seen_failure = True
            return
        poll = await self._ask(handle, "describe")
        poll.values = [v["table_version"] for v in poll.values]
        self.version_polls.append(poll)

    async def _run(self, ready: threading.Event) -> None:
        from ray import serve

        handle = serve.get_deployment_handle("ingress", self._app_name)
        self.baseline = failures([v["counts"] for v in
                                  (await self._ask(handle, "describe")).values])
        ready.set()
        pending: set[asyncio.Task[None]] = set()
        deadline = time.monotonic() + 300  # bounded whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            if len(pending) < self._in_flight:
                task = asyncio.ensure_future(self._one(handle))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.sleep(self._interval_s)
        await asyncio.gather(*pending, return_exceptions=True)


def failures(counts: list[dict[str, int]]) -> int:
    return sum(c.get(k, 0) for c in counts for k in FAILURE_KEYS)


# --- one run --------------------------------------------------------------------------------


@dataclass
class RunResult:
    version: str
    rollout_id: str = ""
    reason: str = ""
    phase: str = ""
    times: dict[str, float] = field(default_factory=dict)
    client: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def one_run(url: str, token: str, cfg: Any, registry: Any, bad: Any,
            s: Settings) -> RunResult:
    from gateway.control.audit import AuditLog
    from model_registry.refs import CHALLENGER

    result = RunResult(version=bad.version)
    poller = ReplicaPoller(cfg.app_name, s.poll_interval_s, s.poll_in_flight)
    with rate_traffic(f"{url}/v1/predict", s.rate, max_s=240) as traffic:
        time.sleep(0.5)
        poller.start()
        registry.set_alias(CHALLENGER, bad.version, actor="bench", reason="rollback benchmark")
        status = wait_for(lambda: _ended(admin_status(url, token), bad.version), 120,
                          f"the rollout of v{bad.version} to end", interval_s=0.2)
        time.sleep(1.0)  # traffic and polling go on after the rollback
        poller.stop()
    result.rollout_id, result.reason = status["rollout_id"], status.get("reason") or ""
    result.phase = status["phase"]
    records = wait_for(lambda: _audit(AuditLog(cfg.supervisor.audit_path), status["rollout_id"]),
                       60, "the audit records of the rollout")
    loaded, rolled = records
    result.times = timings(poller, loaded, rolled, s.replicas, result.notes)
    answers = traffic.answers
    result.client = {"requests": len(answers),
                     "errors": sum(1 for a in answers if a.status != 200),
                     "challenger_arm_answers": sum(1 for a in answers if a.arm == "challenger")}
    return result


def _ended(status: dict[str, Any], version: str) -> dict[str, Any] | None:
    ours = f"-v{version}-" in (status.get("rollout_id") or "")
    return status if ours and status["phase"] in ("rolled_back", "promoted", "failed") else None


def _audit(log: Any, rollout_id: str) -> tuple[int, int] | None:
    records = log.read(rollout_id)
    loaded = next((r for r in records if r.event == "loaded"), None)
    rolled = next((r for r in records if r.event == "rolled_back"), None)
    if loaded is None or rolled is None:
        return None
    return int(loaded.table_version_to), int(rolled.table_version_to)


def bounds(polls: list[Poll], happened: Callable[[Poll], bool]) -> tuple[float, float] | None:
    """When something first held, from polls whose answers were made at unknown instants
    between their send and receive times: after the latest send of a poll that shows it
    not yet, before the earliest receive of a poll that shows it. None if no poll shows it."""
    yes = [p.received for p in polls if happened(p)]
    if not yes:
        return None
    hi = min(yes)
    no = [p.sent for p in polls if not happened(p) and p.sent < hi]
    return (max(no) if no else min(p.sent for p in polls)), hi


def timings(poller: ReplicaPoller, loaded_v: int, rolled_v: int, replicas: int,
            notes: list[str]) -> dict[str, float]:
    """Milliseconds between the events of one run, from the polls and the audit versions;
    each polled instant is the midpoint of its bounds (see `bounds`)."""
    counts, versions = poller.count_polls, poller.version_polls
    bad = bounds(counts, lambda p: failures(p.values) > poller.baseline)
    every = bounds(versions, lambda p: len(p.values) == replicas and min(p.values) >= rolled_v)
    one = bounds(versions, lambda p: bool(p.values) and max(p.values) >= rolled_v)
    t: dict[str, float] = {"loaded_to_published_ms": float(rolled_v - loaded_v)}
    if bad is None or every is None or one is None:
        notes.append(f"incomplete evidence: first bad {bad}, every replica {every}")
        return t
    if any(len(p.values) != replicas for p in versions):
        notes.append("a broadcast answered with fewer replicas than deployed")
    if versions and min(p.sent for p in versions) > every[0]:
        notes.append("version polling began after the rollback: upper bounds only")
    first_bad, all_zero = sum(bad) / 2, sum(every) / 2
    published = rolled_v / 1000.0
    rtt = [p.received - p.sent for p in [*counts, *versions]]
    t.update({
        "first_bad_to_all_replicas_ms": (all_zero - first_bad) * 1000,
        "first_bad_to_all_replicas_upper_ms": (every[1] - bad[0]) * 1000,
        "first_bad_to_published_ms": (published - first_bad) * 1000,
        "loaded_to_first_bad_ms": (first_bad - loaded_v / 1000.0) * 1000,
        "published_to_all_replicas_ms": (all_zero - published) * 1000,
        "published_to_all_replicas_upper_ms": (every[1] - published) * 1000,
        "published_to_first_replica_upper_ms": (one[1] - published) * 1000,
        "poll_rtt_median_ms": median(rtt) * 1000,
        "first_bad_uncertainty_ms": (bad[1] - bad[0]) * 1000,
        "all_replicas_uncertainty_ms": (every[1] - every[0]) * 1000,
        "polls": float(len(counts) + len(versions)),
    })
    return t


# --- the whole benchmark -------------------------------------------------------------------


def rollback_config(registry: Any, s: Settings) -> Any:
    return gateway_config(registry, "bench-rollback", weight=s.weight,
                          overrides={"ingress": {"num_replicas": s.replicas,
                                                 "num_cpus": 0.2},
                                     "slots": {"num_cpus": 0.2}})


def deploy(url: str, token: str, cfg: Any, registry: Any, champion: Any) -> None:
    from ray import serve

    from gateway.app import build_app
    from model_registry.refs import CHALLENGER, CHAMPION

    registry.set_alias(CHAMPION, champion.version)
    with contextlib.suppress(Exception):
        registry.delete_alias(CHALLENGER)
    serve.run(build_app(cfg, registry.tracking_uri), name=cfg.app_name, route_prefix="/")
    wait_for(lambda: admin_status(url, token)["phase"] == "idle", 60, "an idle gateway")


def settled(url: str, token: str) -> bool:
    """The last rollout is over and its challenger's slot released."""
    status = admin_status(url, token)
    return status["phase"] not in ("loading", "canary", "shadow") and \
        status["table"]["slot_models"].get("b") is None


def run(s: Settings, command: str) -> dict[str, Any]:
    from gateway.demo.models import Faults

    token = prepare_env()
    machine = machine_info()
    runs: list[RunResult] = []
    with temp_registry() as registry, local_serve(verbose=s.verbose) as url:
        champion = register_linear(registry, "champion")
        bad = [register_linear(registry, f"bad challenger {i}", scale=1.01,
                               faults=Faults(error_rate=1.0)) for i in range(s.runs)]
        cfg = rollback_config(registry, s)
        from gateway.app import teardown

        deploy(url, token, cfg, registry, champion)
        try:
            for i, ref in enumerate(bad):
                wait_for(lambda: settled(url, token), 120, "the previous rollout to settle")
                log(f"run {i + 1}/{s.runs}: challenger v{ref.version}")
                r = one_run(url, token, cfg, registry, ref, s)
                log(f"  {r.phase}: {json.dumps(rounded(r.times, 1))} client {r.client}")
                runs.append(r)
        finally:
            teardown(cfg)
    machine["loadavg_1m_at_end"] = os.getloadavg()[0]
    return report(s, command, machine, runs, cfg)


def report(s: Settings, command: str, machine: dict[str, Any], runs: list[RunResult],
           cfg: Any) -> dict[str, Any]:
    keys = sorted({k for r in runs for k in r.times})
    med = {k: median([r.times[k] for r in runs if k in r.times]) for k in keys}
    worst = {k: max(r.times[k] for r in runs if k in r.times) for k in keys}
    errors = sum(r.client.get("errors", 0) for r in runs)
    goal = med.get("first_bad_to_all_replicas_ms", float("nan"))
    return {
        "benchmark": "rollback_time", "command": command, "machine": machine,
        "settings": asdict(s),
        "gateway": {"ingress_replicas": cfg.ingress.num_replicas,
                    "flush_interval_s": cfg.control.flush_interval_s,
                    "urgent_flush_s": cfg.control.urgent_flush_s,
                    "long_poll_timeout_s": cfg.control.long_poll_timeout_s,
                    "supervisor_tick_s": cfg.supervisor.tick_s, "triggers": "default"},
        "median": med, "max": worst, "client_errors": errors,
        "rolled_back": sum(1 for r in runs if r.phase == "rolled_back"),
        "goals": {"first_bad_to_all_replicas<=1000ms": goal <= 1000.0,
                  "zero_client_errors": errors == 0},
        "runs": [asdict(r) for r in runs],
    }


def markdown(rep: dict[str, Any]) -> str:
    m, x, s = rep["median"], rep["max"], rep["settings"]

    def row(key: str, what: str) -> str:
        a, b = m.get(key), x.get(key)
        return f"| {what} | {_num(a)} | {_num(b)} |"

    lines = [
        "## Time to rollback", "", machine_line(rep["machine"]), "",
        f"Command: `{rep['command']}`. {len(rep['runs'])} runs; {s['replicas']} ingress "
        f"replicas; {s['rate']:g} req/s open-loop traffic; challenger at {s['weight']:g}% "
        "raising on every request after its health check; default triggers; gateway "
        f"defaults for flush (every {rep['gateway']['flush_interval_s']:g} s, "
        f"{rep['gateway']['urgent_flush_s']:g} s after a failed challenger call) and "
        "long-poll.", "",
        "| interval (ms) | median | max |", "|---|---:|---:|",
        row("first_bad_to_all_replicas_ms", "**first bad response -> weight 0 on every "
            "ingress replica**"),
        row("first_bad_to_all_replicas_upper_ms", "same, upper bound"),
        row("first_bad_to_published_ms", "first bad -> weight-0 table published"),
        row("published_to_all_replicas_ms", "published -> applied on every replica"),
        row("published_to_first_replica_upper_ms", "published -> first replica (upper bound)"),
        row("loaded_to_published_ms", "challenger got weight -> weight 0 published (audit)"),
        row("loaded_to_first_bad_ms", "challenger got weight -> first bad response"),
        row("poll_rtt_median_ms", "poll round trip (resolution)"), "",
        f"Client-visible errors: {rep['client_errors']} of "
        f"{sum(r['client'].get('requests', 0) for r in rep['runs'])} requests; "
        f"{rep['rolled_back']}/{len(rep['runs'])} rollouts rolled back.", "",
        "Goals: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}"
                              for k, v in rep["goals"].items()) + "."]
    if s["quick"]:
        lines += ["", "_--quick run: few runs; re-run without --quick for the record._"]
    return "\n".join(lines)


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def log(msg: str) -> None:
    print(f"[rollback_time] {msg}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    s = parse_args(argv)
    command = "python -m benchmarks.rollback_time " + " ".join(
        sys.argv[1:] if argv is None else argv)
    rep = run(s, command.strip())
    out = write_json("rollback_time.json", rep)
    write_section("rollback_time", markdown(rounded(rep, 3)))
    print(json.dumps(rounded({k: v for k, v in rep.items() if k != "runs"}, 3), indent=2))
    log(f"wrote {out} and benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
