"""Per-node aggregation (`control.aggregation: node`) end to end: the ingress replica flushes
and long-polls through its node's aggregator, which sends the supervisor no more calls than
it receives; a raising challenger is still rolled back on its first failures with zero
client errors; the app's teardown removes the aggregator. (One replica: two ingress replicas
on one node under Serve's direct ingress gave clients 404s in some runs here, cause not found
yet; several replicas behind aggregators are the cluster test's, one per node.)"""

from __future__ import annotations

import pytest

from gateway.control.aggregator import aggregator_name
from gateway.demo.models import Faults
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import deployed, describe_replicas, wait_for
from tests.e2e.gateway.rollout_helpers import (
    HOLD_50,
    Sink,
    Traffic,
    finished,
    judged_config,
    register,
    start_rollout,
)

pytestmark = pytest.mark.slow


def test_replicas_flush_through_their_node_aggregator_and_a_rollback_still_acts_at_once(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef],
        sink: Sink) -> None:
    import ray

    bad = register(registry, Faults(error_rate=1.0), what="raises, behind the aggregator")
    cfg = judged_config("gw-aggregated", sink, HOLD_50, control={"aggregation": "node"},
                        ingress={"num_replicas": 1})
    node = ray.get_runtime_context().get_node_id()
    name = aggregator_name(cfg.control.supervisor_name, node)
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=40) as traffic:
        views = describe_replicas(app)
        assert len(views) == 1
        assert {v["flushes_to"] for v in views} == {"aggregator"}, views
        aggregator = ray.get_actor(name, namespace=cfg.control.namespace)
        # The replicas' flushes arrive there; at most one call per interval leaves (fewer
        # than arrive whenever both replicas flushed in one interval: the merging itself is
        # tests/unit/gateway/control/test_aggregator.py's).
        counts = wait_for(lambda: (c := ray.get(aggregator.counts.remote(), timeout=10))
                          ["received"] >= 40 and c, 60, "flushes through the aggregator")
        assert 0 < counts["sent"] <= counts["received"], counts

        start_rollout(app, bad)
        status = finished(app, bad.version)
        assert status["phase"] == "rolled_back", status
        errors = next(r for r in status["verdict"]["results"] if r["guard"] == "error_rate")
        assert 1 <= errors["n_challenger"] <= 40, errors  # acted on the first failures
        # The weight-0 table reached the replica through the aggregator's long poll.
        wait_for(lambda: all(v["challenger_weight"] == 0.0 and v["table_version"]
                             >= status["table"]["version"] for v in describe_replicas(app)),
                 30, "the rollback on the replica", detail=lambda: describe_replicas(app))
    assert traffic.statuses() == {200: len(traffic.answers)}, traffic.statuses()
    with pytest.raises(ValueError):
        ray.get_actor(name, namespace=cfg.control.namespace)  # torn down with the app
