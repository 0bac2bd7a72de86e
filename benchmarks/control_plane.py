"""How far one supervisor actor carries: window deltas merged and judged per second, and the
time from a published routing table to its application on N ingress replicas.

    python -m benchmarks.control_plane [--quick] [--replicas 10,100,400,1000]
        [--modes null,per-ingest,coalesced,aggregated] [--seconds 10] [--sims 4]
        [--per-flush 200] [--publishes 4] [--cpus 2] [--json OUT]

One private local Ray instance (`--cpus`), MLflow on SQLite, two registered versions, and the
real `Supervisor` actor in a JUDGED canary: the `challenger` alias is moved and a (simulated)
slot replica reports the challenger loaded, so the supervisor runs the real judge with the
default guards, at a 50% step that never ends by itself.

Ingress replicas are simulated, many per process: `--sims` Ray actors at 0.01 CPU each run
N replicas in all as asyncio tasks with distinct replica ids. Each replica, like
`gateway.serving.ingress`, calls `ingest(replica_id, deltas, served_ids)` every
`control.flush_interval_s` (0.25 s) with real ArmWindow deltas of `--per-flush` requests
split over both versions (built with `ArmWindow.record` and `take_delta().to_bytes()`, as the
ingress builds them) and their request ids, and keeps one `wait_for_table` long poll open
(as `gateway.serving.tablewatch`). A replica holds at most `--max-in-flight` unanswered
ingest calls; a flush due meanwhile is skipped and counted (so an overloaded supervisor's
queue stays bounded; a real replica would carry that data in its next flush).

Modes, each its own supervisor, all up at once; each N is measured on each mode in turn (so
other work on the machine weighs on all alike):
- null: an actor with the supervisor's long poll (the real TableHost) whose ingest only
  counts: the floor that Ray's calls and the simulators set on this machine;
- per-ingest: the supervisor as before issue 14, a judge pass per ingest (a subclass here);
- coalesced: the supervisor now (judge passes coalesced: `gateway.control.coalesce`);
- aggregated: the same supervisor, the replicas of each simulator process flushing to, and
  long-polling, one `DeltaAggregator` (`gateway.control.aggregator`), standing in for one per
  node.

Per point, after a warm-up, for `--seconds`: offered flushes/s (N x 4) and achieved (the
requests the supervisor merged, from its status, over the requests per flush), judge
looks/s, ingest-call latency p50/p99 (sent -> answered), skipped flushes; CPU in cores of the
supervisor's process, the simulators', the aggregators' and the whole machine (other work on
it shows there); fan-out: `--publishes` tables published (`set_weights`), each timed from its
version (wall-clock ms at publication) to its application on every one of the N replicas
(p50 and max over replicas; median and max over publishes). "Served": >= 97% of the offered
flushes merged, none skipped, ingest p99 under the flush interval, supervisor under one
core. Also: the supervisor's CPU per flush above its idle cost, at its busiest point, and
the replicas at 4 Hz one core would carry at that cost; and, in one process without Ray,
what a flush's steps cost (decode, merge, request ids, judge pass; `breakdown`). Prints a
table; writes benchmarks/results/control_plane.json (--quick: control_plane_quick.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    cpu_seconds,
    gateway_config,
    machine_info,
    median,
    percentile,
    prepare_env,
    register_linear,
    rounded,
    temp_registry,
    wait_for,
)
from gateway.control import rollout as ro
from gateway.control.aggregator import DeltaAggregator
from gateway.control.longpoll import TableHost
from gateway.control.supervisor import Supervisor, get_or_create_supervisor
from gateway.wire.routing import Mode, RoutingTable
from guards.window import ArmWindow, Observation, Outcome

FLUSH_INTERVAL_S = 0.25  # control.flush_interval_s's default, the rate this is all about
SERVED_SHARE = 0.97  # achieved/offered at or above which a point counts as served
MODES = ("null", "per-ingest", "coalesced", "aggregated")
URGENT_FLUSH_S = 0.05  # control.urgent_flush_s's default

Flush = tuple[dict[str, bytes], list[str]]  # deltas by version; the version of each request


@dataclass(frozen=True)
class Settings:
    replicas: tuple[int, ...]
    modes: tuple[str, ...]
    seconds: float
    warmup_s: float
    sims: int
    per_flush: int
    publishes: int
    cpus: int
    max_in_flight: int
    ids: bool
    quick: bool
    out: Path


def parse_args(argv: Sequence[str] | None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m benchmarks.control_plane",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short smoke run (N = 10, 100, 400)")
    p.add_argument("--replicas", help="simulated ingress replicas per point, comma-separated "
                   "(default 10,100,400,1000)")
    p.add_argument("--modes", default=",".join(MODES),
                   help="supervisors to measure, comma-separated: null (Ray's floor), "
                   "per-ingest (before issue 14), coalesced (now), aggregated (coalesced, "
                   "behind one DeltaAggregator per simulator process); default all")
    p.add_argument("--seconds", type=float, help="measured seconds per point (default 10, "
                   "6 with --quick)")
    p.add_argument("--sims", type=int, default=4, help="simulator processes (Ray actors)")
    p.add_argument("--per-flush", type=int, default=200,
                   help="requests per flush per replica, half on each version")
    p.add_argument("--publishes", type=int, help="tables published per point (default 4, "
                   "3 with --quick)")
    p.add_argument("--cpus", type=int, default=2, help="num_cpus of the local Ray instance")
    p.add_argument("--max-in-flight", type=int, default=1,
                   help="unanswered ingest calls a replica may have; a flush due meanwhile is "
                   "skipped (counted), so an overloaded supervisor's queue stays bounded")
    p.add_argument("--no-ids", action="store_true",
                   help="flush no request ids (they are one per request served: the "
                   "supervisor remembers each for feedback)")
    p.add_argument("--json", type=Path, help="default benchmarks/results/control_plane.json "
                   "(control_plane_quick.json with --quick)")
    a = p.parse_args(argv)
    replicas = (tuple(int(x) for x in a.replicas.split(",")) if a.replicas
                else (10, 100, 400) if a.quick else (10, 100, 400, 1000))
    name = "control_plane_quick.json" if a.quick else "control_plane.json"
    modes = tuple(m for m in a.modes.split(",") if m)
    if unknown := set(modes) - set(MODES):
        p.error(f"unknown modes: {sorted(unknown)}")
    return Settings(
        replicas=replicas, modes=modes,
        seconds=a.seconds or (6.0 if a.quick else 10.0), warmup_s=2.0 if a.quick else 3.0,
        sims=a.sims, per_flush=a.per_flush,
        publishes=a.publishes or (3 if a.quick else 4), cpus=a.cpus,
        max_in_flight=a.max_in_flight, ids=not a.no_ids, quick=a.quick,
        out=a.json or RESULTS_DIR / name)


# --- the supervisor before issue 14, as the baseline ------------------------------------------


class PerIngestSupervisor(Supervisor):
    """The supervisor with the ingest of before issue 14: every call merges its deltas and
    then runs its own judge pass (one after another, under the lock)."""

    async def ingest(self, replica_id: str, deltas: dict[str, bytes],
                     request_ids: list[tuple[str, str]] | None = None) -> None:
        self._ensure_loop()
        for version, blob in deltas.items():
            self._evidence.add(version, ArmWindow.from_bytes(blob))
        self._requests.remember(request_ids or [], self._clock.time())
        if self._state.phase in ro.JUDGED:
            await self._judge_now()


class NullSupervisor:
    """Ray's floor: the supervisor's long poll (the real TableHost) and an ingest that only
    counts, so a point costs Ray's calls and the simulators, and nothing of the supervisor."""

    def __init__(self, table: dict[str, Any]) -> None:
        self._tables = TableHost(RoutingTable.from_dict(table))
        self._instance = uuid.uuid4().hex[:12]
        self._requests = 0

    def _answer(self, table: RoutingTable) -> dict[str, Any]:
        return {**table.to_dict(), "supervisor": self._instance}

    async def get_table(self) -> dict[str, Any]:
        return self._answer(self._tables.table)

    async def wait_for_table(self, known_version: int, timeout_s: float,
                             known_instance: str | None = None) -> dict[str, Any] | None:
        table = await self._tables.wait_newer(known_version, timeout_s)
        return None if table is None else self._answer(table)

    async def ingest(self, replica_id: str, deltas: dict[str, bytes],
                     request_ids: list[tuple[str, str]] | None = None) -> None:
        self._requests += len(request_ids or ())

    async def set_weights(self, weight: float, mode: str, actor: str = "admin",
                          ) -> dict[str, Any]:
        self._tables.publish(self._tables.table.evolve(challenger_weight=weight,
                                                       mode=Mode(mode)))
        return self._tables.table.to_dict()

    async def effects_done(self) -> None:
        pass

    async def status(self) -> dict[str, Any]:
        return {"phase": "none", "requests": {"champion": self._requests, "challenger": 0},
                "judge": None}


# --- pure summaries ---------------------------------------------------------------------------


def flushes(versions: Sequence[str], per_flush: int, count: int, seed: int = 0,
            error_rate: float = 0.005) -> list[Flush]:
    """`count` different flushes of one replica: `per_flush` requests alternating over
    `versions`, recorded into ArmWindows one Observation at a time and shipped as deltas,
    as `gateway.serving.ingress` does."""
    rng = random.Random(seed)
    windows = {v: ArmWindow() for v in versions}
    out: list[Flush] = []
    for _ in range(count):
        served = [versions[i % len(versions)] for i in range(per_flush)]
        for v in served:
            latency = rng.lognormvariate(math.log(0.08), 0.8)
            failed = rng.random() < error_rate
            windows[v].record(Observation(
                latency, Outcome.SERVER_ERROR if failed else Outcome.OK,
                output_value=rng.gauss(0.0, 1.0), input_value=rng.gauss(0.0, 1.0),
                busy_s=0.8 * latency))
        out.append(({v: w.take_delta().to_bytes() for v, w in windows.items()
                     if not w.is_empty()}, served))
    return out


def fanout_summary(published_at: float, applied_at: Sequence[float], replicas: int,
                   ) -> dict[str, float]:
    """One publish: seconds from its publication to its application, p50 and max over the
    replicas that applied it; `missing` replicas never did (then max is NaN)."""
    delays = [t - published_at for t in applied_at]
    missing = replicas - len(delays)
    return {"p50_s": percentile(delays, 50), "p99_s": percentile(delays, 99),
            "max_s": max(delays) if delays and not missing else math.nan,
            "missing": float(missing)}


def served(point: dict[str, Any], interval_s: float = FLUSH_INTERVAL_S) -> bool:
    """Whether the supervisor kept up at this point (see the module doc)."""
    return (point["achieved_per_s"] >= SERVED_SHARE * point["offered_per_s"]
            and point["skipped"] == 0 and point["ingest_ms"]["p99_ms"] < interval_s * 1000
            and point["cpu_cores"]["supervisor"] < 1.0)


def capacity(points: Sequence[dict[str, Any]], idle_cores: float,
             interval_s: float = FLUSH_INTERVAL_S) -> dict[str, Any]:
    """The most replicas served among the points; the supervisor's CPU per flush above its
    idle cost (`idle_cores`: control loop, registry polls) at the point that merged the most
    (per-call costs shrink with the rate, and past it the supervisor is saturated); and the
    replicas that one core carries at that cost and the flush rate."""
    ok = [p for p in points if served(p, interval_s)]
    ref = max(points, key=lambda p: p["achieved_per_s"]) if points else None
    per_flush_ms = ((ref["cpu_cores"]["supervisor"] - idle_cores) / ref["achieved_per_s"]
                    * 1000 if ref and ref["achieved_per_s"] > 0 else math.nan)
    per_core = ((1.0 - idle_cores) / (per_flush_ms / 1000 / interval_s)
                if per_flush_ms > 0 else math.nan)
    return {"max_replicas_served": max((p["replicas"] for p in ok), default=0),
            "at_replicas": ref["replicas"] if ref else None, "idle_cores": idle_cores,
            "supervisor_cpu_ms_per_flush": per_flush_ms,
            "replicas_per_core_estimate": per_core}


# --- simulated ingress replicas ---------------------------------------------------------------


class IngressSim:
    """Many simulated ingress replicas in one process (a Ray actor): each flushes a delta to
    its target every interval and keeps a table long poll open there."""

    def __init__(self, pool: list[Flush], interval_s: float, max_in_flight: int,
                 poll_timeout_s: float, ids: bool) -> None:
        self._target: Any = None  # the supervisor, or the node's DeltaAggregator
        self._ids = ids
        self._pool = pool
        self._interval_s = interval_s
        self._max_in_flight = max_in_flight
        self._poll_timeout_s = poll_timeout_s
        self._tasks: list[asyncio.Task[None]] = []
        self._trackers: set[asyncio.Task[None]] = set()
        self._polls: dict[str, Any] = {}
        self._replica_ids: list[str] = []
        self._in_flight: dict[str, int] = {}
        self.reset()
        self.applied: dict[int, list[float]] = {}

    def pid(self) -> int:
        return os.getpid()

    def reset(self) -> None:
        """Start a measurement window: forget the counts and latencies so far."""
        self.sent = self.done = self.failed = self.skipped = 0
        self.latencies: list[float] = []

    async def start_polls(self, target: Any, replica_ids: list[str], known_version: int,
                          ) -> None:
        self._target = target
        self._replica_ids = replica_ids
        for rid in replica_ids:
            self._tasks.append(asyncio.ensure_future(self._poll_loop(rid, known_version)))

    async def start_flushes(self) -> None:
        for i, rid in enumerate(self._replica_ids):
            self._tasks.append(asyncio.ensure_future(self._flush_loop(rid, i)))

    async def stop(self) -> int:
        """Stop every replica; cancel their long polls. Returns the calls still in flight."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        import ray

        for ref in self._polls.values():
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        self._polls.clear()
        self.applied.clear()
        return self.in_flight()

    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "done": self.done, "failed": self.failed,
                "skipped": self.skipped, "latencies": self.latencies}

    def applied_at(self, version: int) -> list[float]:
        return self.applied.get(version, [])

    async def _flush_loop(self, rid: str, index: int) -> None:
        loop = asyncio.get_running_loop()
        rng = random.Random(rid)
        await asyncio.sleep(rng.uniform(0.0, self._interval_s))  # replicas are not in step
        due, k = loop.time(), index
        while True:
            if self._in_flight.get(rid, 0) >= self._max_in_flight:
                self.skipped += 1
            else:
                deltas, versions = self._pool[k % len(self._pool)]
                ids = ([(f"{rid}-{k}-{i}", v) for i, v in enumerate(versions)] if self._ids
                       else [])
                start = time.perf_counter()
                ref = self._target.ingest.remote(rid, deltas, ids)
                self.sent += 1
                self._in_flight[rid] = self._in_flight.get(rid, 0) + 1
                tracker = asyncio.ensure_future(self._track(rid, ref, start))
                self._trackers.add(tracker)
                tracker.add_done_callback(self._trackers.discard)
            k += 1
            due += self._interval_s
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def _track(self, rid: str, ref: Any, start: float) -> None:
        try:
            await ref
            self.done += 1
            self.latencies.append(time.perf_counter() - start)
        except Exception:
            self.failed += 1
        finally:
            self._in_flight[rid] -= 1

    async def _poll_loop(self, rid: str, known: int) -> None:
        instance: str | None = None
        while True:
            ref = self._target.wait_for_table.remote(known, self._poll_timeout_s, instance)
            self._polls[rid] = ref
            raw = await ref
            if raw is None:
                continue
            table = RoutingTable.from_dict(raw)  # what a replica does with it
            at = time.time()
            instance = raw.get("supervisor")
            if table.version > known:
                known = table.version
                self.applied.setdefault(known, []).append(at)


# --- where a flush's time goes, in one process (no Ray) ------------------------------------


def breakdown(pool: list[Flush], rounds: int = 400) -> dict[str, float]:
    """CPU (process time) of the supervisor's steps for one flush, in-process with the unit
    tests' fakes (no Ray, no registry; resource readings none): decoding and merging its
    deltas, remembering its request ids, one judge pass, and a whole `ingest` when each
    judges (per-ingest) or when 100 at a time share passes (coalesced)."""
    from gateway.config import parse_config
    from gateway.control.evidence import Evidence
    from gateway.control.feedback import RequestLedger
    from model_registry.refs import CHALLENGER
    from tests.unit.gateway.control.supervisor_fakes import (
        FakeEffects,
        FakeRegistry,
        FakeSensors,
        ManualClock,
        config,
        slot_report,
    )

    def per(fn: Any, n: int) -> float:
        start = time.process_time()
        for i in range(n):
            fn(i)
        return (time.process_time() - start) / n * 1000

    blobs = [b for d, _ in pool for b in d.values()]
    windows = [ArmWindow.from_bytes(b) for b in blobs]
    evidence = Evidence()
    ledger = RequestLedger(200_000, 3600.0)
    ledger.remember(((f"old-{i}", "1") for i in range(200_000)), 0.0)  # full: it evicts
    ids = [[(f"x{k}-{i}", v) for i, v in enumerate(vs)] for k, (_, vs) in enumerate(pool)]
    per_flush = len(pool[0][1])
    out = {"decode_ms_per_delta": per(lambda i: ArmWindow.from_bytes(blobs[i % len(blobs)]),
                                      rounds),
           "merge_ms_per_delta": per(lambda i: evidence.add(str(i % 2),
                                                            windows[i % len(windows)].copy()),
                                     rounds),
           "ledger_ms_per_flush": per(lambda i: ledger.remember(
               [(f"{rid}.{i}", v) for rid, v in ids[i % len(ids)]], 0.0), rounds // 4)}

    async def ingests() -> dict[str, float]:
        got: dict[str, float] = {}
        for name, cls in (("per_ingest", PerIngestSupervisor), ("coalesced", Supervisor)):
            registry = FakeRegistry()
            champion, challenger = (registry.add(v) for v in pool[0][0])
            registry.set_alias("champion", champion.version)
            cfg = parse_config(config([{"weight": 50.0, "min_requests": 10**9,
                                        "min_duration_s": 10**6}]))
            table = RoutingTable(version=0, champion_slot="a", challenger_slot=None,
                                 challenger_weight=0.0, mode=Mode.PINNED,
                                 slot_models={"a": champion, "b": None})
            sup = cls(asdict(cfg), "fake://", table.to_dict(), registry=registry,
                      effects=FakeEffects(), sensors=FakeSensors(), clock=ManualClock())
            registry.set_alias(CHALLENGER, challenger.version)
            await sup.tick()
            await sup.report_slot("b", "r", slot_report(challenger))
            looks0 = (await sup.status())["judge"]["looks_judged"]
            start = time.process_time()
            for k in range(rounds // 100):
                batch = [pool[(k + i) % len(pool)] for i in range(100)]
                await asyncio.gather(*(
                    sup.ingest(f"r{i}", deltas, [(f"y{k}.{i}.{j}", v)
                                                 for j, v in enumerate(versions)])
                    for i, (deltas, versions) in enumerate(batch)))
            got[f"ingest_ms_per_flush_{name}"] = ((time.process_time() - start)
                                                   / (rounds // 100 * 100) * 1000)
            looks = (await sup.status())["judge"]["looks_judged"] - looks0
            got[f"looks_per_100_flushes_{name}"] = looks / (rounds // 100)
            await sup.shutdown()
        return got

    out.update(asyncio.run(ingests()))
    out["judge_ms_per_pass"] = ((out["ingest_ms_per_flush_per_ingest"]
                                 - out["ingest_ms_per_flush_coalesced"])
                                / (1 - out["looks_per_100_flushes_coalesced"] / 100))
    out["requests_per_flush"] = float(per_flush)
    return out


# --- one run ----------------------------------------------------------------------------------


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return float(sum(fields) - idle), float(sum(fields))


def log(msg: str) -> None:
    print(f"[control_plane] {msg}", file=sys.stderr, flush=True)


def start_supervisor(mode: str, registry: Any, versions: tuple[Any, Any]) -> tuple[Any, int]:
    """A supervisor of `mode` in a judged canary at 50%; returns (handle, its pid)."""
    import dataclasses

    import ray

    from model_registry.refs import CHALLENGER

    app = f"cp-{mode}-{uuid.uuid4().hex[:6]}"
    cfg = gateway_config(registry, app, weight=50.0,
                         overrides={"rollout": {"step_deadline_s": 10.0**6},
                                    # the default (gateway_config's 0.2 s is for start-up)
                                    "supervisor": {"registry_poll_s": 1.0}})
    champion, challenger = versions
    table = RoutingTable(version=0, champion_slot="a", challenger_slot=None,
                         challenger_weight=0.0, mode=Mode.PINNED,
                         slot_models={"a": champion, "b": None})
    sup: Any  # (Ray's stubs do not type actor handles)
    if mode == "null":
        sup = ray.remote(NullSupervisor).options(num_cpus=0, max_concurrency=10_000).remote(
            table.to_dict())
        return sup, int(ray.get(sup.__ray_call__.remote(lambda _self: os.getpid()), timeout=60))
    if mode in ("coalesced", "aggregated"):
        sup = get_or_create_supervisor(cfg, registry.tracking_uri, table)
    else:  # the same options as get_or_create_supervisor's, for the subclass
        sup = ray.remote(PerIngestSupervisor).options(
            name=cfg.control.supervisor_name, namespace=cfg.control.namespace,
            lifetime="detached", get_if_exists=True, num_cpus=0, max_restarts=0,
            max_concurrency=10_000,
        ).remote(dataclasses.asdict(cfg), registry.tracking_uri, table.to_dict())
    pid = int(ray.get(sup.__ray_call__.remote(lambda _self: os.getpid()), timeout=60))
    registry.set_alias(CHALLENGER, challenger.version)
    wait_for(lambda: ray.get(sup.status.remote())["phase"] == "loading", 60, "loading")
    report = {"healthy": True, "model": challenger.to_dict(), "error": None,
              "pid": os.getpid(), "memory": None}
    ray.get(sup.report_slot.remote("b", "bench-slot-b", report))
    wait_for(lambda: ray.get(sup.status.remote())["phase"] == "canary", 30, "canary")
    return sup, pid


def counters(sup: Any) -> tuple[float, float, float]:
    """(when, requests merged so far, judge looks so far) from the supervisor's status; `when`
    is the middle of the call, since a busy supervisor answers late."""
    import ray

    start = time.time()
    status = ray.get(sup.status.remote())
    when = (start + time.time()) / 2
    return (when, float(sum(status["requests"].values())),
            float((status["judge"] or {}).get("looks_judged", 0)))


def measure_point(target: Target, sims: list[Any], sim_pids: list[int], n: int,
                  s: Settings) -> dict[str, Any]:
    """One N against one target: replicas started, fan-out timed, flushes started, warmed
    up, measured, fan-out timed again, stopped."""
    import ray

    sup = target.sup
    pids = {"supervisor": [target.pid], "simulators": sim_pids, "aggregators": target.agg_pids}
    known = ray.get(sup.get_table.remote())["version"]
    ids = [f"r{n}-{i}" for i in range(n)]
    ray.get([sim.start_polls.remote(target.aggs[j] if target.aggs else sup,
                                    ids[j::len(sims)], known) for j, sim in enumerate(sims)])
    time.sleep(1.0)  # every long poll open
    fanout_idle = measure_fanout(sup, sims, n, s.publishes)
    ray.get([sim.start_flushes.remote() for sim in sims])
    time.sleep(s.warmup_s)
    ray.get([sim.reset.remote() for sim in sims])
    cpu0 = {pid: cpu_seconds(pid) for group in pids.values() for pid in group}
    busy0, total0 = machine_busy()
    t0 = time.monotonic()
    when0, requests0, looks0 = counters(sup)
    time.sleep(s.seconds)
    when1, requests1, looks1 = counters(sup)
    stats = ray.get([sim.stats.remote() for sim in sims])
    elapsed = time.monotonic() - t0
    busy1, total1 = machine_busy()
    cpu1 = {pid: cpu_seconds(pid) for pid in cpu0}
    lat = [x for st in stats for x in st["latencies"]]
    span = when1 - when0
    point: dict[str, Any] = {
        "replicas": n, "seconds": elapsed, "offered_per_s": n / FLUSH_INTERVAL_S,
        "sent_per_s": sum(st["sent"] for st in stats) / elapsed,
        # the supervisor's own count: the flushes it merged (and judged), per second
        "achieved_per_s": (requests1 - requests0) / s.per_flush / span,
        "completed_per_s": sum(st["done"] for st in stats) / elapsed,
        "failed": sum(st["failed"] for st in stats),
        "skipped": sum(st["skipped"] for st in stats),
        "looks_per_s": (looks1 - looks0) / span,
        "ingest_ms": {"p50_ms": percentile(lat, 50) * 1000,
                      "p99_ms": percentile(lat, 99) * 1000, "n": len(lat)},
        "cpu_cores": {
            **{role: sum(cpu1[p] - cpu0[p] for p in group) / elapsed
               for role, group in pids.items()},
            "machine": (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)},
        "loadavg_1m": os.getloadavg()[0],
    }
    point["deltas_per_s"] = 2 * point["achieved_per_s"]
    point["fanout_idle"] = fanout_idle  # long polls only, no flushes
    point["fanout"] = measure_fanout(sup, sims, n, s.publishes)  # under the flush load
    point["phase"] = ray.get(sup.status.remote())["phase"]
    point["in_flight_at_stop"] = sum(ray.get([sim.stop.remote() for sim in sims]))
    # Release what long polls the cancel missed, and let a backlog drain before the next N.
    ray.get(sup.set_weights.remote(50.0, "split", "bench"))
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: sum(ray.get([sim.in_flight.remote() for sim in sims])) == 0, 30,
                 "in-flight ingest calls to drain")
    return point


def measure_fanout(sup: Any, sims: list[Any], n: int, publishes: int) -> dict[str, Any]:
    """Publish `publishes` tables; per table, the delay to each of the n replicas."""
    import ray

    runs: list[dict[str, float]] = []
    for k in range(publishes):
        time.sleep(0.3 + random.random() * 0.3)  # not in step with the flushes
        weight = 49.0 if k % 2 == 0 else 50.0
        version = int(ray.get(sup.set_weights.remote(weight, "split", "bench"))["version"])

        def applied(v: int = version) -> list[float]:
            return [t for got in ray.get([sim.applied_at.remote(v) for sim in sims])
                    for t in got]

        with contextlib.suppress(TimeoutError):
            wait_for(lambda: len(applied()) >= n, 3.0, "a table on every replica", 0.05)
        runs.append(fanout_summary(version / 1000.0, applied(), n))
    maxes = [r["max_s"] for r in runs]
    return {"publishes": runs,
            "p50_ms": median([r["p50_s"] for r in runs]) * 1000,
            "max_ms_median": median(maxes) * 1000,
            "max_ms": max(maxes) * 1000 if maxes else math.nan,
            "missing": sum(r["missing"] for r in runs)}


@dataclass
class Target:
    """One mode's supervisor under test (and its aggregators, in the aggregated mode)."""

    mode: str
    sup: Any
    pid: int
    aggs: list[Any]
    agg_pids: list[int]


def start_target(mode: str, s: Settings, registry: Any, versions: tuple[Any, Any]) -> Target:
    import ray

    sup, pid = start_supervisor(mode, registry, versions)
    agg_cls: Any = ray.remote(DeltaAggregator)  # (Ray's stubs do not type actor classes)
    # One aggregator per simulator process, standing in for one per node.
    aggs = ([agg_cls.options(num_cpus=0, max_concurrency=10_000).remote(
        sup, f"node-{i}", FLUSH_INTERVAL_S, URGENT_FLUSH_S) for i in range(s.sims)]
        if mode == "aggregated" else [])
    agg_pids = [int(p) for p in ray.get(
        [a.__ray_call__.remote(lambda _self: os.getpid()) for a in aggs])]
    ray.get(sup.effects_done.remote())  # the rollout's start: MLflow run, audit
    log(f"{mode}: supervisor pid {pid} ready")
    return Target(mode, sup, pid, aggs, agg_pids)


def idle_cores(targets: Sequence[Target], seconds: float) -> dict[str, float]:
    """Each supervisor's CPU with no replicas (its control loop, registry polls), at once."""
    cpu0, t0 = {t.mode: cpu_seconds(t.pid) for t in targets}, time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    return {t.mode: (cpu_seconds(t.pid) - cpu0[t.mode]) / elapsed for t in targets}


def _brief(p: dict[str, Any]) -> dict[str, Any]:
    return {"offered": p["offered_per_s"], "achieved": p["achieved_per_s"],
            "skipped": p["skipped"], "looks": p["looks_per_s"],
            "p50_ms": p["ingest_ms"]["p50_ms"], "p99_ms": p["ingest_ms"]["p99_ms"],
            "sup_cores": p["cpu_cores"]["supervisor"], "sim_cores": p["cpu_cores"]["simulators"],
            "agg_cores": p["cpu_cores"]["aggregators"],
            "machine_cores": p["cpu_cores"]["machine"],
            "fanout_idle_max_ms": p["fanout_idle"]["max_ms"],
            "fanout_p50_ms": p["fanout"]["p50_ms"], "fanout_max_ms": p["fanout"]["max_ms"],
            "phase": p["phase"]}


def markdown(results: dict[str, Any]) -> str:
    lines = ["| judge | N | offered/s | achieved/s | skipped | looks/s | ingest p50/p99 ms | "
             "sup cores | sims cores | aggs cores | machine cores | fan-out p50 / max ms, "
             "polls only | under load | served |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, points in results["modes"].items():
        for p in points:
            f, fi = p["fanout"], p["fanout_idle"]
            lines.append(
                f"| {mode} | {p['replicas']} | {p['offered_per_s']:.0f} | "
                f"{p['achieved_per_s']:.0f} | {p['skipped']} | {p['looks_per_s']:.0f} | "
                f"{p['ingest_ms']['p50_ms']:.1f} / {p['ingest_ms']['p99_ms']:.1f} | "
                f"{p['cpu_cores']['supervisor']:.2f} | {p['cpu_cores']['simulators']:.2f} | "
                f"{p['cpu_cores']['aggregators']:.2f} | "
                f"{p['cpu_cores']['machine']:.2f} | {fi['p50_ms']:.1f} / {fi['max_ms']:.1f} | "
                f"{f['p50_ms']:.1f} / {f['max_ms']:.1f} | "
                f"{'yes' if served(p) else 'no'} |")
    for mode, cap in results["capacity"].items():
        lines.append(f"\n{mode}: served up to {cap['max_replicas_served']} replicas at 4 Hz; "
                     f"supervisor idle {cap['idle_cores']:.3f} cores, "
                     f"{cap['supervisor_cpu_ms_per_flush']:.3f} CPU-ms per flush above it at "
                     f"N={cap['at_replicas']} -> ~{cap['replicas_per_core_estimate']:.0f} "
                     "replicas per core")
    return "\n".join(lines)


def run(s: Settings) -> dict[str, Any]:
    import ray

    from model_registry.refs import CHAMPION

    prepare_env()
    ray.init(address="local", num_cpus=s.cpus, include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=False)
    try:
        info = machine_info()
        with temp_registry() as registry:
            champion = register_linear(registry, "champion")
            challenger = register_linear(registry, "challenger", scale=1.01)
            registry.set_alias(CHAMPION, champion.version)
            versions = (champion, challenger)
            pool = flushes([champion.version, challenger.version], s.per_flush,
                           count=8 * s.sims)
            results: dict[str, Any] = {
                "benchmark": "control_plane", "settings": {**asdict(s), "out": str(s.out)},
                "machine": info, "flush_interval_s": FLUSH_INTERVAL_S,
                "delta_bytes": median([float(sum(len(b) for b in d.values()))
                                       for d, _ in pool]),
                "breakdown": breakdown(pool), "modes": {}, "capacity": {}}
            log(f"in-process breakdown: {json.dumps(rounded(results['breakdown']))}")
            # Every mode's supervisor stays up, and each N is measured on each in turn, so
            # what else runs on the machine meanwhile weighs on all modes alike.
            targets = [start_target(mode, s, registry, versions) for mode in s.modes]
            sim_cls: Any = ray.remote(IngressSim)
            sims = [sim_cls.options(num_cpus=0.01, max_concurrency=100_000).remote(
                pool[i::s.sims], FLUSH_INTERVAL_S, s.max_in_flight, 30.0, s.ids)
                for i in range(s.sims)]
            sim_pids = [int(p) for p in ray.get([sim.pid.remote() for sim in sims])]
            idle = idle_cores(targets, 2 * s.warmup_s)
            log(f"idle supervisors (cores): {json.dumps(rounded(idle))}")
            for n in s.replicas:
                for target in targets:
                    point = measure_point(target, sims, sim_pids, n, s)
                    log(f"{target.mode} N={n}: {json.dumps(rounded(_brief(point)))}")
                    results["modes"].setdefault(target.mode, []).append(point)
            for target in targets:
                results["capacity"][target.mode] = capacity(results["modes"][target.mode],
                                                            idle[target.mode])
    finally:
        ray.shutdown()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    s = parse_args(argv)
    results = run(s)
    s.out.parent.mkdir(parents=True, exist_ok=True)
    s.out.write_text(json.dumps(rounded(results), indent=2) + "\n")
    print(markdown(results))
    log(f"wrote {s.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
