"""core.httppost against a real local HTTP server (http.server on 127.0.0.1, in a thread)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from core.httppost import PostError, Retry, post_json


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class Server:
    """Answers each POST with the next scripted `Reply` (200 when none is left) and records
    the JSON bodies and the arrival times."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.bodies: list[Any] = []
        self.times: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.bodies.append(json.loads(raw))
                outer.times.append(time.monotonic())
                reply = outer.script.pop(0) if outer.script else Reply()
                time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=1.0) as c:
        yield c


def test_posts_json_and_returns_the_read_response(server: Server, client: httpx.Client) -> None:
    resp = post_json(client, server.url, {"a": [1, 2]})
    assert resp.status_code == 200 and resp.json() == {"ok": True}
    assert server.bodies == [{"a": [1, 2]}]


def test_retries_5xx_and_429_then_succeeds(server: Server, client: httpx.Client) -> None:
    server.script += [Reply(500), Reply(503), Reply(429, headers={"retry-after": "0"})]
    retries: list[tuple[int, str]] = []
    resp = post_json(client, server.url, {}, retries=3, backoff_s=0.0,
                     on_retry=lambda n, why, _wait: retries.append((n, why)))
    assert resp.status_code == 200
    assert len(server.bodies) == 4
    assert retries == [(1, "HTTP 500"), (2, "HTTP 503"), (3, "HTTP 429")]


def test_gives_up_after_the_retries_with_the_last_answer(server: Server,
                                                         client: httpx.Client) -> None:
    server.script += [Reply(503, b"down for maintenance")] * 3
    with pytest.raises(PostError) as info:
        post_json(client, server.url, {}, retries=2, backoff_s=0.0)
    err = info.value
    assert (err.kind, err.attempts, err.status, err.reason) == ("gave_up", 3, 503, "HTTP 503")
    assert err.text == "down for maintenance"
    assert "3 attempt(s): HTTP 503" in str(err) and "/hook" in str(err)
    assert len(server.bodies) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_4xx_fail_at_once(server: Server, client: httpx.Client, status: int) -> None:
    server.script.append(Reply(status, b"bad payload"))
    with pytest.raises(PostError) as info:
        post_json(client, server.url, {}, retries=3, backoff_s=0.0)
    assert (info.value.kind, info.value.status, info.value.attempts) == ("rejected", status, 1)
    assert info.value.text == "bad payload"
    assert len(server.bodies) == 1


def test_retry_status_chooses_what_is_retried(server: Server, client: httpx.Client) -> None:
    server.script += [Reply(408), Reply(501)]
    with pytest.raises(PostError) as info:
        post_json(client, server.url, {}, retries=3, backoff_s=0.0,
                  retry_status=lambda s: s == 408)
    assert (info.value.kind, info.value.status) == ("rejected", 501)
    assert len(server.bodies) == 2


def test_backoff_doubles_each_retry(server: Server, client: httpx.Client) -> None:
    server.script += [Reply(500)] * 3
    waits: list[float] = []
    with pytest.raises(PostError):
        post_json(client, server.url, {}, retries=2, backoff_s=0.1,
                  on_retry=lambda _n, _why, wait: waits.append(wait))
    assert waits == [0.1, 0.2]
    gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2


def test_retry_after_replaces_the_backoff_and_is_capped(server: Server,
                                                        client: httpx.Client) -> None:
    server.script += [Reply(429, headers={"retry-after": "0.3"}),
                      Reply(429, headers={"retry-after": "3600"}),
                      Reply(429, headers={"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})]
    waits: list[float] = []
    post_json(client, server.url, {}, retries=3, backoff_s=0.01, max_backoff_s=0.4,
              on_retry=lambda _n, _why, wait: waits.append(wait))
    assert waits == [0.3, 0.4, 0.04]  # asked; asked but capped; a date: own backoff (x4)
    assert server.times[1] - server.times[0] >= 0.3


def test_timeouts_are_retried_then_reported(server: Server) -> None:
    server.script += [Reply(delay_s=1.0)] * 2
    start = time.monotonic()
    with httpx.Client(timeout=0.2) as client, pytest.raises(PostError) as info:
        post_json(client, server.url, {}, retries=1, backoff_s=0.0)
    assert time.monotonic() - start < 1.0
    assert info.value.kind == "gave_up" and info.value.status is None
    assert info.value.reason.startswith("ReadTimeout")
    assert len(server.bodies) == 2


def test_nothing_listening_is_a_transport_failure(client: httpx.Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PostError, match=rf"127\.0\.0\.1:{port}.*2 attempt.*Connect"):
        post_json(client, f"http://127.0.0.1:{port}/x", {}, retries=1, backoff_s=0.0)


def test_read_hook_retry_and_own_errors(server: Server, client: httpx.Client) -> None:
    calls: list[float] = []

    def read(resp: httpx.Response, started: float) -> Any:
        calls.append(started)
        if len(calls) == 1:
            raise Retry("incomplete body")
        return json.loads(resp.read())

    assert post_json(client, server.url, {}, retries=1, backoff_s=0.0, read=read) == {"ok": True}
    assert len(calls) == 2 and calls[0] < calls[1]

    def refuse(resp: httpx.Response, started: float) -> Any:
        raise ValueError("not mine to wrap")

    with pytest.raises(ValueError, match="not mine"):
        post_json(client, server.url, {}, retries=3, backoff_s=0.0, read=refuse)


def test_error_message_redacts_the_url(server: Server, client: httpx.Client) -> None:
    server.script.append(Reply(400))
    secret = server.url.replace("http://", "http://user:s3cret@") + "?key=s3cret"
    with pytest.raises(PostError) as info:
        post_json(client, secret, {}, retries=0)
    assert "s3cret" not in str(info.value)
    assert info.value.url == secret  # the attribute keeps the real URL
