"""A real multi-node Ray cluster on this machine: `ray start --head` and `ray start --address`
processes, each node its own raylet, object store and workers.

Each node runs `ray start --block` in its own process group (so a node is stopped by that
group's id: SIGTERM stops it the way `ray stop` would, SIGKILL is a node failure), never by a
process-name pattern. Worker nodes get their own Serve proxy port
(`RAY_SERVE_WORKER_PROXY_HTTP_PORT`): on one machine every node's proxy would otherwise
share one port.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procs import group_alive, stop_process_group

NODE_START_TIMEOUT_S = 90.0
NODE_STOP_TIMEOUT_S = 30.0
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    proxy_port: int
    resources: dict[str, float] = field(default_factory=dict)
    stopped: bool = False  # stopped on purpose (a node failure the test caused)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """`sig` to the node's whole process group, then SIGKILL to what outlives the grace
        period; returns when none of its processes is left."""
        self.stopped = True
        gone = stop_process_group(self.proc, first=sig, grace_s=NODE_STOP_TIMEOUT_S)
        assert gone, f"processes of node {self.name} left in group {self.proc.pid}"


class RayCluster:
    """Head plus worker nodes on loopback; `env` is every node's environment (replicas inherit
    it from their raylet: the admin token, the proxy's header guard)."""

    def __init__(self, root: Path, env: dict[str, str], gcs_port: int, dashboard_port: int,
                 head_proxy_port: int, head_cpus: float = 2) -> None:
        self.root = root
        self.env = env
        self.gcs_port = gcs_port
        self.dashboard_port = dashboard_port
        self.head_proxy_port = head_proxy_port
        self.head_cpus = head_cpus
        self.nodes: list[Node] = []
        self._ray = str(Path(sys.executable).parent / "ray")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _spawn(self, name: str, args: list[str], env: dict[str, str], proxy_port: int,
               resources: dict[str, float]) -> Node:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([self._ray, "start", "--block", *args], stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                    start_new_session=True)
        node = Node(name, proc, log, proxy_port, resources)
        self.nodes.append(node)
        return node

    def start_head(self) -> Node:
        # A short temp dir: Ray's socket paths must fit in 107 bytes.
        args = ["--head", "--port", str(self.gcs_port), "--num-cpus", str(self.head_cpus),
                "--node-ip-address", "127.0.0.1", "--temp-dir", str(self.root / "ray"),
                "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                "--dashboard-port", str(self.dashboard_port), "--disable-usage-stats"]
        node = self._spawn("head", args, dict(self.env), self.head_proxy_port, {})
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while b"Ray runtime started" not in node.log.read_bytes():
            if not node.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"head did not start:\n{node.log.read_text()[-3000:]}")
            time.sleep(0.5)
        import ray

        # This process joins as a driver (its environment, too, carries `env`'s settings).
        ray.init(address=self.address, logging_level="WARNING")
        self.wait_nodes(1)
        return node

    def add_worker(self, name: str, cpus: float, resources: dict[str, float],
                   proxy_port: int) -> Node:
        env = {**self.env, "RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(proxy_port)}
        # A resource naming the node: a node killed a moment ago may still count as alive in
        # the GCS, so "one more node alive" would not say that this one joined.
        marked = {**resources, self.marker(name): 1}
        args = ["--address", self.address, "--num-cpus", str(cpus),
                "--node-ip-address", "127.0.0.1", "--resources", json.dumps(marked),
                "--disable-usage-stats"]
        node = self._spawn(name, args, env, proxy_port, resources)
        self.wait_nodes(len([n for n in self.nodes if not n.stopped]), joined=name)
        return node

    @staticmethod
    def marker(name: str) -> str:
        return f"cluster_node_{name}"

    def node_id(self, name: str) -> str | None:
        """The Ray node id of worker `name`, while it is alive."""
        import ray

        return next((n["NodeID"] for n in ray.nodes() if n["Alive"]
                     and n["Resources"].get(self.marker(name))), None)

    def alive_node_ids(self) -> list[str]:
        """Node ids the GCS reports alive (this process is a driver of the cluster)."""
        import ray

        return [n["NodeID"] for n in ray.nodes() if n["Alive"]]

    def wait_nodes(self, count: int, joined: str | None = None) -> None:
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            for node in self.nodes:
                if not node.stopped and not node.alive():
                    raise RuntimeError(f"node {node.name} exited:\n"
                                       f"{node.log.read_text()[-3000:]}")
            if len(self.alive_node_ids()) >= count and (joined is None
                                                        or self.node_id(joined)):
                return
            time.sleep(0.5)
        raise RuntimeError(f"fewer than {count} Ray nodes alive after {NODE_START_TIMEOUT_S} s")

    def stop(self) -> None:
        """This driver disconnects; workers stop first, then the head (each by its process
        group)."""
        import ray

        ray.shutdown()
        for node in reversed(self.nodes):
            if node.alive() or group_alive(node.proc.pid):
                node.stop()
