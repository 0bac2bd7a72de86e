"""Symmetric evidence in the ingress, without Ray: the same deadline for both arms (champion
calls censored at the challenger's deadline), failover retries kept out of the comparison,
sticky-key buckets, and per-arm hallucination sampling rates.

The Ingress is built without its Serve constructor; fake slot handles stand in for the
DeploymentHandles (an awaitable response with `cancel`, and a stream for `stream=True`).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from ray.exceptions import ActorDiedError
from starlette.requests import Request

from gateway.config import TimeoutsConfig, parse_config
from gateway.serving.calls import ArmCall, Route, comparison_deadline
from gateway.serving.ingress import Ingress
from gateway.serving.llm.generation import GenerationRequest
from gateway.serving.llm.openai_parse import parse_completion
from gateway.serving.lost import LostSlots
from gateway.serving.openai_routes import OpenAIRoutes
from gateway.wire.replies import (
    CallOutcome,
    ServedModel,
    SlotAnswer,
    SlotError,
    StreamChunk,
    StreamChunks,
    StreamItem,
    StreamStart,
)
from gateway.wire.routing import Arm, Mode, RoutingTable, sticky_bucket
from guards.window import Observation, Outcome, key_bucket
from model_registry.refs import ModelRef

CHAMPION_V, CHALLENGER_V = "1", "2"
DEADLINE = 0.05  # timeouts.challenger_s in these tests
SLOW = 0.25  # a slow call: well past the deadline, well within champion_s


def table(mode: Mode = Mode.SPLIT, weight: float = 50.0) -> RoutingTable:
    return RoutingTable(version=1, champion_slot="a", challenger_slot="b",
                        challenger_weight=weight, mode=mode,
                        slot_models={"a": ModelRef("m", CHAMPION_V, "src"),
                                     "b": ModelRef("m", CHALLENGER_V, "src")})


class Response:
    """What `handle.remote(...)` returns: awaitable once, cancellable."""

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self.cancelled = False

    def __await__(self) -> Any:
        return self._coro.__await__()

    def cancel(self) -> None:
        self.cancelled = True


# A stream's last chunk (a `StreamChunk` after the first, unless a test says otherwise).
LAST: dict[str, Any] = {"text": " world", "finish_reason": "stop", "tokens": 1, "prompt_tokens": 3}


class Stream:
    """What `handle.options(stream=True).remote(...)` returns: an async iterator."""

    def __init__(self, slot: Slot) -> None:
        self._slot = slot
        self._items: list[StreamItem] = [
            StreamStart(ServedModel("m", slot.version),
                        {"text": "hello", "finish_reason": None, "tokens": 1}),
            *(slot.later if slot.later is not None else [StreamChunk(LAST)])]
        if slot.error is not None:  # a refusal is the first and only item
            self._items = [slot.error]
        self._started = False
        self.cancelled = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> StreamItem:
        if not self._started:  # before the first item: the slot's delay, or its failure
            self._started = True
            await asyncio.sleep(self._slot.delay)
            if self._slot.fail:
                raise RuntimeError("injected failure")
        if not self._items:
            raise StopAsyncIteration
        return self._items.pop(0)

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Slot:
    version: str
    delay: float = 0.0
    fail: bool = False
    batch_size: int = 1
    error: Any = None  # what the slot replies instead of an answer (a SlotError, or junk)
    calls: int = 0
    lose: int = 0  # the next `lose` calls fail as if the replica died under them
    later: list[StreamItem] | None = None  # a stream's items after the first

    def remote(self, inputs: Any) -> Response | Stream:
        self.calls += 1
        if isinstance(inputs, GenerationRequest) and inputs.stream:
            return Stream(self)
        return Response(self._answer(inputs))

    async def _answer(self, inputs: Any) -> Any:
        await asyncio.sleep(self.delay)
        if self.lose:
            self.lose -= 1
            raise ActorDiedError()
        if self.fail:
            raise RuntimeError("injected failure")
        if self.error is not None:
            return self.error
        model = ServedModel("m", self.version)
        if isinstance(inputs, GenerationRequest):
            return SlotAnswer({"text": "an answer", "finish_reason": "stop",
                               "prompt_tokens": 3, "completion_tokens": 2}, model,
                              tokens_in=3, tokens_out=2)
        return SlotAnswer([[1.0]], model, output_summary=1.0, input_summary=0.5,
                          busy_s=self.delay, batch_size=self.batch_size)


class Supervisor:
    """Remembers the replica losses the ingress reports (`slot_lost`)."""

    def __init__(self) -> None:
        self.lost: list[tuple[str, str]] = []
        self.slot_lost = self

    def remote(self, slot: str, version: str, actor_id: str, message: str,
               creation_failed: bool) -> None:
        self.lost.append((slot, version))


@dataclass
class Metrics:
    requests: list[tuple[str, str, str, float]] = field(default_factory=list)
    failovers: list[str] = field(default_factory=list)

    def request(self, arm: str, version: str, outcome: str, latency_s: float) -> None:
        self.requests.append((arm, version, outcome, latency_s))

    def failover(self, version: str) -> None:
        self.failovers.append(version)

    def llm_timing(self, *args: Any) -> None:
        pass

    def flush_requests(self) -> None:
        pass


@dataclass
class Watcher:
    current: RoutingTable


@dataclass
class Urges:
    n: int = 0

    def urge(self) -> None:
        self.n += 1


@dataclass
class Pool:
    submitted: list[tuple[str, str, float | None]] = field(default_factory=list)

    def submit(self, model_version: str, context: str | None, response: str,
               question: str | None, *, request_id: str | None = None,
               rate: float | None = None) -> None:
        self.submitted.append((model_version, str(request_id), rate))


class Probe(Ingress):
    """The Ingress minus its Serve constructor; remembers every Observation recorded."""

    def __init__(self, routing: RoutingTable, champion: Slot, challenger: Slot,
                 **config: Any) -> None:
        self._cfg = parse_config({"timeouts": {"challenger_s": DEADLINE, "champion_s": 2.0,
                                               "shadow_s": 2 * DEADLINE},
                                  "admin": {"allow_unauthenticated": True}, **config})
        slots = {"a": champion, "b": challenger}
        self._handles = {"predict": slots, "generate": slots}
        self._watcher = Watcher(routing)  # type: ignore[assignment]
        self._metrics = Metrics()  # type: ignore[assignment]
        self._openai = OpenAIRoutes(self._cfg, self, slots, self._metrics)
        self._sticky_header = "x-gateway-key"
        self._background = set()
        self.counts = Counter()
        self._windows = {}
        self._flushed = {}
        self._served = []
        self._recent = deque(maxlen=1000)
        self._flush_timer = Urges()  # type: ignore[assignment]
        self._evaluator_pool = Pool()  # type: ignore[assignment]
        self._routes = {("POST", "/v1/predict"): self._predict,
                        ("POST", "/v1/completions"): self._openai.completions}
        self._lost = LostSlots()
        self._sup = Supervisor()  # type: ignore[assignment]
        self._relay = self._sup
        self.recorded: list[tuple[str, Observation]] = []

    def _record(self, arm: Arm, version: str, observation: Observation) -> None:
        self.recorded.append((version, observation))
        super()._record(arm, version, observation)

    def window(self, version: str) -> dict[str, int]:
        w = self._windows.get(version)
        return {} if w is None else {o.name.lower(): w.count(o) for o in Outcome if w.count(o)}

    @property
    def metrics(self) -> Metrics:
        return self._metrics  # type: ignore[return-value]

    @property
    def pool(self) -> Pool:
        return self._evaluator_pool  # type: ignore[return-value]


ROWS = [[0.5] * 8]


def serve(ing: Probe, routing: RoutingTable,
          arm: Arm) -> Coroutine[Any, Any, tuple[Arm, ArmCall]]:
    """One `/v1/predict` call through the ingress's `serve`, without a sticky key."""
    return ing.serve(Route(routing, arm, None), ROWS, "predict")


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro_fn())


def predict_request(headers: dict[str, str] | None = None, path: str = "/v1/predict",
                    body: dict[str, Any] | None = None) -> Request:
    raw = json.dumps(body if body is not None else {"inputs": [[0.5] * 8]}).encode()
    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(scope, receive)


# ---- the comparison deadline ---------------------------------------------------------------

@pytest.mark.parametrize(("mode", "weight", "expected"), [
    (Mode.SPLIT, 5.0, 2.0),  # the challenger's call timeout
    (Mode.SPLIT, 100.0, 2.0),
    (Mode.SHADOW, 0.0, 5.0),  # the shadow copy's timeout
    (Mode.SPLIT, 0.0, None),  # no challenger traffic: nothing to compare
    (Mode.PINNED, 50.0, None),
])
def test_comparison_deadline_is_the_challengers_timeout(mode: Mode, weight: float,
                                                        expected: float | None) -> None:
    assert comparison_deadline(table(mode, weight), TimeoutsConfig()) == expected


def test_no_deadline_when_the_champion_times_out_first() -> None:
    timeouts = TimeoutsConfig(challenger_s=3.0, champion_s=3.0)
    assert comparison_deadline(table(), timeouts) is None
    no_challenger = RoutingTable(1, "a", None, 0.0, Mode.SPLIT, {"a": None})
    assert comparison_deadline(no_challenger, TimeoutsConfig()) is None


# ---- (1) a slow champion is censored at the deadline ---------------------------------------

def test_slow_champion_is_censored_at_the_deadline_and_the_client_gets_its_answer() -> None:
    ing = Probe(table(), Slot(CHAMPION_V, delay=SLOW), Slot(CHALLENGER_V))

    async def scenario() -> tuple[dict[str, int], Arm, ArmCall]:
        task = asyncio.ensure_future(serve(ing, table(), Arm.CHAMPION))
        await asyncio.sleep(DEADLINE + 0.05)
        assert not task.done()
        at_deadline = ing.window(CHAMPION_V)  # recorded at the deadline, call still running
        arm, call = await task
        return at_deadline, arm, call

    at_deadline, arm, call = run(scenario)
    assert at_deadline == {"timeout": 1}
    assert ing.recorded == [(CHAMPION_V, Observation(DEADLINE, Outcome.TIMEOUT))]
    # the real answer reaches the client, and metrics and counts see the real outcome
    assert arm is Arm.CHAMPION and call.outcome == "ok" and call.reply is not None
    assert not call.compared
    assert ing.window(CHAMPION_V) == {"timeout": 1}  # nothing more went into the window
    assert ing.counts == {("champion", "ok"): 1}
    [(m_arm, m_version, m_outcome, m_latency)] = ing.metrics.requests
    assert (m_arm, m_version, m_outcome) == ("champion", CHAMPION_V, "ok")
    assert m_latency >= SLOW


def test_fast_champion_is_recorded_as_before_and_its_timer_never_fires() -> None:
    ing = Probe(table(), Slot(CHAMPION_V), Slot(CHALLENGER_V))

    async def scenario() -> ArmCall:
        _, call = await serve(ing, table(), Arm.CHAMPION)
        await asyncio.sleep(2 * DEADLINE)  # past the deadline: the cancelled timer stays quiet
        return call

    call = run(scenario)
    assert call.compared and call.outcome == "ok"
    assert ing.window(CHAMPION_V) == {"ok": 1}
    [(_, obs)] = ing.recorded
    assert obs.outcome is Outcome.OK and obs.output_value == 1.0 and obs.input_value == 0.5


def test_a_request_cancelled_before_the_deadline_leaves_no_censored_timeout() -> None:
    ing = Probe(table(), Slot(CHAMPION_V, delay=SLOW), Slot(CHALLENGER_V))

    async def scenario() -> None:
        task = asyncio.ensure_future(serve(ing, table(), Arm.CHAMPION))
        await asyncio.sleep(DEADLINE / 5)
        task.cancel()  # the client went away
        await asyncio.sleep(2 * DEADLINE)

    run(scenario)
    assert ing.recorded == []


def test_without_challenger_traffic_a_slow_champion_is_not_censored() -> None:
    pinned = table(Mode.PINNED)
    ing = Probe(pinned, Slot(CHAMPION_V, delay=2 * DEADLINE), Slot(CHALLENGER_V))
    _, call = run(lambda: serve(ing, pinned, Arm.CHAMPION))
    assert call.compared
    assert ing.window(CHAMPION_V) == {"ok": 1}


def test_slow_challenger_and_slow_champion_both_time_out_at_the_same_deadline() -> None:
    """A shared incident: the same request stream slows both arms; both windows see
    timeouts at the same deadline, so the comparison sees no difference between them."""
    ing = Probe(table(), Slot(CHAMPION_V, delay=SLOW), Slot(CHALLENGER_V, delay=SLOW))

    async def scenario() -> None:
        await asyncio.gather(*(serve(ing, table(), arm)
                               for arm in (Arm.CHAMPION, Arm.CHALLENGER) * 3))

    run(scenario)
    assert ing.window(CHALLENGER_V) == {"timeout": 3}
    assert ing.window(CHAMPION_V) == {"timeout": 3}  # the 3 failover retries left out
    assert ing.counts[("champion", "ok")] == 6


def test_shadow_mode_uses_the_shadow_timeout_for_both_arms() -> None:
    shadow = table(Mode.SHADOW, 0.0)
    # Slower than challenger_s but faster than shadow_s: the shadow copy answers in time.
    ing = Probe(shadow, Slot(CHAMPION_V, delay=3 * DEADLINE),
                Slot(CHALLENGER_V, delay=1.5 * DEADLINE))

    async def scenario() -> None:
        await asyncio.gather(ing._shadow(shadow, [[0.5] * 8], "predict"),
                             serve(ing, shadow, Arm.CHAMPION))

    run(scenario)
    assert ing.window(CHALLENGER_V) == {"ok": 1}
    assert ing.window(CHAMPION_V) == {"timeout": 1}
    assert (CHAMPION_V, Observation(2 * DEADLINE, Outcome.TIMEOUT)) in ing.recorded


# ---- (2) failover retries stay out of the comparison ---------------------------------------

@pytest.mark.parametrize(("challenger", "outcome"), [
    (Slot(CHALLENGER_V, fail=True), "server_error"),
    (Slot(CHALLENGER_V, delay=SLOW), "timeout"),
])
def test_failover_retry_is_counted_but_not_compared(challenger: Slot, outcome: str) -> None:
    ing = Probe(table(), Slot(CHAMPION_V, delay=2 * DEADLINE), challenger)
    arm, call = run(lambda: serve(ing, table(), Arm.CHALLENGER))
    assert arm is Arm.CHAMPION and call.outcome == "ok" and not call.compared
    assert ing.window(CHALLENGER_V) == {outcome: 1}  # the failure counts against it
    assert ing.window(CHAMPION_V) == {}  # the retry is no champion success (and no censor)
    assert ing.counts == {("challenger", outcome): 1, ("challenger", "failover"): 1,
                          ("champion", "ok"): 1}
    assert [r[:3] for r in ing.metrics.requests] == [("challenger", CHALLENGER_V, outcome),
                                                     ("champion", CHAMPION_V, "ok")]
    assert ing.metrics.failovers == [CHALLENGER_V]
    assert ing._flush_timer.n >= 1  # type: ignore[attr-defined]


# ---- (3) sticky keys ---------------------------------------------------------------------

def _key_for(arm: Arm, weight: float = 50.0) -> str:
    for i in range(1000):
        key = f"user-{i}"
        if (sticky_bucket(key) < weight * 100) == (arm is Arm.CHALLENGER):
            return key
    raise AssertionError("no key found")


@pytest.mark.parametrize("arm", [Arm.CHAMPION, Arm.CHALLENGER])
def test_a_sticky_key_is_recorded_by_its_analysis_bucket(arm: Arm) -> None:
    ing = Probe(table(), Slot(CHAMPION_V), Slot(CHALLENGER_V))
    key = _key_for(arm)
    resp = run(lambda: ing(predict_request({"x-gateway-key": key})))
    assert resp.status_code == 200
    assert resp.headers["x-gateway-arm"] == arm.value
    [(_, obs)] = ing.recorded
    assert obs.key_bucket == key_bucket(key)


def test_without_a_sticky_key_the_bucket_is_none_and_censoring_keeps_the_bucket() -> None:
    ing = Probe(table(), Slot(CHAMPION_V), Slot(CHALLENGER_V))
    run(lambda: ing(predict_request()))
    assert [obs.key_bucket for _, obs in ing.recorded] == [None]

    slow = Probe(table(), Slot(CHAMPION_V, delay=2 * DEADLINE), Slot(CHALLENGER_V))
    key = _key_for(Arm.CHAMPION)
    run(lambda: slow(predict_request({"x-gateway-key": key})))
    assert slow.recorded == [(CHAMPION_V, Observation(DEADLINE, Outcome.TIMEOUT,
                                                      key_bucket=key_bucket(key)))]


# ---- OpenAI routes: generate and streams -----------------------------------------------------

def _generation(stream: bool = False) -> GenerationRequest:
    return parse_completion({"prompt": "Who wrote it?", "context": "It was written by Ann.",
                             "stream": stream, "max_tokens": 8}, 64)


def completion_request(key: str | None = None, stream: bool = False) -> Request:
    body = {"prompt": "Who wrote it?", "context": "It was written by Ann.", "max_tokens": 8,
            "stream": stream}
    return predict_request({"x-gateway-key": key} if key else {}, "/v1/completions", body)


def test_generate_censored_champion_answers_but_is_neither_compared_nor_scored() -> None:
    ing = Probe(table(), Slot(CHAMPION_V, delay=2 * DEADLINE), Slot(CHALLENGER_V),
                hallucination={"sample_rate": 1.0})
    resp = run(lambda: ing(completion_request(_key_for(Arm.CHAMPION))))
    assert resp.status_code == 200
    assert json.loads(bytes(resp.body))["choices"][0]["text"] == "an answer"
    assert ing.window(CHAMPION_V) == {"timeout": 1}
    assert ing.pool.submitted == []


def test_generate_failover_is_neither_compared_nor_scored() -> None:
    ing = Probe(table(), Slot(CHAMPION_V), Slot(CHALLENGER_V, fail=True),
                hallucination={"sample_rate": 1.0})
    resp = run(lambda: ing(completion_request(_key_for(Arm.CHALLENGER))))
    assert resp.status_code == 200 and resp.headers["x-gateway-arm"] == "champion"
    assert ing.window(CHAMPION_V) == {}
    assert ing.window(CHALLENGER_V) == {"server_error": 1}
    assert ing.pool.submitted == []


async def _drain(resp: Any) -> str:
    return "".join([part if isinstance(part, str) else part.decode()
                    async for part in resp.body_iterator])


def test_stream_champion_censored_at_the_first_token_deadline() -> None:
    ing = Probe(table(), Slot(CHAMPION_V, delay=2 * DEADLINE), Slot(CHALLENGER_V))

    async def scenario() -> str:
        resp = await ing(completion_request(_key_for(Arm.CHAMPION), stream=True))
        return await _drain(resp)

    body = run(scenario)
    assert "hello" in body and "[DONE]" in body
    assert ing.window(CHAMPION_V) == {"timeout": 1}
    assert ing.counts == {("champion", "ok"): 1}
    [(_, version, outcome, _)] = ing.metrics.requests
    assert (version, outcome) == (CHAMPION_V, "ok")


def test_stream_champion_in_time_is_compared() -> None:
    ing = Probe(table(), Slot(CHAMPION_V), Slot(CHALLENGER_V))
    key = _key_for(Arm.CHAMPION)

    async def scenario() -> str:
        return await _drain(await ing(completion_request(key, stream=True)))

    run(scenario)
    assert ing.window(CHAMPION_V) == {"ok": 1}
    [(_, obs)] = ing.recorded
    assert obs.ttft_s is not None and obs.key_bucket == key_bucket(key)


@pytest.mark.parametrize(("challenger", "outcome"), [
    (Slot(CHALLENGER_V, fail=True), "server_error"),
    (Slot(CHALLENGER_V, delay=SLOW), "timeout"),
])
def test_stream_failover_before_the_first_token_is_not_compared(challenger: Slot,
                                                                outcome: str) -> None:
    ing = Probe(table(), Slot(CHAMPION_V), challenger, hallucination={"sample_rate": 1.0})

    async def scenario() -> tuple[Any, str]:
        resp = await ing(completion_request(_key_for(Arm.CHALLENGER), stream=True))
        return resp, await _drain(resp)

    resp, body = run(scenario)
    assert resp.headers["x-gateway-arm"] == "champion" and "[DONE]" in body
    assert ing.window(CHALLENGER_V) == {outcome: 1}
    assert ing.window(CHAMPION_V) == {}
    assert ing.counts == {("challenger", outcome): 1, ("challenger", "failover"): 1,
                          ("champion", "ok"): 1}
    assert ing.pool.submitted == []


MIDDLE: list[dict[str, Any]] = [
    {"text": f" w{i}", "finish_reason": None, "tokens": 1, "prompt_tokens": None}
    for i in range(3)]


@pytest.mark.parametrize("later", [
    [StreamChunk(c) for c in [*MIDDLE, LAST]],
    [StreamChunks((*MIDDLE, LAST))],
    [StreamChunk(MIDDLE[0]), StreamChunks(tuple(MIDDLE[1:])), StreamChunks((LAST,))],
])
def test_stream_chunks_sent_together_reach_the_client_as_one_message_of_the_same_events(
        later: list[StreamItem]) -> None:
    """However the slot groups its chunks, the client gets the same events (one per chunk)
    and the answer is measured the same; each item goes on as one ASGI message."""
    ing = Probe(table(Mode.PINNED), Slot(CHAMPION_V, later=later), Slot(CHALLENGER_V))

    async def scenario() -> list[bytes]:
        resp: Any = await ing(completion_request(stream=True))
        return [part async for part in resp.body_iterator]

    parts = run(scenario)
    events = b"".join(parts).decode().split("\n\n")
    texts = [json.loads(e.removeprefix("data: "))["choices"][0]["text"]
             for e in events if e.startswith("data: {")]
    assert texts == ["hello", " w0", " w1", " w2", " world"]
    assert events[-2:] == ["data: [DONE]", ""]
    assert len(parts) == 1 + len(later) + 1  # the first item, one per later item, [DONE]
    [(_, obs)] = ing.recorded
    assert (obs.tokens_in, obs.tokens_out) == (3, 5)
    assert ing.window(CHAMPION_V) == {"ok": 1}


def test_stream_item_of_an_unknown_kind_breaks_the_stream_as_a_server_error() -> None:
    junk = SlotError(CallOutcome.SERVER_ERROR, 500, "not a chunk")
    ing = Probe(table(Mode.PINNED), Slot(CHAMPION_V, later=[junk]), Slot(CHALLENGER_V))

    async def scenario() -> None:
        await _drain(await ing(completion_request(stream=True)))

    with pytest.raises(TypeError, match="later items must be StreamChunks or StreamChunk"):
        run(scenario)
    assert ing.window(CHAMPION_V) == {"server_error": 1}


# ---- (4) hallucination sampling rates per arm ----------------------------------------------

def test_answers_are_submitted_at_their_arms_rate() -> None:
    canary = table(Mode.SPLIT, 5.0)
    ing = Probe(canary, Slot(CHAMPION_V), Slot(CHALLENGER_V),
                hallucination={"sample_rate": 0.1})
    req = _generation()
    ing._openai.evaluate(Arm.CHAMPION, CHAMPION_V, req, "text", "r1")
    ing._openai.evaluate(Arm.CHALLENGER, CHALLENGER_V, req, "text", "r2")
    [(_, _, champion), (_, _, challenger)] = ing.pool.submitted
    assert challenger == pytest.approx(1.0)
    assert champion == pytest.approx(0.05 / 0.95)


# ---- describe(): what this replica recorded and flushed --------------------------------------

def test_describe_reports_flushed_and_pending_window_counts() -> None:
    ing = Probe(table(), Slot(CHAMPION_V, delay=2 * DEADLINE), Slot(CHALLENGER_V, fail=True))
    sent: list[tuple[Any, ...]] = []
    ing._sup = ing._relay = SimpleNamespace(  # type: ignore[assignment]
        ingest=SimpleNamespace(remote=lambda *a: sent.append(a)))
    ing._replica_id = "r"

    async def scenario() -> dict[str, Any]:
        await serve(ing, table(), Arm.CHAMPION)
        ing._flush()
        await serve(ing, table(), Arm.CHALLENGER)
        return ing._window_counts()

    windows = run(scenario)
    [(_, deltas, _)] = sent  # what the first flush sent to the supervisor
    assert list(deltas) == [CHAMPION_V]
    assert windows == {CHAMPION_V: {"flushed": {"timeout": 1}, "pending": {}},
                       CHALLENGER_V: {"flushed": {}, "pending": {"server_error": 1}}}


# ---- typed slot replies: statuses, messages and outcomes -------------------------------------

REFUSED = SlotError(CallOutcome.CLIENT_ERROR, 422, "inputs: expected 8 features", "inputs")
GONE = SlotError(CallOutcome.UNAVAILABLE, 503, "slot a has no healthy model: boom")


def test_an_answers_batch_size_reaches_the_window_and_defaults_to_one() -> None:
    ing = Probe(table(), Slot(CHAMPION_V, batch_size=4), Slot(CHALLENGER_V))
    run(lambda: serve(ing, table(), Arm.CHAMPION))
    run(lambda: serve(ing, table(), Arm.CHALLENGER))
    assert [(v, obs.batch_size) for v, obs in ing.recorded] == [(CHAMPION_V, 4),
                                                                 (CHALLENGER_V, 1)]


def test_a_slots_client_error_reaches_the_client_as_it_is_and_is_not_failed_over() -> None:
    ing = Probe(table(), Slot(CHAMPION_V), Slot(CHALLENGER_V, error=REFUSED))
    resp = run(lambda: ing(predict_request({"x-gateway-key": _key_for(Arm.CHALLENGER),
                                            "x-request-id": "req-1"})))
    assert resp.status_code == 422
    assert json.loads(bytes(resp.body)) == {
        "error": {"type": "invalid_input", "message": "inputs: expected 8 features",
                  "field": "inputs"}, "request_id": "req-1"}
    assert ing.counts == {("challenger", "client_error"): 1}
    assert ing.window(CHALLENGER_V) == {"client_error": 1}
    assert ing._served == []


def test_an_unavailable_champion_is_a_502_counted_but_neither_judged_nor_measured() -> None:
    ing = Probe(table(Mode.PINNED), Slot(CHAMPION_V, error=GONE), Slot(CHALLENGER_V))
    resp = run(lambda: ing(predict_request({"x-request-id": "req-2"})))
    assert resp.status_code == 502
    assert json.loads(bytes(resp.body))["error"] == {
        "type": "upstream_error",
        "message": "the champion model could not answer: slot a has no healthy model: boom"}
    assert ing.counts == {("champion", "unavailable"): 1}
    assert ing.recorded == [] and ing.metrics.requests == []


def test_an_answer_is_served_with_its_model_and_remembered_for_feedback() -> None:
    ing = Probe(table(Mode.PINNED), Slot(CHAMPION_V), Slot(CHALLENGER_V))
    resp = run(lambda: ing(predict_request({"x-request-id": "req-3"})))
    assert resp.status_code == 200
    assert json.loads(bytes(resp.body)) == {"outputs": [[1.0]],
                                            "model": {"name": "m", "version": CHAMPION_V}}
    assert resp.headers["x-gateway-model-version"] == CHAMPION_V
    assert ing._served == [("req-3", CHAMPION_V)]


def test_a_reply_that_is_no_slot_reply_is_a_server_error() -> None:
    ing = Probe(table(), Slot(CHAMPION_V), Slot(CHALLENGER_V, error={"ok": True}))
    arm, call = run(lambda: serve(ing, table(), Arm.CHALLENGER))
    assert arm is Arm.CHAMPION and call.outcome is CallOutcome.OK  # failed over
    assert ing.window(CHALLENGER_V) == {"server_error": 1}


def test_generate_client_error_keeps_the_slots_status_message_and_field() -> None:
    ing = Probe(table(Mode.PINNED), Slot(CHAMPION_V, error=REFUSED), Slot(CHALLENGER_V))
    resp = run(lambda: ing(completion_request()))
    assert resp.status_code == 422
    assert json.loads(bytes(resp.body)) == {"error": {
        "message": "inputs: expected 8 features", "type": "invalid_request_error",
        "param": "inputs", "code": None}}


def test_stream_refused_by_the_slot_answers_with_its_status_before_any_event() -> None:
    not_text = SlotError(CallOutcome.CLIENT_ERROR, 400, "model m version 1 does not generate "
                         "text; use /v1/predict")
    ing = Probe(table(Mode.PINNED), Slot(CHAMPION_V, error=not_text), Slot(CHALLENGER_V))
    resp = run(lambda: ing(completion_request(stream=True)))
    assert resp.status_code == 400
    assert json.loads(bytes(resp.body))["error"]["message"] == not_text.message
    assert ing._served == []


# ---- replicas lost under calls ------------------------------------------------------------

def test_a_challenger_replica_lost_under_a_call_fails_over_and_is_not_judged() -> None:
    challenger = Slot(CHALLENGER_V, lose=1)
    everything = table(weight=100.0)
    ing = Probe(everything, Slot(CHAMPION_V), challenger)
    assert ing.route(predict_request()).arm is Arm.CHALLENGER
    arm, call = run(lambda: serve(ing, everything, Arm.CHALLENGER))
    assert arm is Arm.CHAMPION and call.outcome == "ok" and not call.compared
    assert ing.window(CHALLENGER_V) == {}  # not the model's failure: the supervisor decides
    assert ing.counts[("challenger", "replica_lost")] == 1
    assert ing._sup.lost == [("b", CHALLENGER_V)]  # type: ignore[attr-defined]
    # for a moment the slot is routed past (Serve is replacing the replica)
    assert ing.route(predict_request()).arm is Arm.CHAMPION


def test_a_champion_replica_lost_under_a_call_is_retried_once() -> None:
    champion = Slot(CHAMPION_V, lose=1)
    ing = Probe(table(), champion, Slot(CHALLENGER_V))
    arm, call = run(lambda: serve(ing, table(), Arm.CHAMPION))
    assert arm is Arm.CHAMPION and call.outcome == "ok"
    assert champion.calls == 2
    assert ing._sup.lost == [("a", CHAMPION_V)]  # type: ignore[attr-defined]
