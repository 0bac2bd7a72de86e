from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from gateway.config import GatewayConfig, load_config, parse_config

REPO = Path(__file__).resolve().parents[3]


def test_defaults_are_valid_and_fractional() -> None:
    cfg = GatewayConfig()
    assert cfg.slots.num_cpus < 1 and cfg.ingress.num_cpus < 1
    assert cfg.routing.sticky_header == "x-gateway-key"
    assert cfg.rollout.steps[0].weight < cfg.rollout.steps[-1].weight


def test_shipped_config_files_load() -> None:
    cfg = load_config(REPO / "configs" / "gateway.yaml")
    assert cfg.model.name
    assert cfg.slots.health_check == "require"


def test_health_checks_are_required_unless_allowed_off() -> None:
    assert GatewayConfig().slots.health_check == "require"
    cfg = parse_config({"slots": {"health_check": "allow_unchecked"}})
    assert cfg.slots.health_check == "allow_unchecked"


@pytest.mark.parametrize(("data", "message"), [
    ({"slots": {"num_cpus": -1}}, "slots.num_cpus: must be >= 0.0, got -1"),
    ({"http": {"port": 70000}}, "http.port: must be <= 65535"),
    ({"rollout": {"steps": [{"weight": 150}]}}, "rollout.steps[0].weight: must be <= 100.0"),
    ({"rollout": {"steps": [{"weight": 50}, {"weight": 10}]}}, "weights must strictly increase"),
    ({"rollout": {"on_deadline": "ignore"}}, "rollout.on_deadline: must be one of"),
    ({"judge": {"alpha": 2}}, "judge: JudgeContext.alpha must be in (0, 1)"),
    ({"triggers": [{"guard": "nope"}]}, "triggers[0].guard"),
    ({"alerts": [{"type": "email"}]}, "alerts[0].type: must be one of"),
    ({"timeouts": {"champion_s": 0}}, "timeouts.champion_s: must be > 0.0"),
    ({"slots": {"num_replicas": 1.5}}, "slots.num_replicas: expected an integer"),
    ({"admin": {"allow_unauthenticated": "yes"}}, "admin.allow_unauthenticated: expected true"),
    ({"http": {"portt": 1}}, "http.portt: unknown setting"),
    ({"bogus": {}}, "bogus: unknown setting"),
    ({"model": "x"}, "model: expected a mapping"),
    ({"model": {"backend": "onnx"}}, "model.backend: must be one of"),
    ({"model": {"name": ""}}, "model.name: expected a non-empty string"),
    ({"slots": {"health_check": "skip"}},
     "slots.health_check: must be one of ['require', 'allow_unchecked'], got 'skip'"),
    ({"slots": {"health_check": False}}, "slots.health_check: must be one of"),
    ({"slots": {"autoscaling": {"min_replicas": 0}}},
     "slots.autoscaling.min_replicas: must be >= 1"),
    ({"ingress": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}},
     "ingress.autoscaling: autoscaling: min_replicas (3) > max_replicas (2)"),
    ({"slots": {"autoscaling": {"initial_replicas": 9}}}, "initial_replicas (9) must lie"),
    ({"slots": {"autoscaling": {"target_ongoing_requests": 0}}},
     "slots.autoscaling.target_ongoing_requests: must be > 0.0"),
    ({"slots": {"autoscaling": {"max_replica": 2}}},
     "slots.autoscaling.max_replica: unknown setting"),
    ({"slots": {"resources": {"gpu_node": -1}}}, "resources.gpu_node: must be a number >= 0"),
    ({"slots": {"resources": {"GPU": 1}}}, "resources.GPU: use num_cpus/num_gpus"),
    ({"ingress": {"max_replicas_per_node": 0}}, "max_replicas_per_node: must be >= 1"),
    ({"control": {"supervisor_placement": "worker"}},
     "control.supervisor_placement: must be one of ['head', 'any']"),
])
def test_every_bad_value_names_its_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert message in str(err.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("http: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("http:\n  port: abc\n")
    with pytest.raises(ConfigError, match=r"wrong.yaml: http.port: expected an integer"):
        load_config(wrong)


def test_admin_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="GATEWAY_ADMIN_TOKEN is not set"):
        GatewayConfig().admin_token()
    local = parse_config({"admin": {"allow_unauthenticated": True}})
    assert local.admin_token() is None
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "s3cret")
    assert GatewayConfig().admin_token() == "s3cret"


def test_autoscaling_and_resources_become_serve_options() -> None:
    from ray.serve.config import AutoscalingConfig

    cfg = parse_config({
        "slots": {"resources": {"gpu_node": 0.01}, "num_gpus": 0.5,
                  "autoscaling": {"min_replicas": 2, "max_replicas": 5,
                                  "upscale_delay_s": 1.0}},
        "ingress": {"num_replicas": 3}})
    slots = cfg.slots.replica_options()
    assert "num_replicas" not in slots  # Serve refuses both at once
    serve_cfg = AutoscalingConfig(**slots["autoscaling_config"])  # Serve's own validation
    assert (serve_cfg.min_replicas, serve_cfg.max_replicas, serve_cfg.upscale_delay_s) == (
        2, 5, 1.0)
    assert cfg.slots.actor_options() == {"num_cpus": 0.25, "num_gpus": 0.5,
                                         "resources": {"gpu_node": 0.01}}
    assert (cfg.slots.min_replicas(), cfg.slots.max_replicas()) == (2, 5)
    assert cfg.ingress.replica_options() == {"num_replicas": 3}
    spread = parse_config({"ingress": {"max_replicas_per_node": 1}}).ingress
    assert spread.replica_options() == {"num_replicas": 1, "max_replicas_per_node": 1}
    assert cfg.ingress.actor_options() == {"num_cpus": 0.25, "num_gpus": 0.0}
    assert (cfg.ingress.min_replicas(), cfg.ingress.max_replicas()) == (3, None)
