"""A quick A/A + detection check of the real judge, small enough for CI."""

from __future__ import annotations

from benchmarks.judge_sim import SimConfig, run

CFG = SimConfig(rollouts=60, detect_rollouts=20, requests=10_000, detect_requests=20_000,
                workers=1, seed=7)


def test_quick_aa_and_detection_meet_targets() -> None:
    report = run(CFG)
    s = report["scenarios"]
    assert s["aa"]["ours"]["false_rollbacks"] <= 1  # expected ~0 at alpha 1%
    assert s["server_errors_100pct"]["ours"]["median_challenger_requests"] <= 20
    assert s["server_errors_100pct"]["ours"]["catastrophic_fast_path"] == 20
    for name in ("error_rate_0.5_to_3pct", "latency_p95_plus_50pct", "output_psi_0.3"):
        assert s[name]["ours"]["median_challenger_requests"] <= 1500, name
        assert s[name]["ours"]["detected_share"] >= 0.9, name
    # the right guard catches each regression
    assert set(s["latency_p95_plus_50pct"]["ours"]["fired_guards"]) == {"latency_p95"}
    assert set(s["output_psi_0.3"]["ours"]["fired_guards"]) == {"output_drift"}
    # baselines ran side by side on the same streams
    for name in ("flagger", "kayenta"):
        assert 0.0 <= s["aa"][name]["false_rollback_rate"] <= 1.0
