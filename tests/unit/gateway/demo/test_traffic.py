"""gateway.demo.traffic, the shared load generator, against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gateway.demo.traffic import Answer, Traffic, fixed, random_rows


class Server:
    """Answers POST /v1/predict with 200 and `x-gateway-arm: champion` after `delay_s`;
    records bodies, content types and the most requests it ever had in flight."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.bodies: list[Any] = []
        self.content_types: list[str] = []
        self.in_flight = self.max_in_flight = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's proxy

            def do_POST(self) -> None:
                with lock:
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.bodies.append(json.loads(raw))
                outer.content_types.append(self.headers.get("content-type", ""))
                time.sleep(delay_s)
                with lock:
                    outer.in_flight -= 1
                status = 200 if self.path == "/v1/predict" else 404
                self.send_response(status)
                self.send_header("x-gateway-arm", "champion")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def test_open_loop_sends_count_requests_at_the_rate(server: Server) -> None:
    traffic = Traffic(server.url, rate=50, count=15)
    start = time.monotonic()
    answers = asyncio.run(traffic.run())
    assert time.monotonic() - start >= 14 / 50  # on schedule, not as fast as possible
    assert len(answers) == 15 and traffic.statuses() == {200: 15}
    assert {arm for _, _, arm in answers} == {"champion"}
    assert len(server.bodies) == 15
    assert all(len(b["inputs"][0]) == 8 for b in server.bodies)  # the demo models' rows


def test_max_s_bounds_a_run_without_other_bounds(server: Server) -> None:
    start = time.monotonic()
    answers = asyncio.run(Traffic(server.url, rate=20, max_s=0.5).run())
    assert time.monotonic() - start < 3.0
    assert 4 <= len(answers) <= 12


def test_closed_loop_keeps_concurrency_requests_in_flight() -> None:
    slow = Server(delay_s=0.03)
    try:
        seen: list[int] = []

        def payload(i: int) -> dict[str, int]:
            seen.append(i)
            return {"i": i}

        traffic = Traffic(slow.url, concurrency=4, count=24, payload=payload)
        asyncio.run(traffic.run())
    finally:
        slow.close()
    assert sorted(b["i"] for b in slow.bodies) == list(range(24)) == seen
    assert slow.max_in_flight == 4
    assert traffic.statuses() == {200: 24}


def test_stop_predicate_and_with_block_end_the_traffic(server: Server) -> None:
    traffic = Traffic(server.url, rate=200)
    asyncio.run(traffic.run(stop=lambda: len(traffic.answers) >= 5))
    assert 5 <= len(traffic.answers) < 50
    with Traffic(server.url, rate=100) as background:
        time.sleep(0.3)
    n = len(background.answers)
    assert n > 5
    time.sleep(0.2)
    assert len(background.answers) == n  # nothing left running after the block


def test_transport_errors_count_as_599() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    traffic = Traffic(f"http://127.0.0.1:{port}", rate=100, count=3)
    assert asyncio.run(traffic.run()) == [Answer(a.sent, 599, "") for a in traffic.answers]
    assert traffic.statuses() == {599: 3}


def test_fixed_bytes_payload_path_and_on_answer(server: Server) -> None:
    seen: list[tuple[int, int | None, float]] = []

    def on_answer(answer: Answer, resp: httpx.Response | None, latency_s: float) -> None:
        seen.append((answer.status, None if resp is None else resp.status_code, latency_s))

    traffic = Traffic(server.url + "/v1/predict", path="", rate=100, count=3,
                      payload=fixed({"inputs": [[1.0]]}), on_answer=on_answer)
    asyncio.run(traffic.run())
    assert server.bodies == [{"inputs": [[1.0]]}] * 3
    assert server.content_types == ["application/json"] * 3
    assert [s[:2] for s in seen] == [(200, 200)] * 3 and all(s[2] > 0 for s in seen)
    wrong = Traffic(server.url, path="/nowhere", rate=100, count=2)
    asyncio.run(wrong.run())
    assert wrong.statuses() == {404: 2}


def test_random_rows_are_reproducible_per_index() -> None:
    a, b = random_rows(seed=1, n_features=3), random_rows(seed=1, n_features=3)
    assert a(5) == b(5) != a(6)
    assert len(a(0)["inputs"][0]) == 3


@pytest.mark.parametrize("kw", [{"rate": 0.0}, {"rate": -1.0}, {"concurrency": 0}])
def test_rejects_settings_that_would_never_send(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Traffic("http://127.0.0.1:1", **kw)
