"""The one load generator of the demo, the benchmarks and the e2e tests.

POSTs JSON to a gateway on this machine, open loop at a fixed `rate` (requests leave on
schedule whether or not earlier ones have answered, as independent clients do) or, without a
rate, closed loop with `concurrency` workers (each sends its next request when its last one
has answered: for throughput). Always bounded: by `max_s` seconds whatever happens, and by
`count` requests, a `stop` predicate or leaving the `with` block when given.

Every answer is recorded as `Answer(sent, status, arm)`; a transport error or timeout counts
as status 599. `on_answer` sees each answer with its response (None on a transport error) and
latency, for callers that want more (latencies, model versions, the responses themselves).
Proxy settings from the environment are ignored: the target is local.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx
import numpy as np

TRANSPORT_ERROR = 599
JSON_HEADERS = {"content-type": "application/json"}

Payload = Callable[[int], Any]  # request index -> JSON body (bytes: already encoded)


class Answer(NamedTuple):
    sent: float  # wall clock (time.time()): comparable with table versions (ms)
    status: int
    arm: str  # the x-gateway-arm header; "" when absent


OnAnswer = Callable[[Answer, httpx.Response | None, float], None]


def random_rows(seed: int = 0, n_features: int | None = None) -> Payload:
    """`{"inputs": [row]}` with a standard normal row, reproducible per request index;
    `n_features` defaults to the demo models' input width."""
    if n_features is None:
        from gateway.demo.models import N_FEATURES  # imports MLflow: only when needed

        n_features = N_FEATURES

    def payload(i: int) -> dict[str, Any]:
        rng = np.random.default_rng((seed, i))
        return {"inputs": rng.normal(size=(1, n_features)).round(4).tolist()}

    return payload


def fixed(body: Any) -> Payload:
    """The same body for every request, encoded once (the client shares the machine's
    CPUs with the server it measures)."""
    encoded = json.dumps(body).encode()
    return lambda _i: encoded


@dataclass
class Traffic:
    """POSTs to `url + path`: `run()` on an event loop, or `with Traffic(...):` for a
    background thread that runs until the block ends (or a bound is reached)."""

    url: str
    rate: float | None = None  # requests per second (open loop); None: closed loop
    concurrency: int = 1  # closed-loop workers
    count: int | None = None
    max_s: float = 240.0
    path: str = "/v1/predict"
    payload: Payload = field(default_factory=random_rows)
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0
    on_answer: OnAnswer | None = None
    answers: list[Answer] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate: expected > 0 requests per second, got {self.rate}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency: expected >= 1, got {self.concurrency}")
        self._sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.answers)

    async def run(self, stop: Callable[[], bool] | None = None) -> list[Answer]:
        """Send until a bound is reached or `stop()` is true; wait for the requests in
        flight; return the answers (also in `answers`)."""
        slots = self.concurrency if self.rate is None else 100  # httpx's default pool
        limits = httpx.Limits(max_connections=slots, max_keepalive_connections=slots)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits,
                                     trust_env=False) as client:
            deadline = time.monotonic() + self.max_s  # from the first request on

            def more() -> bool:
                return (time.monotonic() < deadline and not (stop and stop())
                        and (self.count is None or self._sent < self.count))

            if self.rate is None:
                await asyncio.gather(*(self._worker(client, more)
                                       for _ in range(self.concurrency)))
            else:
                await self._open_loop(client, more, self.rate)
        return self.answers

    async def _open_loop(self, client: httpx.AsyncClient, more: Callable[[], bool],
                         rate: float) -> None:
        pending: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while more():
            task = asyncio.ensure_future(self._one(client))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending, return_exceptions=True)

    async def _worker(self, client: httpx.AsyncClient, more: Callable[[], bool]) -> None:
        while more():
            await self._one(client)

    async def _one(self, client: httpx.AsyncClient) -> None:
        i = self._sent
        self._sent += 1
        body = self.payload(i)
        sent, start = time.time(), time.perf_counter()
        resp: httpx.Response | None
        try:
            if isinstance(body, bytes):
                resp = await client.post(self.url + self.path, content=body,
                                         headers={**JSON_HEADERS, **self.headers})
            else:
                resp = await client.post(self.url + self.path, json=body,
                                         headers=self.headers)
        except httpx.HTTPError:
            resp = None
        latency = time.perf_counter() - start
        answer = Answer(sent, TRANSPORT_ERROR if resp is None else resp.status_code,
                        "" if resp is None else resp.headers.get("x-gateway-arm", ""))
        self.answers.append(answer)
        if self.on_answer is not None:
            self.on_answer(answer, resp, latency)

    def __enter__(self) -> Traffic:
        self._stop.clear()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.run(self._stop.is_set)), daemon=True,
            name="traffic")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
