"""gateway.metrics against a real Ray metrics export endpoint.

Records every metric in a Ray instance (a private one, or the session's shared one when it is
already up), scrapes the endpoint and checks names, tags and values. Tag values unique to this
run keep the counts independent of anything else recorded on a shared instance.
"""

from __future__ import annotations

import logging
import math
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import metrics as gm
from gateway.metrics import Parsed, select, total

RUN = f"t{uuid.uuid4().hex[:8]}"  # this run's model version / guard name
CHAMPION_LATENCIES = (0.0007, 0.003, 0.004, 0.02, 0.04, 0.2, 2.0)  # 7 ok calls
CHALLENGER_CALLS = 3  # recorded from a separate Ray worker process
SCRAPE_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ray_metrics_url() -> Iterator[str]:
    import ray

    if ray.is_initialized():  # the session's shared instance (tests/conftest.py) is up
        node = ray._private.worker.global_worker.node
        assert node is not None
        yield gm.metrics_url(node.metrics_export_port)
        return
    port = _free_port()
    # address="local" always starts a new instance; the 1 s report interval (Ray's floor)
    # makes recorded points visible within seconds instead of 10.
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level=logging.WARNING,
             _metrics_export_port=port, _system_config={"metrics_report_interval_ms": 1000})
    try:
        yield gm.metrics_url(port)
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def driver_id(ray_metrics_url: str) -> str:
    import ray

    return str(ray.get_runtime_context().get_worker_id())


def _record_challenger_calls(n: int) -> str:
    """Record `n` challenger calls in a fresh worker process; returns its worker id."""
    import ray

    @ray.remote(num_cpus=0)
    def record(run: str, n: int) -> str:
        from gateway.metrics import get_metrics

        m = get_metrics()
        for _ in range(n):
            m.request("challenger", run, "ok", 0.03)
        assert m.flush_requests() == n
        return str(ray.get_runtime_context().get_worker_id())

    return str(ray.get(record.remote(RUN, n), timeout=60))


def _record_everything() -> None:
    m = gm.get_metrics()
    for latency in CHAMPION_LATENCIES:
        m.request("champion", RUN, "ok", latency)
    m.request("champion", RUN, "server_error", 0.5)
    m.request("champion", RUN, "timeout", 12.0)
    m.request("champion", RUN, "unavailable", 0.0)  # no call: counted, no latency
    # >=: other tests in this process may have left calls in the buffer.
    assert m.flush_requests() >= len(CHAMPION_LATENCIES) + 3
    m.llm_timing("champion", RUN, 0.08, 0.012, 40)
    m.llm_timing("champion", RUN, 0.3, 0.02, 60)
    m.llm_timing("champion", RUN, None, None, 0)  # nothing measured: nothing recorded
    m.failover(RUN)
    m.failover(RUN)
    m.table(1_764_000_000_123, 25.0, "split")
    m.phase("canary")
    m.guard(f"lat_{RUN}", "fail", 0.91, 0.5)
    m.guard(f"err_{RUN}", "inconclusive", None, 0.01)
    m.verdict("rollback", f"lat_{RUN}")
    m.verdict("continue", RUN)
    m.verdict("continue", RUN)
    m.rollback(RUN, f"lat_{RUN}")
    m.rollback(RUN, "has spaces: free text")  # not a code: recorded as "other"
    m.cost("champion", RUN, 0.0021)
    m.cost("challenger", RUN, 0.0035)
    m.memory("champion", RUN, f"cuda:{RUN}", 2.5e9, 80e9)
    m.memory("champion", RUN, "cpu", 1.25e8, None)


@pytest.fixture(scope="module")
def recorded(ray_metrics_url: str, driver_id: str) -> dict[str, Any]:
    """Record everything once; scrape until every expected series has its final value."""
    worker_id = _record_challenger_calls(CHALLENGER_CALLS)
    _record_everything()
    expected_ok = len(CHAMPION_LATENCIES)

    def ready(parsed: Parsed) -> bool:
        return (total(parsed, gm.REQUESTS.exported, model_version=RUN, outcome="ok")
                == expected_ok + CHALLENGER_CALLS
                and all(name in parsed for name in gm.SERIES)
                and bool(select(parsed, gm.MEMORY_USED.exported, device="cpu",
                                model_version=RUN)))

    parsed = gm.scrape_until(ray_metrics_url, ready, timeout_s=SCRAPE_TIMEOUT_S)
    return {"parsed": parsed, "worker_id": worker_id, "driver_id": driver_id}


def _one(parsed: Parsed, name: str, **labels: str) -> float:
    found = select(parsed, name, **labels)
    assert len(found) == 1, f"{name}{labels}: expected one series, got {found}"
    return float(found[0].value)


def _assert_sum_within_buckets(got: float, observed: list[float],
                               bounds: tuple[float, ...]) -> None:
    """Ray exports a histogram's _sum from bucket midpoints, not the exact values: it lies
    between the sums of the observed values' bucket lower and upper bounds."""
    edges = (0.0, *bounds)
    low = sum(max(e for e in edges if e < v) for v in observed)
    high = sum(min(b for b in bounds if b >= v) for v in observed)
    assert low <= got <= high, (low, got, high)
    assert not math.isclose(low, high)  # the check can fail


def test_every_defined_series_is_exported_under_its_documented_name(
        recorded: dict[str, Any]) -> None:
    parsed: Parsed = recorded["parsed"]
    gateway_series = {n for n in parsed if n.startswith("ray_gateway_")}
    assert gateway_series == set(gm.SERIES)


def test_requests_are_counted_by_arm_version_and_outcome(recorded: dict[str, Any]) -> None:
    parsed = recorded["parsed"]
    name = gm.REQUESTS.exported
    assert name == "ray_gateway_requests_total"
    assert _one(parsed, name, arm="champion", model_version=RUN, outcome="ok") == 7
    for outcome in ("server_error", "timeout", "unavailable"):
        assert _one(parsed, name, arm="champion", model_version=RUN, outcome=outcome) == 1
    # Each process exports its own series, labelled by its worker id.
    challenger = select(parsed, name, arm="challenger", model_version=RUN)
    assert [s.labels["WorkerId"] for s in challenger] == [recorded["worker_id"]]
    assert challenger[0].value == CHALLENGER_CALLS
    assert recorded["worker_id"] != recorded["driver_id"]


def test_latency_histogram_buckets_sum_and_count(recorded: dict[str, Any]) -> None:
    parsed = recorded["parsed"]
    base = gm.REQUEST_LATENCY.exported
    observed = [*CHAMPION_LATENCIES, 0.5, 12.0]  # 'unavailable' is not observed
    labels = {"arm": "champion", "model_version": RUN}
    assert _one(parsed, f"{base}_count", **labels) == len(observed)
    _assert_sum_within_buckets(_one(parsed, f"{base}_sum", **labels), observed,
                               gm.LATENCY_BUCKETS)
    buckets = {s.labels["le"]: s.value for s in select(parsed, f"{base}_bucket", **labels)}
    assert set(buckets) == {*(repr(b) for b in gm.LATENCY_BUCKETS), "+Inf"}
    for bound in gm.LATENCY_BUCKETS:
        assert buckets[repr(bound)] == sum(1 for v in observed if v <= bound), bound
    assert buckets["+Inf"] == len(observed)


def test_llm_timing(recorded: dict[str, Any]) -> None:
    parsed = recorded["parsed"]
    labels = {"arm": "champion", "model_version": RUN}
    assert _one(parsed, f"{gm.TTFT.exported}_count", **labels) == 2
    _assert_sum_within_buckets(_one(parsed, f"{gm.TTFT.exported}_sum", **labels),
                               [0.08, 0.3], gm.TTFT_BUCKETS)
    assert _one(parsed, f"{gm.TPOT.exported}_count", **labels) == 2
    _assert_sum_within_buckets(_one(parsed, f"{gm.TPOT.exported}_sum", **labels),
                               [0.012, 0.02], gm.TPOT_BUCKETS)
    assert _one(parsed, gm.OUTPUT_TOKENS.exported, **labels) == 100


def test_failovers_verdicts_and_rollbacks(recorded: dict[str, Any]) -> None:
    parsed = recorded["parsed"]
    assert _one(parsed, "ray_gateway_failovers_total", model_version=RUN) == 2
    assert _one(parsed, "ray_gateway_verdicts_total", action="continue", reason=RUN) == 2
    assert _one(parsed, "ray_gateway_verdicts_total", action="rollback",
                reason=f"lat_{RUN}") == 1
    assert _one(parsed, "ray_gateway_rollbacks_total", reason=RUN, guard=f"lat_{RUN}") == 1
    assert _one(parsed, "ray_gateway_rollbacks_total", reason=RUN, guard="other") == 1


def test_table_mode_and_phase_gauges(recorded: dict[str, Any]) -> None:
    parsed, me = recorded["parsed"], recorded["driver_id"]
    assert _one(parsed, "ray_gateway_challenger_weight", WorkerId=me) == 25.0
    # Versions are epoch milliseconds: a float64 carries them exactly.
    assert _one(parsed, "ray_gateway_routing_table_version", WorkerId=me) == 1_764_000_000_123
    modes = {s.labels["mode"]: s.value
             for s in select(parsed, "ray_gateway_routing_mode", WorkerId=me)}
    assert modes == {"split": 1.0, "shadow": 0.0, "pinned": 0.0}
    phases = {s.labels["phase"]: s.value
              for s in select(parsed, "ray_gateway_rollout_phase", WorkerId=me)}
    assert phases == {p: float(p == "canary") for p in gm.PHASES}


def test_guard_gauges(recorded: dict[str, Any]) -> None:
    parsed = recorded["parsed"]
    lat, err = f"lat_{RUN}", f"err_{RUN}"
    assert _one(parsed, "ray_gateway_guard_value", guard=lat) == 0.91
    assert _one(parsed, "ray_gateway_guard_threshold", guard=lat) == 0.5
    assert _one(parsed, "ray_gateway_guard_state", guard=lat) == 2.0
    assert _one(parsed, "ray_gateway_guard_state", guard=err) == 1.0
    assert _one(parsed, "ray_gateway_guard_threshold", guard=err) == 0.01
    assert select(parsed, "ray_gateway_guard_value", guard=err) == []  # no value yet


def test_cost_and_memory_gauges(recorded: dict[str, Any]) -> None:
    parsed = recorded["parsed"]
    assert _one(parsed, "ray_gateway_cost_per_inference", arm="champion",
                model_version=RUN) == 0.0021
    assert _one(parsed, "ray_gateway_cost_per_inference", arm="challenger",
                model_version=RUN) == 0.0035
    used = {s.labels["device"]: s.value for s in select(
        parsed, "ray_gateway_memory_used_bytes", arm="champion", model_version=RUN)}
    assert used == {f"cuda:{RUN}": 2.5e9, "cpu": 1.25e8}
    assert _one(parsed, "ray_gateway_memory_total_bytes", device=f"cuda:{RUN}") == 80e9


def test_changes_replace_gauges_and_release_clears_them(
        recorded: dict[str, Any], ray_metrics_url: str) -> None:
    me, lat = recorded["driver_id"], f"lat_{RUN}"
    m = gm.get_metrics()
    m.phase("rolled_back")
    m.table(1_764_000_000_124, 0.0, "pinned")
    m.guard(lat, "pass", None, None)
    m.release("champion", RUN)

    def phases(parsed: Parsed) -> dict[str, float]:
        return {s.labels["phase"]: s.value
                for s in select(parsed, "ray_gateway_rollout_phase", WorkerId=me)}

    def ready(parsed: Parsed) -> bool:
        return (phases(parsed).get("rolled_back") == 1.0
                and not select(parsed, "ray_gateway_guard_value", guard=lat)
                and not select(parsed, "ray_gateway_memory_used_bytes", model_version=RUN)
                and not select(parsed, "ray_gateway_cost_per_inference", arm="champion",
                               model_version=RUN))

    parsed = gm.scrape_until(ray_metrics_url, ready, timeout_s=SCRAPE_TIMEOUT_S)
    assert phases(parsed) == {p: float(p == "rolled_back") for p in gm.PHASES}
    assert _one(parsed, "ray_gateway_challenger_weight", WorkerId=me) == 0.0
    assert _one(parsed, "ray_gateway_routing_mode", WorkerId=me, mode="pinned") == 1.0
    assert _one(parsed, "ray_gateway_guard_state", guard=lat) == 0.0
    assert select(parsed, "ray_gateway_guard_threshold", guard=lat) == []
    # The other arm's series and the device total stay.
    assert _one(parsed, "ray_gateway_cost_per_inference", arm="challenger",
                model_version=RUN) == 0.0035
    assert _one(parsed, "ray_gateway_memory_total_bytes", device=f"cuda:{RUN}") == 80e9


@pytest.mark.parametrize(("method", "args", "field", "bad"), [
    ("phase", ("canary_step_2",), "phase", "canary_step_2"),
    ("table", (1, 10.0, "weighted"), "mode", "weighted"),
    ("guard", ("latency", "passed", 1.0, 2.0), "state", "passed"),
])
def test_unknown_vocabulary_is_a_clear_error(method: str, args: tuple[Any, ...], field: str,
                                             bad: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: must be one of .*, got '{bad}'$"):
        getattr(gm.get_metrics(), method)(*args)


def test_exported_names_follow_ray_conventions() -> None:
    assert gm.EXPORTED["ray_gateway_requests_total"] is gm.REQUESTS
    assert gm.REQUEST_LATENCY.series == (
        "ray_gateway_request_latency_seconds_bucket", "ray_gateway_request_latency_seconds_sum",
        "ray_gateway_request_latency_seconds_count")
    assert gm.CHALLENGER_WEIGHT.exported == "ray_gateway_challenger_weight"
    assert len(gm.EXPORTED) == len(gm.SPECS)  # no metric defined twice


def test_request_points_are_buffered_until_flushed_or_the_buffer_is_full() -> None:
    m = gm.GatewayMetrics()  # versions 7 and 8: series no other test reads
    m.request("champion", "7", "ok", 0.01)
    m.request("challenger", "8", "unavailable", 0.0)
    assert m.pending_requests == 2
    assert m.flush_requests() == 2 and m.pending_requests == 0
    for _ in range(gm.MAX_PENDING - 1):
        m.request("champion", "7", "ok", 0.01)
    assert m.pending_requests == gm.MAX_PENDING - 1
    m.request("champion", "7", "ok", 0.01)  # the buffer is full: recorded at once
    assert m.pending_requests == 0
