"""How a rollout policy becomes MLflow params (no MLflow needed)."""

from __future__ import annotations

from gateway.control.rollout_run import flatten_params


def test_flatten_params_for_mlflow() -> None:
    policy = {"steps": [{"weight": 5, "min_requests": 100}, {"weight": 50}],
              "shadow": None, "auto promote": True, "bad/key?": "x" * 7000, "empty": []}
    flat = flatten_params(policy)
    assert flat["steps.0.weight"] == "5" and flat["steps.1.weight"] == "50"
    assert flat["steps.0.min_requests"] == "100"
    assert flat["shadow"] == "None" and flat["auto promote"] == "True"
    assert len(flat["bad_key_"]) == 6000 and flat["bad_key_"].endswith("…")
    assert flat["empty"] == "[]"
