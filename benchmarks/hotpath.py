"""The gateway's own per-request code, timed in process (no Ray hop, no HTTP).

What the ingress and a model slot run per request on top of what a hand-written bare
composition runs (parse JSON, call the model, write JSON), with the same tiny MLflow model.
Measured in the benchmark's driver, where Ray is initialised, so metric records are real.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.baselines import PlainModel, bare_json_response
from benchmarks.common import PREDICT_BODY

LOOPS = 2000
REPEATS = 5


def per_call_us(fn: Callable[[], object], loops: int = LOOPS, repeats: int = REPEATS) -> float:
    """Median over `repeats` of the mean microseconds per call of `fn`."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - start) * 1e6 / loops)
    return statistics.median(times)


def _ingress_steps() -> dict[str, Callable[[], object]]:
    """The ingress's gateway-specific steps of one /v1/predict (see gateway/serving/ingress.py)."""
    from gateway.metrics import get_metrics
    from gateway.serving.http import json_response, parse_json_object
    from gateway.wire.routing import Mode, RoutingTable, choose_arm
    from guards.window import ArmWindow, Observation, Outcome
    from model_registry.refs import ModelRef

    body = json.dumps(PREDICT_BODY).encode()
    ref = ModelRef(name="m", version="1", source="bench")
    table = RoutingTable(version=1, champion_slot="a", challenger_slot="b",
                         challenger_weight=10.0, mode=Mode.SPLIT,
                         slot_models={"a": ref, "b": ref})
    window, metrics = ArmWindow(), get_metrics()
    reply = {"outputs": [0.5], "model": {"name": "m", "version": "1"}}

    def observe() -> None:
        window.record(Observation(0.004, Outcome.OK, 0.5, 0.3, 0, 0, 0.001))
        metrics.request("champion", "1", "ok", 0.004)

    return {
        "parse body (parse_json_object)": lambda: parse_json_object(body),
        "choose arm (choose_arm)": lambda: choose_arm(table, None),
        "observe (window + metrics)": observe,
        "answer (json_response)": lambda: json_response(
            {"outputs": reply["outputs"], "model": reply["model"]}, 200,
            {"x-gateway-arm": "champion", "x-gateway-model-version": "1"}),
    }


def _bare_ingress_steps() -> dict[str, Callable[[], object]]:
    body = json.dumps(PREDICT_BODY).encode()
    return {"parse body (json.loads)": lambda: json.loads(body),
            "answer (Response)": lambda: bare_json_response({"outputs": [0.5]})}


def hot_path(registry: Any, ref: Any) -> dict[str, Any]:
    """Microseconds per request of the gateway's own code vs the bare composition's."""
    from gateway.serving.backends.pyfunc import PyfuncBackend

    gateway = {k: per_call_us(f) for k, f in _ingress_steps().items()}
    flush = per_call_us(_flush_step())
    bare = {k: per_call_us(f) for k, f in _bare_ingress_steps().items()}
    backend = PyfuncBackend()
    backend.load(ref)
    plain = PlainModel(registry.tracking_uri, ref.uri)
    inputs = PREDICT_BODY["inputs"]
    slot = per_call_us(lambda: backend.predict(inputs))
    model = per_call_us(lambda: plain.predict(inputs))
    ingress_extra = sum(gateway.values()) - sum(bare.values())
    return {"ingress_gateway_us": gateway, "ingress_bare_us": bare,
            "slot_predict_us": slot, "plain_model_predict_us": model,
            "extra_us_per_request": ingress_extra + slot - model,
            "flush_us": flush}


def _flush_step() -> Callable[[], object]:
    """One flush of the deltas of 50 requests (a replica at 200 req/s flushes every 0.25 s):
    the records, the delta, its serialisation."""
    from guards.window import ArmWindow, Observation, Outcome

    window = ArmWindow()

    def flush() -> None:
        for _ in range(50):
            window.record(Observation(0.004, Outcome.OK, 0.5, 0.3, 0, 0, 0.001))
        window.take_delta().to_bytes()

    return flush
