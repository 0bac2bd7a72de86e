"""The gateway's metrics: each one defined once here, recorded with `ray.util.metrics`.

Ray exports them on every node's metrics export port (`ray start --metrics-export-port=8080`,
or `ray.init(_metrics_export_port=8080)`), with the prefix `ray_`, and adds the labels
`Component`, `NodeAddress`, `SessionName`, `Version`, `WorkerId` (one series per process:
aggregate with `sum by (...)` or `max by (...)`). A counter defined as `gateway_requests`
is exported as `ray_gateway_requests_total`; a histogram as `<name>_bucket{le}`, `_sum`,
`_count`. `EXPORTED` holds the names as PromQL sees them (verified on Ray 2.60 by
`tests/unit/gateway/test_metrics.py`), and the Grafana dashboard may use only those.

Recording is cheap (a few microseconds, most of it Ray's) and never raises for a missing
Ray: before `ray.init` Ray drops the points silently. Gauges set to NaN vanish from the
export, which is how "no value" and released models are cleared.

`prometheus_client` is used only to parse the exposition format (tests, checks); no metric
is defined with it.
"""

from __future__ import annotations

import enum
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from core.logs import get_logger

log = get_logger(__name__)

RAY_PREFIX = "ray_"

# Request latency from 1 ms to 30 s, denser where SLOs usually sit (10 ms .. 1 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.35,
                   0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0,
                10.0, 20.0, 30.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
                0.25, 0.5, 1.0)

OUTCOMES = ("ok", "client_error", "server_error", "timeout", "unavailable")
MODES = ("split", "shadow", "pinned")
PHASES = ("idle", "loading", "shadow", "canary", "promoted", "rolled_back", "paused", "failed")
GUARD_STATES: Mapping[str, float] = {"pass": 0.0, "inconclusive": 1.0, "fail": 2.0}

# Free-form tag values (reasons, guard names, actions) must be short codes, so that a
# message with an id in it cannot create a series per request.
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_OTHER = "other"
# Tag dicts are cached per tag tuple; past this many distinct tuples they are built per call.
_MAX_CACHED_TAGS = 4096
# Buffered per-request points recorded at once past this many (see GatewayMetrics.request).
MAX_PENDING = 4096


class Kind(enum.StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: `name` as given to `ray.util.metrics`; `exported` as PromQL sees it."""

    name: str
    kind: Kind
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()

    @property
    def exported(self) -> str:
        suffix = "_total" if self.kind is Kind.COUNTER else ""
        return f"{RAY_PREFIX}{self.name}{suffix}"

    @property
    def series(self) -> tuple[str, ...]:
        """The sample names that appear on the /metrics endpoint."""
        if self.kind is Kind.HISTOGRAM:
            return tuple(f"{self.exported}{s}" for s in ("_bucket", "_sum", "_count"))
        return (self.exported,)


_ARM_VERSION = ("arm", "model_version")

REQUESTS = MetricSpec(
    "gateway_requests", Kind.COUNTER,
    "Model calls made by the ingress, by arm, model version and outcome "
    "(ok|client_error|server_error|timeout|unavailable); a failover counts twice.",
    ("arm", "model_version", "outcome"))
REQUEST_LATENCY = MetricSpec(
    "gateway_request_latency_seconds", Kind.HISTOGRAM,
    "Latency of a model call as the ingress saw it, every outcome but 'unavailable'.",
    _ARM_VERSION, LATENCY_BUCKETS)
TTFT = MetricSpec(
    "gateway_ttft_seconds", Kind.HISTOGRAM,
    "LLM time to first token.", _ARM_VERSION, TTFT_BUCKETS)
TPOT = MetricSpec(
    "gateway_time_per_output_token_seconds", Kind.HISTOGRAM,
    "LLM time per output token after the first.", _ARM_VERSION, TPOT_BUCKETS)
OUTPUT_TOKENS = MetricSpec(
    "gateway_output_tokens", Kind.COUNTER, "LLM output tokens generated.", _ARM_VERSION)
FAILOVERS = MetricSpec(
    "gateway_failovers", Kind.COUNTER,
    "Challenger calls that failed and were retried on the champion, by challenger version.",
    ("model_version",))
CHALLENGER_WEIGHT = MetricSpec(
    "gateway_challenger_weight", Kind.GAUGE,
    "Percent of requests the current routing table sends to the challenger (0-100).")
ROUTING_TABLE_VERSION = MetricSpec(
    "gateway_routing_table_version", Kind.GAUGE,
    "Version of the routing table in force (wall-clock milliseconds when published).")
ROUTING_MODE = MetricSpec(
    "gateway_routing_mode", Kind.GAUGE,
    "1 for the routing table's mode (split|shadow|pinned), 0 for the others.", ("mode",))
ROLLOUT_PHASE = MetricSpec(
    "gateway_rollout_phase", Kind.GAUGE,
    "1 for the rollout's current phase, 0 for the others.", ("phase",))
GUARD_VALUE = MetricSpec(
    "gateway_guard_value", Kind.GAUGE,
    "A guard's current measured value (absent while it has none).", ("guard",))
GUARD_THRESHOLD = MetricSpec(
    "gateway_guard_threshold", Kind.GAUGE,
    "The threshold a guard's value is judged against (absent when it has none).", ("guard",))
GUARD_STATE = MetricSpec(
    "gateway_guard_state", Kind.GAUGE,
    "A guard's latest result: 0 pass, 1 inconclusive, 2 fail.", ("guard",))
VERDICTS = MetricSpec(
    "gateway_verdicts", Kind.COUNTER,
    "Verdicts of the supervisor, by action and short reason code.", ("action", "reason"))
ROLLBACKS = MetricSpec(
    "gateway_rollbacks", Kind.COUNTER,
    "Rollbacks, by reason code and the guard that triggered them.", ("reason", "guard"))
COST_PER_INFERENCE = MetricSpec(
    "gateway_cost_per_inference", Kind.GAUGE,
    "Estimated cost of one inference, by arm and model version.", _ARM_VERSION)
MEMORY_USED = MetricSpec(
    "gateway_memory_used_bytes", Kind.GAUGE,
    "Memory held by an arm's replicas on a device (a GPU, or 'cpu' for resident memory).",
    ("arm", "model_version", "device"))
MEMORY_TOTAL = MetricSpec(
    "gateway_memory_total_bytes", Kind.GAUGE, "Total memory of a device.", ("device",))

SPECS: tuple[MetricSpec, ...] = (
    REQUESTS, REQUEST_LATENCY, TTFT, TPOT, OUTPUT_TOKENS, FAILOVERS, CHALLENGER_WEIGHT,
    ROUTING_TABLE_VERSION, ROUTING_MODE, ROLLOUT_PHASE, GUARD_VALUE, GUARD_THRESHOLD,
    GUARD_STATE, VERDICTS, ROLLBACKS, COST_PER_INFERENCE, MEMORY_USED, MEMORY_TOTAL,
)
# Exported name (as written in PromQL; histograms by their base name) -> spec.
EXPORTED: Mapping[str, MetricSpec] = {spec.exported: spec for spec in SPECS}
# Every sample name a scrape can show.
SERIES: frozenset[str] = frozenset(name for spec in SPECS for name in spec.series)

Tags = dict[str, str]


class _TagCache:
    """Tag dicts built once per tag combination, so the hot path builds no dict of its own."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = keys
        self._cache: dict[tuple[Any, ...], Tags] = {}

    def get(self, *values: Any) -> Tags:
        tags = self._cache.get(values)
        if tags is None:
            tags = dict(zip(self._keys, (str(v) for v in values), strict=True))
            if len(self._cache) < _MAX_CACHED_TAGS:
                self._cache[values] = tags
        return tags


_warned_codes: list[str] = []


def _code(value: Any) -> str:
    """A short tag code; anything else becomes 'other' (and is logged once per process)."""
    text = str(value)
    if _CODE.match(text):
        return text
    if not _warned_codes:
        log.warning("metric tag %r is not a short code; recorded as %r", text[:80], _OTHER)
        _warned_codes.append(text)
    return _OTHER


def _one_of(value: Any, allowed: tuple[str, ...] | Mapping[str, float], what: str) -> str:
    text = str(value)
    if text not in allowed:
        raise ValueError(f"{what}: must be one of {', '.join(allowed)}, got {text!r}")
    return text


def _or_nan(value: float | None) -> float:
    # Ray drops a gauge series whose value is NaN from the export: "no value now".
    return math.nan if value is None else float(value)


class GatewayMetrics:
    """Records the gateway's metrics in this process. Get the instance with `get_metrics()`.

    Every method is safe to call before Ray is initialised (the points are dropped) and
    never blocks. Free-text arguments documented as codes (guard, reason, action, device)
    must be short codes matching [A-Za-z0-9_.:-]{1,64}; others are recorded as "other".
    Arguments with a fixed vocabulary (outcome aside) raise ValueError on an unknown value.
    """

    def __init__(self) -> None:
        from ray.util import metrics as ray_metrics

        def make(spec: MetricSpec) -> Any:
            if spec.kind is Kind.COUNTER:
                return ray_metrics.Counter(spec.name, spec.description, spec.tag_keys)
            if spec.kind is Kind.GAUGE:
                return ray_metrics.Gauge(spec.name, spec.description, spec.tag_keys)
            return ray_metrics.Histogram(spec.name, spec.description, list(spec.boundaries),
                                         spec.tag_keys)

        m = {spec.name: make(spec) for spec in SPECS}
        self._requests, self._latency = m[REQUESTS.name], m[REQUEST_LATENCY.name]
        self._ttft, self._tpot, self._tokens = m[TTFT.name], m[TPOT.name], m[OUTPUT_TOKENS.name]
        self._failovers = m[FAILOVERS.name]
        self._weight, self._version = m[CHALLENGER_WEIGHT.name], m[ROUTING_TABLE_VERSION.name]
        self._mode, self._phase = m[ROUTING_MODE.name], m[ROLLOUT_PHASE.name]
        self._guard_value, self._guard_threshold = m[GUARD_VALUE.name], m[GUARD_THRESHOLD.name]
        self._guard_state = m[GUARD_STATE.name]
        self._verdicts, self._rollbacks = m[VERDICTS.name], m[ROLLBACKS.name]
        self._cost = m[COST_PER_INFERENCE.name]
        self._mem_used, self._mem_total = m[MEMORY_USED.name], m[MEMORY_TOTAL.name]

        self._request_tags = _TagCache(REQUESTS.tag_keys)
        self._arm_tags = _TagCache(_ARM_VERSION)
        self._version_tags = _TagCache(FAILOVERS.tag_keys)
        self._mode_tags = {mode: {"mode": mode} for mode in MODES}
        self._phase_tags = {phase: {"phase": phase} for phase in PHASES}
        self._no_tags: Tags = {}
        self._pending: list[tuple[str, str, str, float]] = []  # see request()
        # (arm, model_version) -> devices recorded, so `release` can clear every series.
        self._devices: dict[tuple[str, str], set[str]] = {}

    # --- ingress (per request) ------------------------------------------------------------

    def request(self, arm: str, model_version: str, outcome: str, latency_s: float) -> None:
        """One model call: counts it and, unless no call was made ('unavailable'), observes
        its latency. Call it once per arm called (a failover is two calls).

        Buffered: recorded by `flush_requests()` (the ingress calls it with every window
        flush), or at once when `MAX_PENDING` calls wait; so the request path only appends
        to a list, and Ray's recording runs in one warm loop, one counter increment per
        series."""
        self._pending.append((arm, model_version, outcome, latency_s))
        if len(self._pending) >= MAX_PENDING:
            self.flush_requests()

    @property
    def pending_requests(self) -> int:
        return len(self._pending)

    def flush_requests(self) -> int:
        """Record the buffered calls; returns how many."""
        pending, self._pending = self._pending, []
        counts: Counter[tuple[str, str, str]] = Counter()
        for arm, version, outcome, latency in pending:
            counts[(arm, version, outcome)] += 1
            if outcome != "unavailable":
                self._latency.observe(latency, self._arm_tags.get(arm, version))
        for (arm, version, outcome), n in counts.items():
            self._requests.inc(n, self._request_tags.get(arm, version, outcome))
        return len(pending)

    def llm_timing(self, arm: str, model_version: str, ttft_s: float | None,
                   tpot_s: float | None, output_tokens: int) -> None:
        """An LLM call's timing; None means not measured (e.g. a non-streaming call)."""
        tags = self._arm_tags.get(arm, model_version)
        if ttft_s is not None:
            self._ttft.observe(ttft_s, tags)
        if tpot_s is not None:
            self._tpot.observe(tpot_s, tags)
        if output_tokens > 0:  # Ray counters reject increments <= 0
            self._tokens.inc(output_tokens, tags)

    def failover(self, model_version: str) -> None:
        """A challenger call (of `model_version`) failed and was retried on the champion."""
        self._failovers.inc(1, self._version_tags.get(model_version))

    # --- control plane (per table change or guard evaluation) ------------------------------

    def table(self, version: int, challenger_weight: float, mode: str) -> None:
        """The routing table in force: weight in percent, mode in MODES."""
        current = _one_of(mode, MODES, "mode")
        self._weight.set(float(challenger_weight), self._no_tags)
        self._version.set(float(version), self._no_tags)
        for name, tags in self._mode_tags.items():
            self._mode.set(1.0 if name == current else 0.0, tags)

    def phase(self, phase: str) -> None:
        """The rollout's current phase, one of PHASES."""
        current = _one_of(phase, PHASES, "phase")
        for name, tags in self._phase_tags.items():
            self._phase.set(1.0 if name == current else 0.0, tags)

    def guard(self, guard: str, state: str, value: float | None,
              threshold: float | None) -> None:
        """A guard's latest result; state in GUARD_STATES; None clears value/threshold."""
        code = GUARD_STATES[_one_of(state, GUARD_STATES, "state")]
        tags = {"guard": _code(guard)}
        self._guard_state.set(code, tags)
        self._guard_value.set(_or_nan(value), tags)
        self._guard_threshold.set(_or_nan(threshold), tags)

    def verdict(self, action: str, reason: str) -> None:
        """One verdict; `reason` is a short code (a guard name, 'ok', ...), not a message."""
        self._verdicts.inc(1, {"action": _code(action), "reason": _code(reason)})

    def rollback(self, reason: str, guard: str) -> None:
        """One rollback; `reason` is a short code (e.g. 'guard', 'manual', 'unhealthy')."""
        self._rollbacks.inc(1, {"reason": _code(reason), "guard": _code(guard)})

    # --- resources and cost --------------------------------------------------------------

    def cost(self, arm: str, model_version: str, cost_per_inference: float) -> None:
        self._cost.set(float(cost_per_inference), self._arm_tags.get(arm, model_version))

    def memory(self, arm: str, model_version: str, device: str, used_bytes: float,
               total_bytes: float | None) -> None:
        """Memory an arm's replicas hold on `device` ('cuda:0', ..., or 'cpu'), and the
        device's total when known (None leaves the total as it was)."""
        dev = _code(device)
        self._devices.setdefault((str(arm), str(model_version)), set()).add(dev)
        self._mem_used.set(float(used_bytes),
                           {"arm": str(arm), "model_version": str(model_version), "device": dev})
        if total_bytes is not None:
            self._mem_total.set(float(total_bytes), {"device": dev})

    def release(self, arm: str, model_version: str) -> None:
        """Clear the per-model gauges of a model that left `arm` (rolled back, released,
        or promoted to the other arm), so no stale line stays on the dashboard."""
        key = (str(arm), str(model_version))
        self._cost.set(math.nan, self._arm_tags.get(arm, model_version))
        for dev in self._devices.pop(key, set()):
            self._mem_used.set(math.nan, {"arm": key[0], "model_version": key[1],
                                          "device": dev})


_instance: GatewayMetrics | None = None
_instance_lock = threading.Lock()


def get_metrics() -> GatewayMetrics:
    """This process's GatewayMetrics, created on first use (Ray metrics are per process)."""
    global _instance
    if _instance is None:
        with _instance_lock:
            if _instance is None:
                _instance = GatewayMetrics()
    return _instance


# --- reading the exposition (tests and checks) -------------------------------------------

Parsed = dict[str, list[Sample]]


def metrics_url(port: int, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}/metrics"


def scrape(url: str, timeout: float = 5.0) -> str:
    """The text of a Prometheus endpoint; raises httpx.HTTPError on failure."""
    import httpx

    response = httpx.get(url, timeout=timeout)
    response.raise_for_status()
    return response.text


def parse_exposition(text: str) -> Parsed:
    """Samples by sample name, exactly as PromQL names them (`ray_gateway_requests_total`,
    `..._bucket`, `..._sum`, `..._count`)."""
    parsed: Parsed = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            parsed.setdefault(sample.name, []).append(sample)
    return parsed


def select(parsed: Parsed, name: str, **labels: str) -> list[Sample]:
    """Samples of `name` whose labels include all of `labels`."""
    return [s for s in parsed.get(name, [])
            if all(s.labels.get(k) == v for k, v in labels.items())]


def total(parsed: Parsed, name: str, **labels: str) -> float:
    """Sum of the matching samples, i.e. across processes (Ray labels each by WorkerId)."""
    return float(sum(s.value for s in select(parsed, name, **labels)))


def scrape_until(url: str, ready: Callable[[Parsed], bool], timeout_s: float = 30.0,
                 interval_s: float = 0.5) -> Parsed:
    """Scrape until `ready(parsed)` holds (Ray exports on an interval); TimeoutError names
    the gateway series last seen."""
    deadline = time.monotonic() + timeout_s
    parsed: Parsed = {}
    while True:
        try:
            parsed = parse_exposition(scrape(url))
        except Exception as exc:  # the endpoint may not be up yet
            log.debug("scrape %s failed: %s", url, exc)
        else:
            if ready(parsed):
                return parsed
        if time.monotonic() >= deadline:
            seen = sorted(n for n in parsed if n.startswith(f"{RAY_PREFIX}gateway_"))
            raise TimeoutError(f"{url}: not ready after {timeout_s:g}s; gateway series seen: "
                               f"{seen}")
        time.sleep(interval_s)
