from __future__ import annotations

from gateway.admin_client import format_status

VIEW = {"phase": "canary", "step": 0, "steps": [{}, {}], "held": False, "reason": "",
        "table": {"version": 7, "challenger_weight": 5.0, "mode": "split"},
        "champion": {"version": "1"}, "challenger": {"version": "2"},
        "verdict": {"results": [{"guard": "error_rate", "state": "pass", "signal": True}]}}


def test_status_lines_name_phase_step_models_and_guards() -> None:
    text = format_status(VIEW)
    assert "phase: canary step 1/2" in text and "v1" in text and "error_rate=pass" in text
    assert "HELD" not in text


def test_a_held_rollout_says_so() -> None:
    text = format_status(VIEW | {"held": True, "reason": "both arms degraded: champion 9/200"})
    assert "HELD: both arms degraded" in text and "reason: both arms degraded" in text


def test_status_shows_the_registrys_aliases_and_infrastructure_holds() -> None:
    text = format_status(VIEW | {
        "held": True, "holds": ["registry_unreachable"],
        "registry": {"aliases": {"champion": "1", "challenger": "3"}, "reachable": False,
                     "error": "ConnectionError: refused",
                     "notes": ["challenger alias points at version 3, which is not being "
                               "rolled out"]}})
    assert "HELD (registry_unreachable)" in text
    assert "registry aliases: challenger: v3   champion: v1" in text
    assert "REGISTRY UNREACHABLE: ConnectionError: refused" in text
    assert "note: challenger alias points at version 3" in text
