"""Shared helpers of the serving benchmarks (overhead, rollback time).

Statistics and the RESULTS.md writer are pure Python; everything else starts or talks to a
private local Ray instance that the benchmark owns (never an existing cluster), Serve on a
free loopback port, and MLflow on SQLite in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: this module stays light
    from gateway.demo.traffic import Traffic

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
RESULTS_MD = REPO_ROOT / "benchmarks" / "RESULTS.md"
PREDICT_BODY: dict[str, Any] = {"inputs": [[0.5, -0.25, 1.0, 0.0, 0.75, -1.0, 0.25, 0.1]]}

# --- statistics (pure) -------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks (numpy's
    default); NaN for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q: expected 0..100, got {q}")
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean in milliseconds of latencies given in seconds."""
    ms = [v * 1000.0 for v in latencies_s]
    mean = sum(ms) / len(ms) if ms else math.nan
    return {"n": float(len(ms)), "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99), "mean_ms": mean}


def median_of(runs: Sequence[dict[str, float]], key: str) -> float:
    """The median over repeated runs of one field."""
    return median([r[key] for r in runs])


def ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def rounded(obj: Any, digits: int = 3) -> Any:
    """Floats rounded for printing; NaN becomes None (valid JSON)."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else round(obj, digits)
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


# --- RESULTS.md ---------------------------------------------------------------------------


def replace_section(text: str, key: str, body: str) -> str:
    """`text` with the section between `<!-- key:begin -->` and `<!-- key:end -->` replaced by
    `body` (appended when absent), so each benchmark rewrites only its own section."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    head = text.rstrip()
    return (head + "\n\n" if head else "") + block + "\n"


RESULTS_HEADER = ("# Serving benchmarks\n\nWritten by the scripts `make bench-serving` runs "
                  "(`python -m benchmarks.<name>`); each rewrites only its own section.\n")


def write_section(key: str, body: str, path: Path = RESULTS_MD) -> None:
    text = path.read_text() if path.exists() else RESULTS_HEADER
    path.write_text(replace_section(text, key, body))


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / name
    out.write_text(json.dumps(rounded(payload), indent=2) + "\n")
    return out


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on, and how busy the machine was at the start."""
    cpu = "unknown"
    mem_gib = math.nan
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    import ray

    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem_gib, 1),
            "python": platform.python_version(), "ray": ray.__version__,
            "platform": platform.platform(), "loadavg_1m_at_start": os.getloadavg()[0],
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def machine_line(m: dict[str, Any]) -> str:
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; Python "
            f"{m['python']}, Ray {m['ray']}; {m['date']}; 1-min load average at start "
            f"{m['loadavg_1m_at_start']:.2f}.")


# --- a private Ray instance ----------------------------------------------------------------


def prepare_env(admin_token: str | None = None) -> str:
    """Environment that Ray's workers (and so every replica) inherit: set before Ray starts.
    Returns the admin token."""
    os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    token = admin_token or os.environ.get("GATEWAY_ADMIN_TOKEN") or uuid.uuid4().hex
    os.environ["GATEWAY_ADMIN_TOKEN"] = token
    # Replicas import `benchmarks.*` (not an installed package) by path.
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
    return token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_serve(num_cpus: int = 4, verbose: bool = False) -> Iterator[str]:
    """Start a private local Ray instance and Serve's proxy on a free loopback port; yield the
    base URL; stop both (and so every process they started) on exit."""
    import ray
    from ray import serve

    port = free_port()
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=verbose)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


@contextlib.contextmanager
def temp_registry() -> Iterator[Any]:
    """A fresh MLflow registry on SQLite in a temporary directory (removed on exit)."""
    from model_registry.registry import ModelRegistry

    tmp = Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
    try:
        yield ModelRegistry(f"bench-{uuid.uuid4().hex[:8]}",
                            tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def register_linear(registry: Any, description: str, scale: float = 1.0,
                    faults: Any = None) -> Any:
    """Register the demo LinearModel (a tiny real MLflow pyfunc) as a new version."""
    from gateway.demo.models import LinearModel, demo_weights
    from gateway.demo.run import register_pyfunc_model

    model = LinearModel([w * scale for w in demo_weights()], 0.1, faults)
    return register_pyfunc_model(registry, model, description)


def gateway_config(registry: Any, app_name: str, *, weight: float,
                   overrides: dict[str, Any] | None = None) -> Any:
    """The gateway with its default triggers (every guard), a private supervisor and audit
    log, and a rollout that gives the challenger `weight`% and holds there."""
    from gateway.config import parse_config

    audit = Path(tempfile.mkdtemp(prefix="bench-audit-")) / "audit.jsonl"
    base: dict[str, Any] = {
        "app_name": app_name,
        "model": {"name": registry.model_name, "tracking_uri": registry.tracking_uri},
        "ingress": {"num_cpus": 0.25},
        "slots": {"num_cpus": 0.25},
        "control": {"supervisor_name": f"bench-sup-{uuid.uuid4().hex[:8]}"},
        "rollout": {"steps": [{"weight": weight, "min_requests": 10**9,
                               "min_duration_s": 10**6}], "auto_promote": False},
        # The shipped registry poll (1 s): each poll is an MLflow query (~4.5 ms of supervisor
        # CPU on SQLite), so a faster one would charge the gateway CPU it does not spend.
        "supervisor": {"audit_path": str(audit)},
    }
    for key, value in (overrides or {}).items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(base)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str,
             interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")


def admin_status(url: str, token: str) -> dict[str, Any]:
    import httpx

    resp = httpx.get(f"{url}/admin/rollout", headers={"authorization": f"Bearer {token}"},
                     timeout=10.0)
    resp.raise_for_status()
    return dict(resp.json())


# --- processes ------------------------------------------------------------------------------


def _ancestors(pid: int) -> set[int]:
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return seen


def find_pids(cmdline_prefix: str) -> list[int]:
    """PIDs of processes started by this benchmark (descendants of this process: its Ray
    instance) whose command line starts with `cmdline_prefix` (Ray names actor processes
    `ray::<Class>` and Serve replicas `ray::ServeReplica:<app>:<deployment>`). Other Ray
    instances on the machine are never matched."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if cmd.startswith(cmdline_prefix) and me in _ancestors(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return math.nan


# --- load generators ------------------------------------------------------------------------


def interleaved_latencies(urls: dict[str, str], n: int, warmup: int,
                          body: dict[str, Any] = PREDICT_BODY
                          ) -> dict[str, tuple[list[float], int]]:
    """One client, one request at a time on a kept-alive connection, to each endpoint in
    turn, so every endpoint's samples are taken under the same conditions of the machine
    (paired). Returns, per name, (latencies in s, non-200 answers)."""
    import httpx

    lat: dict[str, list[float]] = {name: [] for name in urls}
    errors = dict.fromkeys(urls, 0)
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=30.0) as client:
        for i in range(warmup + n):
            for name, url in urls.items():
                start = time.perf_counter()
                resp = client.post(url, content=payload, headers=headers)
                elapsed = time.perf_counter() - start
                if resp.status_code != 200:
                    errors[name] += 1
                if i >= warmup:
                    lat[name].append(elapsed)
    return {name: (lat[name], errors[name]) for name in urls}


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(url: str, connections: int, duration_s: float,
            body: dict[str, Any] = PREDICT_BODY) -> dict[str, float]:
    """Closed-loop load with wrk (one thread, `connections` kept-alive connections) for
    `duration_s`. Errors: socket errors plus non-2xx answers."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
        script = f.name
    env = {**os.environ, "BENCH_BODY": json.dumps(body)}
    try:
        proc = subprocess.run(
            [exe, "-t1", f"-c{connections}", f"-d{max(1, math.ceil(duration_s))}s",
             "--timeout", "30s", "-s", script, url],
            capture_output=True, text=True, env=env, timeout=duration_s + 60, check=False)
    finally:
        os.unlink(script)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed (rc {proc.returncode}): {proc.stderr or proc.stdout}")
    raw = json.loads(line.split(" ", 1)[1])
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {"requests": raw["requests"], "seconds": seconds, "rps": raw["requests"] / seconds,
            "errors": errors, "p50_ms": raw["p50_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
            "mean_ms": raw["mean_us"] / 1000}


def _httpx_load(url: str, connections: int, duration_s: float,
                body: dict[str, Any]) -> dict[str, float]:
    """Closed loop with the shared generator (gateway.demo.traffic), `connections` workers."""
    from gateway.demo.traffic import Traffic, fixed

    lat: list[float] = []
    traffic = Traffic(url, path="", concurrency=connections, max_s=duration_s,
                      payload=fixed(body), on_answer=lambda _a, _r, s: lat.append(s))
    start = time.perf_counter()
    answers = asyncio.run(traffic.run())
    seconds = time.perf_counter() - start
    s = latency_summary_ms(lat)
    return {"requests": len(lat), "seconds": seconds, "rps": len(lat) / seconds,
            "errors": sum(1 for a in answers if a.status != 200), "p50_ms": s["p50_ms"],
            "p99_ms": s["p99_ms"], "mean_ms": s["mean_ms"]}


def run_load(url: str, connections: int, duration_s: float, client: str = "auto",
             body: dict[str, Any] = PREDICT_BODY) -> dict[str, float]:
    """Closed-loop concurrent load for `duration_s`: wrk when installed (`client='auto'`),
    else httpx."""
    if load_client_name(client) == "wrk":
        return run_wrk(url, connections, duration_s, body)
    return _httpx_load(url, connections, duration_s, body)


def run_count(url: str, connections: int, n: int, max_s: float,
              client: str = "auto") -> dict[str, float]:
    """Closed-loop load until at least `n` answers (or `max_s`), in chunks of at most 30 s
    sized from the rate seen so far (wrk runs for a duration, not a count)."""
    total = errors = 0
    start = time.monotonic()
    rate = 100.0
    while total < n and time.monotonic() - start < max_s:
        chunk = min(30.0, max(2.0, (n - total) / rate), max_s - (time.monotonic() - start))
        r = run_load(url, connections, max(1.0, chunk), client)
        total += int(r["requests"])
        errors += int(r["errors"])
        rate = max(r["rps"], 1.0)
    seconds = time.monotonic() - start
    return {"requests": total, "errors": errors, "seconds": seconds, "rps": total / seconds}


def load_client_name(client: str) -> str:
    return "wrk" if client == "wrk" or (client == "auto" and wrk_path()) else "httpx"


# --- open-loop traffic at a fixed rate -------------------------------------------------------


def rate_traffic(url: str, rate: float, max_s: float = 300.0) -> Traffic:
    """Requests to `url` (an endpoint) at a fixed rate (open loop) on a background thread,
    recording every answer (`.answers`: sent, status, arm); use as `with rate_traffic(...)`.
    Bounded by `max_s` whatever happens."""
    from gateway.demo.traffic import Traffic, fixed

    return Traffic(url, rate=rate, max_s=max_s, path="", payload=fixed(PREDICT_BODY))
