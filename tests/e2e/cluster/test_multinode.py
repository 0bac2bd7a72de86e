"""The gateway on a real three-node Ray cluster on this machine: a head (proxy, supervisor,
an ingress replica) and two worker nodes with a custom resource standing in for GPU nodes,
where the config places the model slots. MLflow is a real `mlflow server`.

1. `gateway serve --address`: traffic through every node's proxy; a bad challenger is rolled
   back, and every ingress replica on every node applies the rollback table.
2. `serve deploy` of a Serve config derived from `configs/serve.yaml`; mid-rollout a worker
   node is killed (SIGKILL of its processes: a node failure): what clients see through the
   surviving proxies, what the rollout does, and what happens when a replacement node joins.

Run with `make test-cluster`; its figures are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from benchmarks.procs import mlflow_server, stop_process_group
from gateway.demo.models import N_FEATURES, Faults
from gateway.demo.run import register_pyfunc_model
from model_registry.refs import CHALLENGER, CHAMPION, ModelRef
from model_registry.registry import ModelRegistry
from tests.conftest import ADMIN_TOKEN, free_port
from tests.e2e.cluster.raycluster import REPO, RayCluster
from tests.e2e.gateway.harness import _HandleLoop, linear, wait_for

# Minutes, not seconds: the module's cluster starts in the first test's setup.
pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.timeout(900)]

APP = "champion-gateway"  # configs/serve.yaml's application name
GPU = "gpu_node"


# ---- infrastructure ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Ray's socket paths must stay short: a directory right under /tmp.
    import tempfile

    return Path(tempfile.mkdtemp(prefix="gwc-", dir="/tmp"))


@pytest.fixture(scope="module")
def mlflow_uri(root: Path) -> Iterator[str]:
    with mlflow_server(root, f"sqlite:///{root}/mlflow.db", workers=2) as uri:
        yield uri


@pytest.fixture(scope="module")
def cluster(root: Path, mlflow_uri: str) -> Iterator[RayCluster]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
           "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled",
           "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
           # (which turns on direct ingress: a proxy on the head only) - a proxy per node:
           "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
           "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "gateway.serving.http.proxy_middlewares"}
    env.pop("RAY_ADDRESS", None)
    c = RayCluster(root, env, gcs_port=free_port(), dashboard_port=free_port(),
                   head_proxy_port=free_port(), head_cpus=2)
    try:
        c.start_head()
        c.add_worker("worker1", 1, {GPU: 1}, free_port())
        c.add_worker("worker2", 1, {GPU: 1}, free_port())
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def models(mlflow_uri: str) -> dict[str, Any]:
    registry = ModelRegistry(f"gw-cluster-{os.getpid()}", tracking_uri=mlflow_uri)
    return {"registry": registry,
            "v1": register_pyfunc_model(registry, linear(), "champion"),
            "good": register_pyfunc_model(registry, linear(scale=1.01), "healthy challenger"),
            "bad": register_pyfunc_model(registry, linear(Faults(error_rate=1.0)), "raises")}


def gateway_yaml(root: Path, cluster: RayCluster, model_name: str, hold: bool) -> Path:
    """The cluster's gateway config: slots on the GPU-resource nodes, one replica per node."""
    steps = [{"weight": 50.0, "min_requests": 10**9, "min_duration_s": 10**6}]
    cfg = {
        "app_name": APP,
        "model": {"name": model_name},
        "http": {"host": "127.0.0.1", "port": cluster.head_proxy_port},
        "ingress": {"num_replicas": 3, "max_replicas_per_node": 1, "num_cpus": 0.1},
        "slots": {"num_replicas": 2, "max_replicas_per_node": 1, "num_cpus": 0.1,
                  "resources": {GPU: 0.1}, "health_check_timeout_s": 60},
        # The first test's replicas flush through an aggregator per node; the second's
        # (the node loss) straight to the supervisor.
        "control": {"supervisor_name": f"sup-cluster-{int(hold)}", "flush_interval_s": 0.1,
                    "long_poll_timeout_s": 5.0, "aggregation": "none" if hold else "node"},
        "rollout": {"steps": steps, "auto_promote": False, "load_timeout_s": 120},
        "supervisor": {"tick_s": 0.1, "registry_poll_s": 0.25,
                       "audit_path": str(root / f"audit-{int(hold)}.jsonl")},
        "triggers": [{"guard": "error_rate"}] if not hold else [],
    }
    path = root / f"gateway-{int(hold)}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---- observation helpers ------------------------------------------------------------------

def admin(cluster: RayCluster, path: str) -> dict[str, Any]:
    resp = httpx.get(f"http://127.0.0.1:{cluster.head_proxy_port}{path}", timeout=10,
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    resp.raise_for_status()
    return dict(resp.json())


def status(cluster: RayCluster) -> dict[str, Any]:
    try:
        return admin(cluster, "/admin/rollout")
    except httpx.HTTPError:
        return {}


def deployments(app: str = APP) -> dict[str, Any]:
    import ray

    controller = ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    details = ray.get(controller.get_serve_instance_details.remote(), timeout=30)
    return dict((details.get("applications", {}).get(app) or {}).get("deployments", {}))


def proxies() -> dict[str, Any]:
    """Serve's proxies: node id -> status."""
    import ray

    controller = ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    details = ray.get(controller.get_serve_instance_details.remote(), timeout=30)
    return {node: p.get("status") for node, p in (details.get("proxies") or {}).items()}


def running_nodes(deployment: str) -> list[str]:
    replicas = deployments().get(deployment, {}).get("replicas") or []
    return [r["node_id"] for r in replicas if r.get("state") == "RUNNING"]


def describe_ingress() -> list[dict[str, Any]]:
    """Every ingress replica's own view (`Ingress.describe`, through a handle broadcast)."""
    from ray import serve

    async def ask() -> list[dict[str, Any]]:
        handle = serve.get_deployment_handle("ingress", APP)
        return list(await handle.broadcast("describe").results_async(timeout_s=20.0))

    return list(_HandleLoop.run(ask(), timeout_s=30.0))


class Clients:
    """Closed-loop clients per proxy port (one thread each), recording every outcome."""

    def __init__(self, ports: dict[str, int], key: str = "") -> None:
        self.ports = ports
        self.outcomes: dict[str, Counter[str]] = {name: Counter() for name in ports}
        self.versions: dict[str, Counter[str]] = {name: Counter() for name in ports}
        self.timeline: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n, p), daemon=True)
                         for n, p in ports.items()]

    def _run(self, name: str, port: int) -> None:
        body = {"inputs": [[0.5] * N_FEATURES]}
        with httpx.Client(timeout=15.0) as client:
            while not self._stop.is_set():
                try:
                    resp = client.post(f"http://127.0.0.1:{port}/v1/predict", json=body)
                    outcome = str(resp.status_code)
                    if resp.status_code == 200:
                        self.versions[name][resp.headers["x-gateway-model-version"]] += 1
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                    time.sleep(0.2)  # a dead proxy: do not spin
                self.outcomes[name][outcome] += 1
                self.timeline.append((time.monotonic(), name, outcome))
                time.sleep(0.02)

    def __enter__(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(20)

    def since(self, t0: float) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {name: Counter() for name in self.ports}
        for t, name, outcome in list(self.timeline):
            if t >= t0:
                out[name][outcome] += 1
        return out


def set_alias(registry: ModelRegistry, alias: str, ref: ModelRef | None) -> None:
    if ref is None:
        registry.delete_alias(alias)
    else:
        registry.set_alias(alias, ref.version, actor="test", reason="cluster test")


def teardown_app(cluster: RayCluster, supervisor: str) -> None:
    from ray import serve

    from gateway.control.supervisor import kill_supervisor

    serve.delete(APP)
    kill_supervisor(supervisor, "champion_gateway")  # and its node aggregators


REPORT: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def report(root: Path) -> Iterator[dict[str, Any]]:
    yield REPORT
    out = Path(os.environ.get("GATEWAY_CLUSTER_REPORT", REPO / "benchmarks" / "results"
                              / "cluster.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(REPORT, indent=2, sort_keys=True))


# ---- the tests ----------------------------------------------------------------------------

def test_gateway_serve_on_three_nodes_rolls_back_on_every_ingress_replica(
        cluster: RayCluster, models: dict[str, Any], root: Path) -> None:
    import ray

    registry: ModelRegistry = models["registry"]
    set_alias(registry, CHAMPION, models["v1"])
    set_alias(registry, CHALLENGER, None)
    cfg_path = gateway_yaml(root, cluster, registry.model_name, hold=False)
    log = root / "gateway-serve.log"
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gateway"), "serve", "--config", str(cfg_path),
             "--address", cluster.address, "--tracking-uri", registry.tracking_uri],
            stdout=out, stderr=subprocess.STDOUT, env=cluster.env, cwd=REPO,
            start_new_session=True)
    try:
        wait_for(lambda: b"serving; press Ctrl-C" in log.read_bytes() or proc.poll() is not None,
                 240, "gateway serve to deploy")
        assert proc.poll() is None, log.read_text()[-3000:]
        REPORT["gateway_serve_deploy_s"] = round(time.monotonic() - t0, 1)
    finally:
        # The app stays: Serve runs it in the cluster.
        assert stop_process_group(proc), "gateway serve processes left"

    workers = {n.name: n for n in cluster.nodes}
    gpu_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]
                 and n["Resources"].get(GPU)}
    all_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(gpu_nodes) == 2 and len(all_nodes) == 3
    for slot in ("slot_a", "slot_b"):
        nodes = wait_for(lambda s=slot: len(n := running_nodes(s)) == 2 and n, 120,
                         f"{slot} on two nodes")
        assert set(nodes) == gpu_nodes, (slot, nodes)  # the config placed them
    ingress_nodes = wait_for(lambda: len(n := running_nodes("ingress")) == 3 and n, 120,
                             "an ingress replica per node")
    assert set(ingress_nodes) == all_nodes

    ports = {name: node.proxy_port for name, node in workers.items()}
    with Clients(ports) as clients:
        try:
            wait_for(lambda: all(clients.outcomes[n]["200"] >= 20 for n in ports), 120,
                     "answers through every node's proxy")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {ports} {clients.outcomes} proxies "
                                 f"{proxies()}") from None
        set_alias(registry, CHALLENGER, models["bad"])
        done = wait_for(lambda: (s := status(cluster)).get("phase") == "rolled_back" and s,
                        180, "the bad challenger rolled back")
        rollback_table = int(done["table"]["version"])
        # Every ingress replica, on every node, applies the rollback's table (or a later one).
        views = wait_for(lambda: (v := describe_ingress()) and len(v) == 3 and all(
            x["table_version"] >= rollback_table for x in v) and v, 30,
            "the rollback table on every ingress replica")
        time.sleep(2.0)  # traffic after the rollback, through every proxy
    assert {v["node_id"] for v in views} == all_nodes
    assert all(v["challenger_weight"] == 0.0 for v in views)
    assert {v["flushes_to"] for v in views} == {"aggregator"}, views
    REPORT["rollback"] = {"reason": done["reason"], "clients": {
        n: dict(c) for n, c in clients.outcomes.items()},
        "versions": {n: dict(c) for n, c in clients.versions.items()},
        "ingress_views": [{k: v[k] for k in ("node_id", "table_version", "challenger_weight",
                                             "flushes_to")}
                          for v in views]}
    for name, outcomes in clients.outcomes.items():
        assert set(outcomes) == {"200"}, (name, dict(outcomes))  # failover hid every error
    teardown_app(cluster, "sup-cluster-0")


def test_serve_deploy_and_a_worker_node_lost_mid_rollout(
        cluster: RayCluster, models: dict[str, Any], root: Path) -> None:
    import ray

    registry: ModelRegistry = models["registry"]
    set_alias(registry, CHAMPION, models["v1"])
    set_alias(registry, CHALLENGER, None)
    cfg_path = gateway_yaml(root, cluster, registry.model_name, hold=True)
    serve_cfg = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    serve_cfg["http_options"]["port"] = cluster.head_proxy_port
    serve_cfg["applications"][0]["args"]["config"] = str(cfg_path)
    serve_path = root / "serve.yaml"
    serve_path.write_text(yaml.safe_dump(serve_cfg))
    t0 = time.monotonic()
    out = subprocess.run([str(Path(sys.executable).parent / "serve"), "deploy", str(serve_path),
                          "--address", cluster.dashboard], capture_output=True, text=True,
                         timeout=120, env=cluster.env, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for(lambda: len(running_nodes("slot_a")) == 2 and len(running_nodes("ingress")) == 3,
             240, "the app deployed by serve deploy")
    # (The phase is the app's last one, persisted in the registry: `rolled_back` here.)
    wait_for(lambda: status(cluster).get("phase"), 60, "the gateway answering")
    REPORT["serve_deploy_s"] = round(time.monotonic() - t0, 1)

    worker1, worker2 = (n for n in cluster.nodes if n.name in ("worker1", "worker2"))
    ports = {"head": cluster.head_proxy_port, "worker1": worker1.proxy_port,
             "worker2": worker2.proxy_port}
    with Clients(ports) as clients:
        set_alias(registry, CHALLENGER, models["good"])
        wait_for(lambda: (s := status(cluster)).get("phase") == "canary"
                 and s["table"]["challenger_weight"] == 50.0 and s, 240, "the canary at 50%")
        wait_for(lambda: clients.versions["head"][models["good"].version] >= 20, 60,
                 "challenger answers")
        killed_at = time.monotonic()
        worker2.stop(signal.SIGKILL)  # a node failure: raylet, workers, its proxy, all at once
        REPORT["node_kill_s"] = round(time.monotonic() - killed_at, 1)
        held = wait_for(lambda: (s := status(cluster)).get("holds") and s, 60,
                        "the rollout held for the lost challenger replica")
        held_after = time.monotonic() - killed_at
        time.sleep(10.0)  # a while with one GPU node: the rollout stays held at 0%
        during = status(cluster)
        joined_at = time.monotonic()
        cluster.add_worker("worker3", 1, {GPU: 1}, free_port())
        resumed = wait_for(lambda: (s := status(cluster)).get("phase") == "canary"
                           and not s.get("holds") and s["table"]["challenger_weight"] == 50.0
                           and s, 240, "the rollout resumed on the replacement node")
        resumed_after = time.monotonic() - joined_at
        time.sleep(3.0)
    after_kill = clients.since(killed_at)
    REPORT["node_lost"] = {
        "holds": held["holds"], "reason": held["reason"],
        "held_after_kill_s": round(held_after, 2),
        "weight_while_held": during["table"]["challenger_weight"],
        "phase_while_held": during["phase"],
        "resumed_after_join_s": round(resumed_after, 1),
        "clients_after_kill": {n: dict(c) for n, c in after_kill.items()},
        "clients_total": {n: dict(c) for n, c in clients.outcomes.items()},
        "replica_losses": resumed.get("replica_losses"),
    }
    assert during["phase"] == "canary" and during["table"]["challenger_weight"] == 0.0
    # Through the surviving nodes' proxies, every request was answered.
    for name in ("head", "worker1"):
        assert set(after_kill[name]) == {"200"}, (name, dict(after_kill[name]))
    assert len(set(running_nodes("slot_a"))) == 2  # the champion back on two nodes
    ray.get_runtime_context()  # still connected
    teardown_app(cluster, "sup-cluster-1")
