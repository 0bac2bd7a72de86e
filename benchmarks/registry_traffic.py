"""The supervisor's traffic to a real MLflow tracking server on PostgreSQL, counted.

    python -m benchmarks.registry_traffic [--idle-s 60] [--rate 20] [--backend postgresql]

Teams run MLflow as a tracking server in front of a SQL database; this measures what one
gateway asks of it. A private PostgreSQL 15 (initdb into a temporary directory, a free
loopback port) backs a real `mlflow server --serve-artifacts`; a small counting reverse proxy
in this process forwards to it and records every request (time, method, path, status, bytes,
and which process sent it: the TCP peer is looked up in /proc). The gateway (local Ray, the
supervisor timings of configs/gateway.yaml: registry poll 1 s, judge persistence 5 s, tick
0.25 s) gets the proxy's URI; this driver registers the models and moves the challenger alias
directly on the server, so its own calls are not counted.

Under open-loop traffic (`--rate` req/s) three windows are measured: idle (no rollout), one
healthy challenger walked through a short policy to promotion (and the old champion's
release after the rollback window), and one challenger that fails every call, rolled back.
Requests are classified by path: alias reads (the poll), alias writes, registered-model tags
(rollout state, alias history), version tags (judge state, verdict), version reads, the
rollout's MLflow run (runs, metrics, params, experiments), artifact downloads and uploads.
Writes benchmarks/results/registry_traffic.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import (
    REPO_ROOT,
    RESULTS_DIR,
    admin_status,
    free_port,
    machine_info,
    machine_line,
    percentile,
    rounded,
    wait_for,
)
from benchmarks.procs import mlflow_server

# A short policy, so that one whole rollout fits in a couple of minutes at ~20 req/s (2 req/s
# reach the challenger at 10%); everything else is configs/gateway.yaml as shipped.
STEPS = ({"weight": 10.0, "min_requests": 100, "min_duration_s": 20.0},
         {"weight": 50.0, "min_requests": 200, "min_duration_s": 20.0})
ROLLBACK_WINDOW_S = 10.0  # the old champion's release then falls inside the rollout's window
QUIET_S = 3.0  # a rollout's window ends once only alias polls were seen for this long
KINDS = ("alias_read", "alias_write", "model_tag", "version_tag", "version_read", "run_write",
         "run_read", "artifact_download", "artifact_upload", "other")
ARTIFACT_KINDS = frozenset({"artifact_download", "artifact_upload"})
PG_USER = "gateway"

# --- classification (pure) ---------------------------------------------------------------


def classify(method: str, path: str) -> str:
    """The kind of one MLflow REST request, from its method and path."""
    p = path.split("?", 1)[0]
    m = method.upper()
    if "/artifacts" in p:  # the mlflow-artifacts proxy, and run artifact listings
        return "artifact_download" if m in ("GET", "HEAD") else "artifact_upload"
    if "/registered-models/" in p:
        tail = p.rsplit("/registered-models/", 1)[1]
        if tail == "alias":
            return "alias_read" if m == "GET" else "alias_write"
        if tail in ("set-tag", "delete-tag"):
            return "model_tag"
        # registered-models/get: every alias in one call (the supervisor's poll)
        return "alias_read" if tail == "get" else "other"
    if "/model-versions/" in p:
        tail = p.rsplit("/model-versions/", 1)[1]
        return "version_tag" if tail in ("set-tag", "delete-tag") else "version_read"
    if any(s in p for s in ("/runs/", "/experiments/", "/metrics/", "/logged-models")):
        read = m == "GET" or p.endswith(("/search", "/get", "/get-by-name", "/get-history"))
        return "run_read" if read else "run_write"
    return "other"


@dataclass(frozen=True)
class Hit:
    """One request the proxy forwarded."""

    t: float  # wall clock at arrival
    latency_s: float  # upstream answer time, as the proxy saw it
    method: str
    path: str  # without the query
    status: int
    source: str  # the sending process: supervisor, replica:slot_a, driver, ...
    sent_bytes: int
    recv_bytes: int

    @property
    def kind(self) -> str:
        return classify(self.method, self.path)


def summarize(hits: Sequence[Hit], lo: float, hi: float) -> dict[str, Any]:
    """Counts, rates and bytes by kind, source and path of the hits in [lo, hi), and the
    intervals between the supervisor's polls."""
    inside = [h for h in hits if lo <= h.t < hi]
    seconds = max(hi - lo, 1e-9)
    kinds = Counter(h.kind for h in inside)
    api = [h for h in inside if h.kind not in ARTIFACT_KINDS]
    sent: Counter[str] = Counter()
    largest: dict[str, int] = {}
    by_source: dict[str, Counter[str]] = {}
    for h in inside:
        sent[h.kind] += h.sent_bytes
        largest[h.kind] = max(largest.get(h.kind, 0), h.sent_bytes)
        by_source.setdefault(h.source, Counter())[h.kind] += 1
    polls = sorted(h.t for h in inside if h.source == "supervisor"
                   and h.method == "GET" and h.path.endswith("/registered-models/get"))
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    return {
        "duration_s": hi - lo, "requests": len(inside), "rps": len(inside) / seconds,
        "registry_api_requests": len(api), "registry_api_rps": len(api) / seconds,
        "by_kind": {k: kinds[k] for k in KINDS if kinds[k]},
        "by_kind_rps": {k: kinds[k] / seconds for k in KINDS if kinds[k]},
        "request_bytes_by_kind": {k: sent[k] for k in KINDS if sent[k]},
        "largest_request_bytes_by_kind": {k: largest[k] for k in KINDS if largest.get(k)},
        "by_source": dict(Counter(h.source for h in inside).most_common()),
        "by_source_kind": {s: {k: c[k] for k in KINDS if c[k]}
                           for s, c in sorted(by_source.items())},
        "supervisor_poll_interval_s": {"n": len(gaps), "p50": percentile(gaps, 50),
                                       "p90": percentile(gaps, 90),
                                       "max": max(gaps, default=math.nan)},
        "by_path": dict(Counter(f"{h.method} {h.path}" for h in inside).most_common()),
        "errors": sum(1 for h in inside if h.status >= 400),
        "api_latency_ms": {"p50": percentile([h.latency_s * 1e3 for h in api], 50),
                           "p99": percentile([h.latency_s * 1e3 for h in api], 99)},
    }


# --- who sent it: the TCP peer's process --------------------------------------------------


def _tcp_inode(local_port: int, remote_port: int) -> str | None:
    """The socket inode of the loopback connection local_port -> remote_port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if (int(f[1].rsplit(":", 1)[1], 16) == local_port
                    and int(f[2].rsplit(":", 1)[1], 16) == remote_port):
                return f[9]
    return None


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _label(pid: int) -> str:
    from benchmarks.soak import label_of

    if pid == os.getpid():
        return "driver"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "other"
    label = label_of(cmd) or "other"
    if label.startswith("ServeReplica:"):  # ServeReplica:<app>:<deployment>
        return "replica:" + label.rsplit(":", 1)[1]
    # a named actor's title may carry its name first (<name>:Supervisor)
    return label.rsplit(":", 1)[-1].lower()


def socket_owner(client_port: int, proxy_port: int) -> str:
    """The process (this one or one it started: Ray's) holding the client end of a
    connection to the proxy; 'unknown' when it cannot be found."""
    inode = _tcp_inode(client_port, proxy_port)
    if inode is None:
        return "unknown"
    target = f"socket:[{inode}]"
    for pid in _descendants(os.getpid()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return _label(pid)
    return "unknown"


# --- the counting proxy -------------------------------------------------------------------

# Not forwarded: hop-by-hop headers, and those the proxy sets itself.
_DROP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                   "trailer", "upgrade", "content-length", "host", "server", "date"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: CountingProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as MLflow's client expects
    server: _Server
    source = "unknown"

    def setup(self) -> None:
        super().setup()
        # Once per connection (clients keep theirs alive), while the peer holds it.
        start = time.perf_counter()
        self.source = socket_owner(self.client_address[1], self.server.server_address[1])
        self.server.proxy.connected(self.source, time.perf_counter() - start)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _forward(self) -> None:
        proxy = self.server.proxy
        arrived, start = time.time(), time.perf_counter()
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROP}
        status, out_headers, data = 502, [("Content-Type", "text/plain")], b""
        # A fresh upstream connection per request: nothing to go stale between polls.
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=120)
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status, out_headers = resp.status, resp.getheaders()
        except OSError as exc:
            data = f"counting proxy: upstream failed: {exc}".encode()
        finally:
            conn.close()
        latency = time.perf_counter() - start
        self.send_response(status)
        for key, value in out_headers:
            if key.lower() not in _DROP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        proxy.record(Hit(arrived, latency, self.command, self.path.split("?", 1)[0], status,
                         self.source, len(body), len(data)))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward


class CountingProxy:
    """A reverse proxy on a free loopback port that forwards to `upstream` and records every
    request (`hits()`); `with CountingProxy(uri) as proxy:` serves on a thread."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._hits: list[Hit] = []
        # (wall clock, source, seconds spent finding the source) per client connection
        self.connections: list[tuple[float, str, float]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.uri = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="counting-proxy")

    def record(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    def connected(self, source: str, lookup_s: float) -> None:
        with self._lock:
            self.connections.append((time.time(), source, lookup_s))

    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- PostgreSQL and the MLflow server -------------------------------------------------------


def _as_pg_user(root: Path) -> dict[str, Any]:
    """subprocess options that run PostgreSQL's tools as a non-root user (they refuse root)."""
    if os.geteuid() != 0:
        return {}
    shutil.chown(root, "postgres", "postgres")
    return {"user": "postgres", "group": "postgres", "extra_groups": [], "cwd": root}


@contextlib.contextmanager
def postgres(root: Path) -> Iterator[tuple[str, str]]:
    """A private PostgreSQL in `root` on a free loopback port, with an `mlflow` database:
    yields (SQLAlchemy URI, server version); stopped (`pg_ctl stop -m fast`) on exit."""
    import psycopg2

    missing = [exe for exe in ("initdb", "pg_ctl", "postgres") if shutil.which(exe) is None]
    if missing:
        raise RuntimeError(f"PostgreSQL binaries not on PATH: {missing} (or --backend sqlite)")
    opts = _as_pg_user(root)
    data, sock, port = root / "pgdata", root / "pgsock", free_port()
    _pg(["initdb", "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8",
         "--no-locale"], opts)
    sock.mkdir()
    if opts:
        shutil.chown(sock, "postgres", "postgres")
    _pg(["pg_ctl", "-D", str(data), "-l", str(root / "postgres.log"), "-w", "-t", "60",
         "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {sock}", "start"], opts)
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE mlflow")
                cur.execute("SHOW server_version")
                version = str(cur.fetchone()[0])
        finally:
            conn.close()
        yield f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{port}/mlflow", f"PostgreSQL {version}"
    finally:
        _pg(["pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"], opts, check=False)


def _pg(cmd: list[str], opts: dict[str, Any], check: bool = True) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                          **opts)
    if proc.returncode != 0 and not check:
        log(f"{' '.join(cmd[:2])}... failed (rc {proc.returncode}): {proc.stderr[-500:]}")
    elif proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])}... failed (rc {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout)[-2000:]}")


@contextlib.contextmanager
def backend_store(kind: str, root: Path) -> Iterator[tuple[str, str]]:
    if kind == "postgresql":
        with postgres(root) as found:
            yield found
    else:
        yield f"sqlite:///{root / 'mlflow.db'}", "SQLite (fallback)"


# --- the gateway ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    idle_s: float
    rate: float
    backend: str
    rollout_timeout_s: float


def gateway_cfg(model: str, tracking_uri: str, audit: Path) -> Any:
    """configs/gateway.yaml as shipped, with the short policy, a private supervisor name and
    audit log, and `tracking_uri` (the proxy)."""
    import yaml

    from gateway.config import parse_config

    data: dict[str, Any] = yaml.safe_load((REPO_ROOT / "configs" / "gateway.yaml").read_text())
    data["app_name"] = "registry-traffic"
    data["model"] = {**data["model"], "name": model, "tracking_uri": tracking_uri}
    data["control"] = {**data["control"], "supervisor_name": f"bench-sup-{uuid.uuid4().hex[:8]}"}
    data["rollout"] = {**data["rollout"], "steps": list(STEPS), "auto_promote": True,
                       "rollback_window_s": ROLLBACK_WINDOW_S}
    data["supervisor"] = {**data["supervisor"], "audit_path": str(audit)}
    return parse_config(data)


def settled(status: dict[str, Any], version: str) -> bool:
    """The rollout of `version` is over, the free slot empty, no registry write pending."""
    if f"-v{version}-" not in (status.get("rollout_id") or ""):
        return False
    table = status["table"]
    free = "a" if table["champion_slot"] == "b" else "b"
    return (status["phase"] in ("promoted", "rolled_back", "failed")
            and table["slot_models"].get(free) is None
            and not status["registry"].get("pending_writes"))


def wait_quiet(proxy: CountingProxy, quiet_s: float, max_s: float) -> float:
    """Wait until only alias polls reached the registry for `quiet_s`; returns that instant
    (the end of the rollout's traffic)."""
    deadline = time.time() + max_s
    while True:
        last = max((h.t for h in proxy.hits() if h.kind != "alias_read"
                    and h.source != "driver"), default=0.0)
        now = time.time()
        if now - last >= quiet_s or now > deadline:
            return now
        time.sleep(0.2)


def one_rollout(url: str, token: str, cfg: Any, registry: Any, ref: Any,
                proxy: CountingProxy, timeout_s: float) -> dict[str, Any]:
    from gateway.control.audit import AuditLog
    from model_registry.refs import CHALLENGER

    def done() -> dict[str, Any] | None:
        status = admin_status(url, token)
        return status if settled(status, ref.version) else None

    registry.set_alias(CHALLENGER, ref.version, actor="bench", reason="registry traffic")
    set_at = time.time()  # the supervisor can only see it from here on
    status = wait_for(done, timeout_s, f"the rollout of v{ref.version} to settle",
                      interval_s=0.25)
    end = wait_quiet(proxy, QUIET_S, 30.0)
    records = AuditLog(cfg.supervisor.audit_path).read(status["rollout_id"])
    events = [(r.event, r.time) for r in records]
    first = {name: t for name, t in reversed(events)}
    return {"version": ref.version, "rollout_id": status["rollout_id"],
            "phase": status["phase"], "reason": status.get("reason") or "",
            "set_at": set_at, "end": end, "events": events,
            "loaded_at": first.get("loaded"),
            "ended_at": first.get("promoted") or first.get("rolled_back")}


def run(s: Settings, command: str) -> dict[str, Any]:
    from ray import serve

    from benchmarks.common import local_serve, prepare_env, register_linear
    from gateway.app import build_app, teardown
    from gateway.demo.models import Faults
    from gateway.demo.traffic import Traffic, random_rows
    from model_registry.refs import CHALLENGER, CHAMPION
    from model_registry.registry import ModelRegistry

    token = prepare_env()
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # Ray's workers inherit this environment
    machine = machine_info()
    root = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    marks: dict[str, float] = {}
    loads: dict[str, float] = {}  # 1-min load average: the registry's latency follows it
    rollouts: list[dict[str, Any]] = []
    try:
        with backend_store(s.backend, root) as (backend_uri, backend), \
                mlflow_server(root, backend_uri) as server_uri, \
                CountingProxy(server_uri) as proxy:
            log(f"{backend} behind mlflow server {server_uri}; counting proxy {proxy.uri}")
            # The driver's own calls go to the server directly: not counted.
            registry = ModelRegistry(f"bench-{uuid.uuid4().hex[:8]}", server_uri)
            champion = register_linear(registry, "champion")
            good = register_linear(registry, "healthy challenger", scale=1.01)
            bad = register_linear(registry, "challenger failing every call", scale=1.02,
                                  faults=Faults(error_rate=1.0))
            registry.set_alias(CHAMPION, champion.version, actor="bench")
            registry.delete_alias(CHALLENGER, actor="bench")
            cfg = gateway_cfg(registry.model_name, proxy.uri, root / "audit.jsonl")
            with local_serve() as url:
                marks["deploy_start"] = time.time()
                serve.run(build_app(cfg, proxy.uri), name=cfg.app_name, route_prefix="/")
                try:
                    wait_for(lambda: admin_status(url, token)["phase"] == "idle", 120,
                             "an idle gateway")
                    with Traffic(url, rate=s.rate, max_s=1200,
                                 payload=random_rows(seed=11)) as traffic:
                        time.sleep(5.0)  # the champion's replica warms up
                        marks["idle_start"] = time.time()
                        log(f"idle for {s.idle_s:g} s at {s.rate:g} req/s")
                        time.sleep(s.idle_s)
                        marks["idle_end"] = time.time()
                        loads["idle_end"] = os.getloadavg()[0]
                        for ref, what in ((good, "healthy"), (bad, "failing")):
                            log(f"rollout of the {what} challenger v{ref.version}")
                            r = one_rollout(url, token, cfg, registry, ref, proxy,
                                            s.rollout_timeout_s)
                            log(f"  {r['phase']} after {r['end'] - r['set_at']:.0f} s: "
                                f"{r['reason']}")
                            rollouts.append(r)
                            loads[f"rollout_{r['phase']}_end"] = os.getloadavg()[0]
                    answers = [(a.sent, a.status) for a in traffic.answers]
                finally:
                    teardown(cfg)
            hits, connections = proxy.hits(), list(proxy.connections)
    finally:
        _remove(root)
    machine["loadavg_1m_at_end"] = os.getloadavg()[0]
    machine["loadavg_1m_at"] = loads
    return report(s, command, machine, backend, cfg, hits, marks, rollouts, answers,
                  connections)


def _remove(root: Path) -> None:
    for _ in range(5):  # PostgreSQL's last files can land just after `pg_ctl stop` returns
        shutil.rmtree(root, ignore_errors=True)
        if not root.exists():
            return
        time.sleep(1.0)
    log(f"could not remove {root}")


# --- the report ----------------------------------------------------------------------------


Answers = Sequence[tuple[float, int]]  # the gateway's clients: (sent, status)


def window(hits: Sequence[Hit], answers: Answers, lo: float, hi: float) -> dict[str, Any]:
    """`summarize`, with the statuses the gateway's clients got meanwhile."""
    statuses = Counter(status for sent, status in answers if lo <= sent < hi)
    return {**summarize(hits, lo, hi),
            "client_statuses": {str(k): v for k, v in sorted(statuses.items())}}


def rollout_windows(hits: Sequence[Hit], answers: Answers, r: dict[str, Any],
                    ) -> dict[str, Any]:
    """The whole rollout (alias set -> quiet after it settled) and its parts: until the
    challenger was loaded, while it was judged, and after the verdict."""
    out = {"whole": window(hits, answers, r["set_at"], r["end"])}
    loaded, ended = r.get("loaded_at"), r.get("ended_at")
    if loaded is not None and ended is not None:
        out["until_loaded"] = window(hits, answers, r["set_at"], loaded)
        out["judged"] = window(hits, answers, loaded, ended)
        out["after_verdict"] = window(hits, answers, ended, r["end"])
    return out


def report(s: Settings, command: str, machine: dict[str, Any], backend: str, cfg: Any,
           hits: list[Hit], marks: dict[str, float], rollouts: list[dict[str, Any]],
           answers: Answers, connections: list[tuple[float, str, float]]) -> dict[str, Any]:
    gateway_hits = [h for h in hits if h.source != "driver"]
    windows: dict[str, Any] = {
        "deploy": window(gateway_hits, answers, marks["deploy_start"], marks["idle_start"]),
        "idle": window(gateway_hits, answers, marks["idle_start"], marks["idle_end"]),
    }
    for r in rollouts:
        windows[f"rollout_{r['phase']}"] = rollout_windows(gateway_hits, answers, r)
    lookups = [c[2] * 1e3 for c in connections]
    sup = cfg.supervisor
    return {
        "benchmark": "registry_traffic", "command": command, "machine": machine,
        "backend": backend, "settings": asdict(s),
        "gateway": {"registry_poll_s": sup.registry_poll_s, "judge_persist_s":
                    sup.judge_persist_s, "tick_s": sup.tick_s, "steps": list(STEPS),
                    "rollback_window_s": ROLLBACK_WINDOW_S, "triggers": "default"},
        "windows": windows,
        "rollouts": rollouts,
        "driver_requests_via_proxy": sum(1 for h in hits if h.source == "driver"),
        "client_statuses": {str(k): v for k, v in
                            sorted(Counter(status for _, status in answers).items())},
        # what counting cost: one /proc lookup per client connection (kept alive)
        "proxy_connections": {"n": len(connections),
                              "by_source": dict(Counter(c[1] for c in connections)),
                              "lookup_ms_p50": percentile(lookups, 50),
                              "lookup_ms_max": max(lookups, default=math.nan)},
        "hits": [asdict(h) | {"kind": h.kind} for h in hits],
    }


LABELS = {"alias_read": "alias reads (the poll)", "alias_write": "alias writes",
          "model_tag": "model tags (rollout state, alias history)",
          "version_tag": "version tags (judge state, verdict)",
          "version_read": "version reads", "run_write": "rollout run: logging",
          "run_read": "rollout run: reads", "artifact_download": "artifact downloads",
          "artifact_upload": "artifact uploads",
          "other": "other (health probe, server info)"}


def markdown(rep: dict[str, Any]) -> str:
    w = rep["windows"]
    idle = w["idle"]
    promoted, rolled = w.get("rollout_promoted", {}), w.get("rollout_rolled_back", {})
    judged, pw, rw = promoted.get("judged", {}), promoted.get("whole", {}), rolled.get("whole", {})
    nan = float("nan")

    def cell(win: dict[str, Any], key: str, kind: str, fmt: str) -> str:
        return format(win[key].get(kind, 0), fmt) if win else "n/a"

    def polls(win: dict[str, Any]) -> str:
        g = win.get("supervisor_poll_interval_s", {})
        return f"{g.get('p50', nan):.2f}/{g.get('p90', nan):.2f}/{g.get('max', nan):.1f} s"

    g = rep["gateway"]
    lines = [
        "## Registry traffic", "", machine_line(rep["machine"]), "",
        f"Command: `{rep['command']}`. {rep['backend']} behind a real `mlflow server`; every "
        "request counted by a proxy in front of it (the test driver's own calls bypass it). "
        f"Supervisor as shipped (registry poll {g['registry_poll_s']:g} s, judge persistence "
        f"{g['judge_persist_s']:g} s, tick {g['tick_s']:g} s); {rep['settings']['rate']:g} "
        "req/s of traffic; rollout steps "
        + ", ".join(f"{st['weight']:g}% ({st['min_requests']} req, {st['min_duration_s']:g} s)"
                    for st in g["steps"])
        + f", rollback window {g['rollback_window_s']:g} s.", "",
        "| requests | idle (req/s) | rollout, judged (req/s) | promoted rollout (total) "
        "| rolled-back rollout (total) |", "|---|---:|---:|---:|---:|"]
    for kind in KINDS:
        if not any(win.get("by_kind", {}).get(kind) for win in (idle, judged, pw, rw)):
            continue
        lines.append(f"| {LABELS[kind]} | {cell(idle, 'by_kind_rps', kind, '.2f')} | "
                     f"{cell(judged, 'by_kind_rps', kind, '.2f')} | "
                     f"{cell(pw, 'by_kind', kind, 'd')} | {cell(rw, 'by_kind', kind, 'd')} |")
    lines.append(f"| **all** | {idle['rps']:.2f} | {judged.get('rps', nan):.2f} | "
                 f"{pw.get('requests', 'n/a')} | {rw.get('requests', 'n/a')} |")
    judge_tag = judged.get("largest_request_bytes_by_kind", {}).get("version_tag")
    lines += [
        "", f"Windows: idle {idle['duration_s']:.0f} s; promoted rollout "
        f"{pw.get('duration_s', nan):.0f} s (judged {judged.get('duration_s', nan):.0f} s); "
        f"rolled-back rollout {rw.get('duration_s', nan):.0f} s (alias set -> settled, then "
        f"{QUIET_S:g} s with only polls). Interval between the supervisor's polls "
        f"(p50/p90/max): idle {polls(idle)}, judged {polls(judged)}. Registry API latency "
        f"(p50/p99 ms): idle {idle['api_latency_ms']['p50']:.0f}/"
        f"{idle['api_latency_ms']['p99']:.0f}"
        + (f", judged {judged['api_latency_ms']['p50']:.0f}/"
           f"{judged['api_latency_ms']['p99']:.0f}" if judged else "") + "."
        + (f" Largest judge-state tag written: {judge_tag / 1024:.1f} KiB." if judge_tag
           else ""),
        "", f"Gateway clients: {rep['client_statuses']} (status: answers) over the run; the "
        f"proxy saw {rep['proxy_connections']['n']} client connections."]
    return "\n".join(lines)


def log(msg: str) -> None:
    print(f"[registry_traffic] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m benchmarks.registry_traffic",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--idle-s", type=float, default=60.0, help="the idle window")
    p.add_argument("--rate", type=float, default=20.0, help="traffic, req/s (open loop)")
    p.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql",
                   help="the tracking server's store (sqlite: where PostgreSQL is missing)")
    p.add_argument("--rollout-timeout-s", type=float, default=300.0)
    a = p.parse_args(argv)
    return Settings(idle_s=a.idle_s, rate=a.rate, backend=a.backend,
                    rollout_timeout_s=a.rollout_timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    s = parse_args(argv)
    command = "python -m benchmarks.registry_traffic " + " ".join(
        sys.argv[1:] if argv is None else argv)
    rep = run(s, command.strip())
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / "registry_traffic.json"
    out.write_text(json.dumps(rounded(rep, 4), indent=1) + "\n")
    print(markdown(rep))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
