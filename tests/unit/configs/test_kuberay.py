"""The KubeRay RayService manifest and the Serve config files: valid, and consistent.

`configs/kuberay/rayservice.yaml` is checked with Ray's own Serve schema and the gateway's own
config loader, and against itself: the slots' GPU share must fit the GPU worker group, the
custom resource they ask for must be one a group declares, the admin token must come from a
Secret. Each check is a small function that raises `ManifestError`; the tests call it on the
shipped file and on a broken copy, so every check is seen to fail.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

from core.errors import ConfigError
from gateway.config import GatewayConfig, load_config, parse_config
from gateway.runtime import PROXY_CALLBACK

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "configs" / "kuberay" / "rayservice.yaml"
SERVE_YAML = ROOT / "configs" / "serve.yaml"
SECRET_NAME = "champion-gateway-secrets"
GPU_LIMIT = "nvidia.com/gpu"
# Two model-slot deployments (slot_a, slot_b), each with the `slots` settings.
SLOT_DEPLOYMENTS = 2
# Env var names that hold credentials: only ever from a Secret, never a literal value.
SECRET_ENV = re.compile(r"TOKEN|PASSWORD|SECRET|_KEY$|CREDENTIAL", re.IGNORECASE)


class ManifestError(AssertionError):
    """A manifest check failed (an AssertionError, so pytest shows it as one)."""


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ManifestError(message)


# ---- reading ----
def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    require(len(docs) == 1, f"{path}: expected one document, got {len(docs)}")
    doc = docs[0]
    require(isinstance(doc, dict), f"{path}: not a mapping")
    return doc


def serve_schema(data: Any) -> ServeDeploySchema:
    """Ray's own validation of a Serve config (what `serve deploy` and KubeRay send)."""
    return ServeDeploySchema.model_validate(data)


def serve_config_v2(manifest: Mapping[str, Any]) -> ServeDeploySchema:
    raw = manifest["spec"]["serveConfigV2"]
    require(isinstance(raw, str), "spec.serveConfigV2: KubeRay wants a YAML string")
    return serve_schema(yaml.safe_load(raw))


def only_app(schema: ServeDeploySchema) -> ServeApplicationSchema:
    require(len(schema.applications) == 1, "expected exactly one Serve application")
    return schema.applications[0]


def cluster(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    return manifest["spec"]["rayClusterConfig"]


def groups(manifest: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(name, group spec) for the head group and every worker group."""
    yield "head", cluster(manifest)["headGroupSpec"]
    for group in cluster(manifest).get("workerGroupSpecs", []):
        yield group["groupName"], group


def containers(manifest: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, group in groups(manifest):
        for container in group["template"]["spec"]["containers"]:
            yield f"{name}/{container['name']}", container


def env_of(container: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def cpu_quantity(value: Any) -> float:
    """A Kubernetes CPU quantity ("8", 8, "500m") in CPUs."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def custom_resources(raw: str | None) -> dict[str, float]:
    """rayStartParams `resources`: KubeRay's format is a JSON string holding a JSON object,
    '"{\\"name\\": 1}"'; a bare JSON object is read too."""
    if raw is None:
        return {}
    value = json.loads(raw.strip())
    if isinstance(value, str):
        value = json.loads(value)
    require(isinstance(value, dict), f"rayStartParams.resources: not a JSON object: {raw!r}")
    return {str(k): float(v) for k, v in value.items()}


def node_resources(group: Mapping[str, Any]) -> dict[str, float]:
    """The Ray resources one pod of the group declares (explicit rayStartParams only)."""
    params = group.get("rayStartParams", {})
    require("num-cpus" in params, "rayStartParams.num-cpus: set it explicitly")
    node = {"CPU": float(params["num-cpus"]), "GPU": float(params.get("num-gpus", 0))}
    node.update(custom_resources(params.get("resources")))
    return node


def pods(name: str, group: Mapping[str, Any], at: str) -> int:
    """Pods in a group when it is scaled to its `min` or `max`; the head is one pod."""
    if name == "head":
        return 1
    return int(group["minReplicas" if at == "min" else "maxReplicas"])


def config_path(app: ServeApplicationSchema, root: Path = ROOT) -> Path:
    """The gateway config the app names; relative paths are relative to the image's working
    directory, which holds the repository (checked by check_working_dirs)."""
    path = Path(app.args["config"])
    return path if path.is_absolute() else root / path


def gateway_config(manifest: Mapping[str, Any], root: Path = ROOT) -> GatewayConfig:
    return load_config(config_path(only_app(serve_config_v2(manifest)), root))


def load_config_with(cfg: GatewayConfig, **sections: dict[str, Any]) -> GatewayConfig:
    """`cfg` with some sections' keys replaced, validated by the gateway's own loader."""
    raw = dataclasses.asdict(cfg)
    for section, values in sections.items():
        raw[section].update(values)
    return parse_config(raw)


# ---- checks ----
def check_app(schema: ServeDeploySchema, cfg: GatewayConfig) -> None:
    """What the gateway relies on in the Serve config."""
    app = only_app(schema)
    require(app.import_path == "gateway.app:build", f"import_path: {app.import_path}")
    require(app.route_prefix == "/", f"route_prefix: {app.route_prefix}")
    require(app.external_scaler_enabled is True,
            "external_scaler_enabled: the supervisor scales the champion through it")
    require(app.name == cfg.app_name,
            f"application name {app.name!r} != gateway app_name {cfg.app_name!r} "
            "(the supervisor scales deployments of app_name)")
    require("config" in app.args, "args.config: names the gateway config file")


def check_working_dirs(manifest: Mapping[str, Any]) -> None:
    """Every container starts Ray in the same directory, so a relative args.config means the
    same file on every pod."""
    dirs = {name: c.get("workingDir") for name, c in containers(manifest)}
    require(len(set(dirs.values())) == 1 and None not in dirs.values(),
            f"containers need one shared workingDir (the repository root): {dirs}")


def slot_demand(cfg: GatewayConfig) -> dict[str, float]:
    slots = cfg.slots
    demand = {"CPU": slots.num_cpus, "GPU": slots.num_gpus, **dict(slots.resources)}
    return {r: amount for r, amount in demand.items() if amount > 0}


def replicas_per_pod(node: Mapping[str, float], demand: Mapping[str, float]) -> float:
    """How many replicas with `demand` one pod holds (Ray packs whole replicas per node)."""
    if not demand:
        return math.inf
    # The epsilon absorbs float error (1 / 0.01 is not always exactly 100).
    return min(math.floor(node.get(r, 0.0) / amount + 1e-9) for r, amount in demand.items())


def check_gpu_limits(manifest: Mapping[str, Any]) -> None:
    """Ray's num-gpus matches the GPUs Kubernetes gives the pod; num-cpus fits its CPUs."""
    for name, group in groups(manifest):
        node = node_resources(group)
        for container in group["template"]["spec"]["containers"]:
            limits = container.get("resources", {}).get("limits", {})
            gpus = float(limits.get(GPU_LIMIT, 0))
            require(gpus == node["GPU"],
                    f"{name}: rayStartParams num-gpus {node['GPU']} != {GPU_LIMIT} limit {gpus}")
            require("cpu" in limits and node["CPU"] <= cpu_quantity(limits["cpu"]),
                    f"{name}: num-cpus {node['CPU']} exceeds the cpu limit {limits.get('cpu')}")


def check_slots_fit(manifest: Mapping[str, Any], cfg: GatewayConfig, at: str) -> None:
    """Both slot deployments at their min (or max) replica count fit the groups at their
    minReplicas (or maxReplicas): GPU share, CPUs and custom resources, packed per pod."""
    demand = slot_demand(cfg)
    most = cfg.slots.max_replicas()
    per_slot = cfg.slots.min_replicas() if at == "min" or most is None else most
    needed = SLOT_DEPLOYMENTS * per_slot
    room = sum(replicas_per_pod(node_resources(g), demand) * pods(n, g, at)
               for n, g in groups(manifest))
    require(room >= needed,
            f"slots at {at}: {needed} replicas of {demand} need room, the cluster at "
            f"{at}Replicas holds {room}")


def check_cpus_fit(manifest: Mapping[str, Any], cfg: GatewayConfig) -> None:
    """At minReplicas, the cluster's CPUs hold the ingress and both slots at their minimum."""
    need = (cfg.ingress.min_replicas() * cfg.ingress.num_cpus
            + SLOT_DEPLOYMENTS * cfg.slots.min_replicas() * cfg.slots.num_cpus)
    have = sum(node_resources(g)["CPU"] * pods(n, g, "min") for n, g in groups(manifest))
    require(have >= need, f"CPUs at minReplicas: {have} < {need} needed")


def check_custom_resources(manifest: Mapping[str, Any], cfg: GatewayConfig) -> None:
    """Every custom resource the slots or the ingress ask for is declared by some worker
    group (else their replicas never schedule)."""
    declared: set[str] = set()
    for name, group in groups(manifest):
        if name != "head":
            declared |= set(custom_resources(group["rayStartParams"].get("resources")))
    for section, res in (("slots", cfg.slots.resources), ("ingress", cfg.ingress.resources)):
        missing = set(res) - declared
        require(not missing, f"{section}.resources {sorted(missing)}: no worker group's "
                             f"rayStartParams declares them (declared: {sorted(declared)})")


def check_worker_replicas(manifest: Mapping[str, Any]) -> None:
    for name, group in groups(manifest):
        if name == "head":
            continue
        lo, n, hi = group["minReplicas"], group.get("replicas", group["minReplicas"]), \
            group["maxReplicas"]
        require(1 <= lo <= n <= hi, f"{name}: need 1 <= minReplicas <= replicas <= "
                                    f"maxReplicas, got {lo}, {n}, {hi}")


def check_no_secret_object(text: str) -> None:
    """The file commits no Secret (one is created with kubectl, see docs/deployment.md)."""
    kinds = [d.get("kind") for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    require("Secret" not in kinds, "the manifest must not carry a Secret with values")


def check_secrets(manifest: Mapping[str, Any]) -> None:
    """The admin token (and any credential) comes from the Secret by reference, never as a
    literal value, in the pods' env or in serveConfigV2's runtime_env."""
    for name, container in containers(manifest):
        env = env_of(container)
        token = env.get("GATEWAY_ADMIN_TOKEN")
        if token is None:
            raise ManifestError(f"{name}: GATEWAY_ADMIN_TOKEN is not set")
        ref = token.get("valueFrom", {}).get("secretKeyRef", {})
        require("value" not in token and ref.get("name") == SECRET_NAME and "key" in ref,
                f"{name}: GATEWAY_ADMIN_TOKEN must come from secretKeyRef {SECRET_NAME}")
        require(not ref.get("optional", False),
                f"{name}: the admin token is required, its secretKeyRef may not be optional")
        for var, entry in env.items():
            require(not (SECRET_ENV.search(var) and "value" in entry),
                    f"{name}: {var} holds a literal value; take it from the Secret")
    raw_app = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    for app in raw_app.get("applications", []):
        env_vars = (app.get("runtime_env") or {}).get("env_vars", {})
        require(not any(SECRET_ENV.search(k) for k in env_vars),
                "serveConfigV2 runtime_env.env_vars: credentials belong in the Secret")


def check_ray_auth(manifest: Mapping[str, Any]) -> None:
    """Ray's own ports take a token (docs/security.md: Ray 2.60 does not default to it)."""
    mode = cluster(manifest).get("authOptions", {}).get("mode")
    require(mode == "token", f"rayClusterConfig.authOptions.mode: token, got {mode!r}")


def check_env(manifest: Mapping[str, Any], cfg: GatewayConfig) -> None:
    """What every Ray process needs from its pod's environment."""
    var, callback = PROXY_CALLBACK
    for name, container in containers(manifest):
        env = env_of(container)
        for entry in env.values():
            require("valueFrom" in entry or isinstance(entry.get("value"), str),
                    f"{name}: env {entry['name']}: Kubernetes wants a string value")
        require(env.get(var, {}).get("value") == callback,
                f"{name}: {var} must be {callback} (Serve's proxy header guard)")
        if cfg.model.tracking_uri is None:
            uri = env.get("MLFLOW_TRACKING_URI", {}).get("value", "")
            require(uri.startswith(("http://", "https://")),
                    f"{name}: model.tracking_uri is null, so MLFLOW_TRACKING_URI must name "
                    f"the MLflow server, got {uri!r}")


def check_prometheus(manifest: Mapping[str, Any], cfg: GatewayConfig) -> None:
    """Each pod's scrape annotation names the port its Ray exports metrics on, and the
    container exposes that port."""
    for name, group in groups(manifest):
        port = str(group["rayStartParams"].get("metrics-export-port", ""))
        require(port == str(cfg.observability.metrics_export_port),
                f"{name}: metrics-export-port {port!r} != observability.metrics_export_port")
        notes = group["template"].get("metadata", {}).get("annotations", {})
        require(notes.get("prometheus.io/scrape") == "true", f"{name}: prometheus.io/scrape")
        require(notes.get("prometheus.io/port") == port,
                f"{name}: prometheus.io/port {notes.get('prometheus.io/port')!r} != "
                f"metrics-export-port {port!r}")
        for container in group["template"]["spec"]["containers"]:
            exposed = {str(p["containerPort"]) for p in container.get("ports", [])}
            require(port in exposed, f"{name}: container does not expose port {port}")


def check_http(schema: ServeDeploySchema, manifest: Mapping[str, Any],
               cfg: GatewayConfig) -> None:
    """Serve's proxies listen on every pod, on the port the containers expose."""
    require(schema.proxy_location == "EveryNode",
            f"proxy_location: {schema.proxy_location}")
    port = schema.http_options.port
    require(schema.http_options.host == "0.0.0.0",
            "http_options.host: 0.0.0.0, else no other pod reaches the proxy")
    require(port == cfg.http.port, f"http_options.port {port} != gateway http.port")
    for name, container in containers(manifest):
        exposed = {p["containerPort"] for p in container.get("ports", [])}
        require(port in exposed, f"{name}: container does not expose the serve port {port}")


# ---- tests ----
@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return load_manifest()


@pytest.fixture(scope="module")
def cfg(manifest: dict[str, Any]) -> GatewayConfig:
    return gateway_config(manifest)


def mutated(manifest: Mapping[str, Any], change: Callable[[dict[str, Any]], None]
            ) -> dict[str, Any]:
    broken = copy.deepcopy(dict(manifest))
    change(broken)
    return broken


def set_serve(manifest: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    change(data)
    manifest["spec"]["serveConfigV2"] = yaml.safe_dump(data)


def gpu_group(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]


def test_manifest_is_a_rayservice(manifest: dict[str, Any]) -> None:
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayService"
    assert set(manifest["spec"]) >= {"serveConfigV2", "rayClusterConfig"}


def test_serve_config_v2_passes_rays_schema(manifest: dict[str, Any],
                                            cfg: GatewayConfig) -> None:
    schema = serve_config_v2(manifest)
    check_app(schema, cfg)
    check_http(schema, manifest, cfg)


@pytest.mark.parametrize("change", [
    lambda d: d["applications"][0].update(import_path="gateway"),
    lambda d: d["applications"][0].update(external_scaler_enabled="sometimes"),
    lambda d: d.update(proxy_location="EverywhereAtOnce"),
    # Ray refuses Serve autoscaling overrides together with the external scaler.
    lambda d: d["applications"][0].update(deployments=[
        {"name": "slot_a", "autoscaling_config": {"min_replicas": 1, "max_replicas": 2}}]),
], ids=["import_path", "external_scaler_type", "proxy_location", "autoscaling_override"])
def test_rays_schema_rejects_a_broken_serve_config(
        manifest: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    broken = mutated(manifest, lambda m: set_serve(m, change))
    with pytest.raises(ValidationError):
        serve_config_v2(broken)


def test_serve_config_v2_must_be_a_string(manifest: dict[str, Any]) -> None:
    broken = mutated(manifest, lambda m: m["spec"].update(
        serveConfigV2=yaml.safe_load(m["spec"]["serveConfigV2"])))
    with pytest.raises(ManifestError, match="YAML string"):
        serve_config_v2(broken)


@pytest.mark.parametrize(("change", "match"), [
    (lambda a: a.update(external_scaler_enabled=False), "external_scaler_enabled"),
    (lambda a: a.update(name="other"), "app_name"),
    (lambda a: a.update(import_path="gateway.app:build_app"), "import_path"),
])
def test_app_checks_fail_on_a_broken_app(manifest: dict[str, Any], cfg: GatewayConfig,
                                         change: Callable[[dict[str, Any]], None],
                                         match: str) -> None:
    broken = mutated(manifest, lambda m: set_serve(m, lambda d: change(d["applications"][0])))
    with pytest.raises(ManifestError, match=match):
        check_app(serve_config_v2(broken), cfg)


def test_http_check_fails_on_loopback_proxies(manifest: dict[str, Any],
                                              cfg: GatewayConfig) -> None:
    broken = mutated(manifest, lambda m: set_serve(
        m, lambda d: d["http_options"].update(host="127.0.0.1")))
    with pytest.raises(ManifestError, match=re.escape("0.0.0.0")):
        check_http(serve_config_v2(broken), broken, cfg)


def test_import_path_names_the_builder(manifest: dict[str, Any]) -> None:
    module, _, attr = only_app(serve_config_v2(manifest)).import_path.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_named_gateway_config_loads(manifest: dict[str, Any], cfg: GatewayConfig) -> None:
    path = config_path(only_app(serve_config_v2(manifest)))
    assert path.is_relative_to(ROOT / "configs" / "kuberay") and path.is_file()
    assert cfg.slots.num_gpus > 0, "the cluster config serves the slots on GPUs"
    assert cfg.slots.autoscaling is not None and cfg.ingress.autoscaling is not None
    check_working_dirs(manifest)


def test_broken_gateway_config_is_refused(manifest: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "gateway.yaml"
    bad.write_text("slots:\n  num_gpus: 0.5\n  autoscaling: {min_replicas: 0}\n")
    broken = mutated(manifest, lambda m: set_serve(
        m, lambda d: d["applications"][0]["args"].update(config=str(bad))))
    with pytest.raises(ConfigError, match="min_replicas"):
        gateway_config(broken)
    missing = mutated(manifest, lambda m: set_serve(
        m, lambda d: d["applications"][0]["args"].update(config="configs/kuberay/nope.yaml")))
    with pytest.raises(ConfigError, match="not found"):
        gateway_config(missing)


def test_working_dirs_check_fails_on_a_mismatch(manifest: dict[str, Any]) -> None:
    broken = mutated(manifest, lambda m: gpu_group(m)["template"]["spec"]["containers"][0]
                     .update(workingDir="/srv"))
    with pytest.raises(ManifestError, match="workingDir"):
        check_working_dirs(broken)


def test_resources_fit(manifest: dict[str, Any], cfg: GatewayConfig) -> None:
    check_gpu_limits(manifest)
    check_worker_replicas(manifest)
    check_slots_fit(manifest, cfg, "min")
    check_slots_fit(manifest, cfg, "max")
    check_cpus_fit(manifest, cfg)
    check_custom_resources(manifest, cfg)


def test_slot_fit_fails_when_the_gpu_share_grows(manifest: dict[str, Any],
                                                 cfg: GatewayConfig) -> None:
    greedy = load_config_with(cfg, slots={"num_gpus": 0.75})
    with pytest.raises(ManifestError, match="slots at min"):
        check_slots_fit(manifest, greedy, "min")


def test_slot_fit_fails_when_the_gpu_group_shrinks(manifest: dict[str, Any],
                                                   cfg: GatewayConfig) -> None:
    small = mutated(manifest, lambda m: gpu_group(m).update(maxReplicas=2))
    check_slots_fit(small, cfg, "min")
    with pytest.raises(ManifestError, match="slots at max"):
        check_slots_fit(small, cfg, "max")
    no_label = mutated(manifest, lambda m: gpu_group(m)["rayStartParams"].pop("resources"))
    with pytest.raises(ManifestError, match="slots at min"):
        check_slots_fit(no_label, cfg, "min")


def test_gpu_limit_check_fails_on_a_mismatch(manifest: dict[str, Any]) -> None:
    broken = mutated(manifest, lambda m: gpu_group(m)["rayStartParams"].update(
        {"num-gpus": "2"}))
    with pytest.raises(ManifestError, match="num-gpus"):
        check_gpu_limits(broken)
    cpus = mutated(manifest, lambda m: gpu_group(m)["rayStartParams"].update(
        {"num-cpus": "16"}))
    with pytest.raises(ManifestError, match="cpu limit"):
        check_gpu_limits(cpus)


def test_cpu_fit_fails_with_too_many_ingress_replicas(manifest: dict[str, Any],
                                                      cfg: GatewayConfig) -> None:
    big = load_config_with(cfg, ingress={"num_cpus": 4, "autoscaling": {
        "min_replicas": 4, "max_replicas": 4}})
    with pytest.raises(ManifestError, match="CPUs at minReplicas"):
        check_cpus_fit(manifest, big)


def test_custom_resource_check_fails_when_undeclared(manifest: dict[str, Any],
                                                     cfg: GatewayConfig) -> None:
    assert cfg.slots.resources, "the slots name a custom resource of the GPU group"
    broken = mutated(manifest, lambda m: gpu_group(m)["rayStartParams"].update(
        resources='"{\\"other_node\\": 1}"'))
    with pytest.raises(ManifestError, match=re.escape("slots.resources")):
        check_custom_resources(broken, cfg)


def test_worker_replica_check_fails_on_inverted_bounds(manifest: dict[str, Any]) -> None:
    broken = mutated(manifest, lambda m: gpu_group(m).update(minReplicas=5))
    with pytest.raises(ManifestError, match="minReplicas"):
        check_worker_replicas(broken)


def test_custom_resources_format() -> None:
    assert custom_resources('"{\\"gpu_node\\": 1}"') == {"gpu_node": 1.0}
    assert custom_resources('{"a": 2}') == {"a": 2.0}
    with pytest.raises(ManifestError):
        custom_resources('"[1]"')


def test_admin_token_comes_from_the_secret(manifest: dict[str, Any]) -> None:
    check_secrets(manifest)
    check_no_secret_object(MANIFEST.read_text())


def test_secret_check_fails_on_a_literal_token(manifest: dict[str, Any]) -> None:
    def literal(m: dict[str, Any]) -> None:
        env = gpu_group(m)["template"]["spec"]["containers"][0]["env"]
        env[:] = [{"name": "GATEWAY_ADMIN_TOKEN", "value": "hunter2"} if
                  e["name"] == "GATEWAY_ADMIN_TOKEN" else e for e in env]

    with pytest.raises(ManifestError, match="secretKeyRef"):
        check_secrets(mutated(manifest, literal))
    with pytest.raises(ManifestError, match="Secret"):
        check_no_secret_object(MANIFEST.read_text() + "---\nkind: Secret\n")

    def password(m: dict[str, Any]) -> None:
        gpu_group(m)["template"]["spec"]["containers"][0]["env"].append(
            {"name": "MLFLOW_TRACKING_PASSWORD", "value": "pw"})

    with pytest.raises(ManifestError, match="literal"):
        check_secrets(mutated(manifest, password))


def test_ray_ports_need_a_token(manifest: dict[str, Any]) -> None:
    check_ray_auth(manifest)
    broken = mutated(manifest, lambda m: m["spec"]["rayClusterConfig"].pop("authOptions"))
    with pytest.raises(ManifestError, match="authOptions"):
        check_ray_auth(broken)


def test_env_on_every_container(manifest: dict[str, Any], cfg: GatewayConfig) -> None:
    check_env(manifest, cfg)
    module, _, attr = PROXY_CALLBACK[1].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attr))


def test_env_check_fails_without_the_proxy_callback(manifest: dict[str, Any],
                                                    cfg: GatewayConfig) -> None:
    def drop(m: dict[str, Any]) -> None:
        env = m["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
            "containers"][0]["env"]
        env[:] = [e for e in env if e["name"] != PROXY_CALLBACK[0]]

    with pytest.raises(ManifestError, match=PROXY_CALLBACK[0]):
        check_env(mutated(manifest, drop), cfg)

    def number(m: dict[str, Any]) -> None:
        gpu_group(m)["template"]["spec"]["containers"][0]["env"].append(
            {"name": "RAY_SERVE_THROUGHPUT_OPTIMIZED", "value": 1})

    with pytest.raises(ManifestError, match="string value"):
        check_env(mutated(manifest, number), cfg)


def test_prometheus_annotations_name_the_metrics_port(manifest: dict[str, Any],
                                                      cfg: GatewayConfig) -> None:
    check_prometheus(manifest, cfg)


def test_prometheus_check_fails_on_another_port(manifest: dict[str, Any],
                                                cfg: GatewayConfig) -> None:
    broken = mutated(manifest, lambda m: gpu_group(m)["template"]["metadata"][
        "annotations"].update({"prometheus.io/port": "9090"}))
    with pytest.raises(ManifestError, match=r"prometheus.io/port '9090'"):
        check_prometheus(broken, cfg)


def test_serve_yaml_is_valid_and_its_config_loads() -> None:
    """configs/serve.yaml (`serve run`/`serve deploy`): Ray's schema, the gateway's loader."""
    schema = serve_schema(yaml.safe_load(SERVE_YAML.read_text()))
    app = only_app(schema)
    cfg = load_config(config_path(app))
    check_app(schema, cfg)
    assert schema.proxy_location == "EveryNode"
    assert schema.http_options.port == cfg.http.port

