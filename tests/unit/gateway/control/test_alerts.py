"""Notifiers and the dispatcher against a real local HTTP server (no mocks of httpx)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.errors import ConfigError
from gateway.control.alerts import (
    Alert,
    AlertDispatcher,
    AlertError,
    AlertSpec,
    build_dispatcher,
    make_notifier,
    make_notifiers,
    parse_alert_specs,
    rollout_alert,
)
from gateway.control.notifiers.slack import FIELD_TEXT_MAX, HEADER_MAX, SECTION_TEXT_MAX
from guards.results import Severity

VERDICT: dict[str, Any] = {
    "state": "fail", "action": "rollback", "severity": "critical",
    "reasons": ["error_rate: challenger 12.0% vs champion 0.1% (e-value 1e6)"],
    "results": [{"guard": "error_rate", "state": "fail", "value": 0.12, "threshold": 0.01,
                 "statistic": 13.8, "n_champion": 900, "n_challenger": 100,
                 "detail": "significant increase", "signal": True}],
    "catastrophic": False,
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Recorder:
    """What the server saw, and what it answers next: (status, delay_s, headers)."""

    requests: list[Received] = field(default_factory=list)
    script: deque[tuple[int, float, dict[str, str]]] = field(default_factory=deque)
    hang: threading.Event | None = None  # when set: every request waits for release
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.body for r in self.requests]

    def wait_for(self, n: int, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.arrived.wait(left)
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        rec = self.server.recorder
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with rec.arrived:
            with rec.lock:
                rec.requests.append(Received(self.path, {k.lower(): v for k, v in
                                                         self.headers.items()},
                                             json.loads(body)))
                status, delay, headers = (rec.script.popleft() if rec.script
                                          else (200, 0.0, {}))
            rec.arrived.notify_all()
        if rec.hang is not None:
            rec.release.wait(10.0)
        if delay:
            rec.release.wait(delay)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    recorder: Recorder


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.recorder = Recorder()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", srv.recorder
    finally:
        srv.recorder.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def alert(severity: str = "critical", **kw: Any) -> Alert:
    base: dict[str, Any] = dict(
        title="champion-gateway: challenger v7 rolled back", severity=severity,
        summary="error rate 12% vs 0.1%", model="fraud", rollout_id="r-42",
        champion_version="6", challenger_version="7", action="rollback",
        reasons=tuple(VERDICT["reasons"]), details={"verdict": VERDICT}, time=1_700_000_000.5)
    base.update(kw)
    return Alert(**base)


def fast(spec_type: str, url: str | None, **kw: Any) -> AlertSpec:
    return AlertSpec(type=spec_type, url=url, backoff_s=0.01, **kw)  # type: ignore[arg-type]


# ---- payload formats -------------------------------------------------------------------------


def test_webhook_posts_alert_dict_with_resolved_headers(
        server: tuple[str, Recorder], monkeypatch: pytest.MonkeyPatch) -> None:
    url, rec = server
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    spec = fast("webhook", f"{url}/hook", headers={"Authorization": "Bearer ${HOOK_TOKEN}"})
    a = alert()
    make_notifier(spec).send(a)
    assert len(rec.requests) == 1
    got = rec.requests[0]
    assert got.path == "/hook"
    assert got.headers["authorization"] == "Bearer s3cret"
    assert got.headers["content-type"] == "application/json"
    assert got.body == a.to_dict()
    assert got.body["details"]["verdict"]["results"][0]["guard"] == "error_rate"
    assert got.body["reasons"] == VERDICT["reasons"]
    assert datetime.fromisoformat(got.body["timestamp"]).timestamp() == pytest.approx(a.time)


def test_webhook_payload_is_strict_json_even_with_non_finite_evidence(
        server: tuple[str, Recorder]) -> None:
    url, rec = server
    make_notifier(fast("webhook", url)).send(alert(details={"psi": float("inf"), "x": 1.5}))
    assert rec.requests[0].body["details"] == {"psi": None, "x": 1.5}


def test_slack_blocks_fields_and_limits(server: tuple[str, Recorder]) -> None:
    url, rec = server
    long_reasons = tuple(f"guard_{i}: {'x' * 200} <b> & co" for i in range(40))
    a = alert(title="T" * 400, reasons=long_reasons, model="fraud<&>")
    make_notifier(fast("slack", f"{url}/services/T1/B2/secret")).send(a)
    body = rec.requests[0].body
    assert rec.requests[0].path == "/services/T1/B2/secret"
    assert "T" * 10 in body["text"]
    header, summary, fields, reasons = body["blocks"][:4]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) == HEADER_MAX
    assert summary["text"]["text"].endswith("error rate 12% vs 0.1%")
    texts = [f["text"] for f in fields["fields"]]
    assert len(texts) <= 10 and all(len(t) <= FIELD_TEXT_MAX for t in texts)
    assert "*Model*\nfraud&lt;&amp;&gt;" in texts
    assert "*Champion*\nv6" in texts and "*Challenger*\nv7" in texts
    assert "*Action*\nrollback" in texts and "*Severity*\ncritical" in texts
    assert "*Rollout*\nr-42" in texts
    text = reasons["text"]["text"]
    assert text.startswith("*Reasons*\n• guard_0") and len(text) <= SECTION_TEXT_MAX
    assert text.endswith("…") and "&lt;b&gt; &amp; co" in text
    assert body["blocks"][-1]["type"] == "context"


def test_slack_short_alert_is_not_truncated(server: tuple[str, Recorder]) -> None:
    url, rec = server
    a = alert(severity="info", action="promoted", reasons=())
    make_notifier(fast("slack", url)).send(a)
    blocks = rec.requests[0].body["blocks"]
    assert blocks[0]["text"]["text"] == a.title
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]


@pytest.mark.parametrize(("ours", "theirs"), [
    ("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info"),
    ("info", "info")])
def test_pagerduty_event_v2_fields_and_severity_mapping(
        server: tuple[str, Recorder], monkeypatch: pytest.MonkeyPatch,
        ours: str, theirs: str) -> None:
    url, rec = server
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY")
    spec = fast("pagerduty", f"{url}/v2/enqueue", routing_key_env="PD_KEY")
    a = alert(severity=ours, summary="s" * 2000)
    make_notifier(spec, "alerts[2]").send(a)
    event = rec.requests[0].body
    assert event["routing_key"] == "R0UT1NGKEY"
    assert event["event_action"] == "trigger"
    assert event["client"] == "champion-gateway"
    assert "r-42" in event["dedup_key"] and "fraud" in event["dedup_key"]
    payload = event["payload"]
    assert payload["severity"] == theirs
    assert len(payload["summary"]) == 1024 and payload["summary"].startswith(a.title)
    assert datetime.fromisoformat(payload["timestamp"]).timestamp() == pytest.approx(a.time)
    assert payload["source"] and payload["component"] == "fraud"
    assert payload["group"] == "champion-gateway" and payload["class"] == "rollback"
    assert payload["custom_details"]["details"]["verdict"] == VERDICT
    assert payload["custom_details"]["challenger_version"] == "7"


def test_pagerduty_without_rollout_id_leaves_dedup_to_pagerduty(
        server: tuple[str, Recorder], monkeypatch: pytest.MonkeyPatch) -> None:
    url, rec = server
    monkeypatch.setenv("PD_KEY", "k")
    make_notifier(fast("pagerduty", url, routing_key_env="PD_KEY")).send(
        alert(rollout_id=None))
    assert "dedup_key" not in rec.requests[0].body


# ---- retries, timeouts, failures -------------------------------------------------------------


def test_retries_on_5xx_and_429_then_succeeds(server: tuple[str, Recorder]) -> None:
    url, rec = server
    rec.script.extend([(500, 0.0, {}), (429, 0.0, {"retry-after": "0"}), (200, 0.0, {})])
    make_notifier(fast("webhook", url, retries=2)).send(alert())
    assert len(rec.requests) == 3
    assert rec.bodies()[0] == rec.bodies()[2]


def test_gives_up_after_retries_naming_url(server: tuple[str, Recorder]) -> None:
    url, rec = server
    rec.script.extend([(503, 0.0, {})] * 5)
    with pytest.raises(AlertError, match=r"127\.0\.0\.1.*/hook.*3 attempt.*HTTP 503"):
        make_notifier(fast("webhook", f"{url}/hook", retries=2)).send(alert())
    assert len(rec.requests) == 3


def test_no_retry_on_4xx_other_than_429(server: tuple[str, Recorder]) -> None:
    url, rec = server
    rec.script.extend([(400, 0.0, {}), (200, 0.0, {})])
    with pytest.raises(AlertError, match="HTTP 400"):
        make_notifier(fast("webhook", url, retries=3)).send(alert())
    assert len(rec.requests) == 1


def test_slack_error_masks_the_secret_path(server: tuple[str, Recorder]) -> None:
    url, rec = server
    rec.script.append((404, 0.0, {}))
    with pytest.raises(AlertError) as info:
        make_notifier(fast("slack", f"{url}/services/T1/B2/topsecret")).send(alert())
    assert "topsecret" not in str(info.value) and "/services/T1/B2/***" in str(info.value)


def test_timeout_is_retried_then_fails(server: tuple[str, Recorder]) -> None:
    url, rec = server
    rec.script.extend([(200, 3.0, {}), (200, 3.0, {})])
    notifier = make_notifier(fast("webhook", url, timeout_s=0.2, retries=1))
    start = time.monotonic()
    with pytest.raises(AlertError, match="Timeout"):
        notifier.send(alert())
    assert time.monotonic() - start < 1.5  # 2 x 0.2 s, not the server's 3 s
    assert len(rec.requests) == 2


def test_unreachable_port_fails_naming_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(AlertError, match=rf"{url}.*2 attempt.*Connect"):
        make_notifier(fast("webhook", url, retries=1)).send(alert())


# ---- the dispatcher --------------------------------------------------------------------------


class Exploding:
    """A notifier that always raises something other than AlertError."""

    name = "exploding"
    min_severity = "info"

    def send(self, alert: Alert) -> None:
        raise RuntimeError("boom")


@pytest.fixture
def hanging() -> Iterator[tuple[str, Recorder]]:
    """A second server whose every request waits until released."""
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.recorder = Recorder(hang=threading.Event())
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", srv.recorder
    finally:
        srv.recorder.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def test_dispatch_returns_at_once_while_the_server_hangs(
        hanging: tuple[str, Recorder]) -> None:
    url, rec = hanging
    dispatcher = AlertDispatcher(make_notifiers([fast("webhook", url, timeout_s=30.0)]))
    try:
        dispatcher.dispatch(alert(summary="first"))
        assert rec.wait_for(1)  # the worker is now stuck in the hanging request
        durations = []
        for i in range(50):
            start = time.perf_counter()
            dispatcher.dispatch(alert(summary=f"alert {i}"))
            durations.append(time.perf_counter() - start)
        # Typically ~10 us. A sending dispatch would take the 30 s timeout; the looser bound
        # on the max only absorbs scheduler and GIL hand-over noise on a loaded machine.
        durations.sort()
        assert durations[len(durations) // 2] < 0.001, durations
        assert durations[-5] < 0.005 and durations[-1] < 0.05, durations
        assert dispatcher.stats()["webhook(alerts[0])"].queued == 50
        assert dispatcher.flush(timeout_s=0.2) is False
        rec.release.set()
        assert dispatcher.flush(timeout_s=10.0) is True
        assert dispatcher.stats()["webhook(alerts[0])"].delivered == 51
    finally:
        rec.release.set()
        dispatcher.close()


def test_a_hanging_notifier_does_not_delay_the_others(
        server: tuple[str, Recorder], hanging: tuple[str, Recorder]) -> None:
    url, rec = server
    hanging_url, hanging_rec = hanging
    dispatcher = AlertDispatcher(make_notifiers([
        fast("webhook", hanging_url, timeout_s=30.0), fast("webhook", url)]))
    try:
        for i in range(20):
            dispatcher.dispatch(alert(summary=f"alert {i}"))
        assert rec.wait_for(20, timeout_s=5.0)
        assert [b["summary"] for b in rec.bodies()] == [f"alert {i}" for i in range(20)]
        assert len(hanging_rec.requests) == 1
        assert wait_until(lambda: dispatcher.stats()["webhook(alerts[1])"].delivered == 20)
        assert dispatcher.stats()["webhook(alerts[0])"].delivered == 0
    finally:
        hanging_rec.release.set()
        dispatcher.close()


def test_failing_notifier_never_raises_and_is_counted(server: tuple[str, Recorder]) -> None:
    url, rec = server
    rec.script.append((400, 0.0, {}))
    dispatcher = AlertDispatcher([Exploding(), *make_notifiers([fast("webhook", url),
                                                               fast("webhook", url)])])
    dispatcher.dispatch(alert())
    dispatcher.dispatch(None)  # type: ignore[arg-type]  # garbage in: logged, not raised
    assert dispatcher.flush(5.0)
    stats = dispatcher.stats()
    assert stats["exploding"].failed == 1 and stats["exploding"].last_error == "boom"
    assert sorted((s.delivered, s.failed) for n, s in stats.items() if n != "exploding") == [
        (0, 1), (1, 0)]
    assert len(dispatcher.sent) == 1 and len(dispatcher.deliveries()) == 3
    dispatcher.close()
    dispatcher.dispatch(alert())  # after close: dropped with a log line, no error


def test_min_severity_filters_per_notifier(server: tuple[str, Recorder]) -> None:
    url, rec = server
    dispatcher = build_dispatcher([fast("webhook", f"{url}/high", min_severity="high"),
                                   fast("webhook", f"{url}/all")])
    for sev in ("info", "low", "medium", "high", "critical"):
        dispatcher.dispatch(alert(severity=sev))
    assert dispatcher.flush(5.0)
    by_path: dict[str, list[str]] = {}
    for r in rec.requests:
        by_path.setdefault(r.path, []).append(r.body["severity"])
    assert by_path["/high"] == ["high", "critical"]
    assert by_path["/all"] == ["info", "low", "medium", "high", "critical"]
    assert dispatcher.stats()["webhook(alerts[0])"].filtered == 3
    dispatcher.close()


def test_full_queue_drops_the_oldest(server: tuple[str, Recorder]) -> None:
    url, rec = server
    rec.hang = threading.Event()
    dispatcher = AlertDispatcher(make_notifiers([fast("webhook", url, timeout_s=30.0)]),
                                 queue_size=2)
    dispatcher.dispatch(alert(summary="a0"))
    assert rec.wait_for(1)  # a0 is in flight, the queue is empty
    for i in range(1, 5):
        dispatcher.dispatch(alert(summary=f"a{i}"))
    assert dispatcher.stats()["webhook(alerts[0])"].dropped == 2
    rec.release.set()
    assert dispatcher.flush(5.0)
    assert [b["summary"] for b in rec.bodies()] == ["a0", "a3", "a4"]
    dispatcher.close()


def test_duplicate_names_are_made_unique() -> None:
    dispatcher = AlertDispatcher([Exploding(), Exploding()])
    assert dispatcher.notifier_names == ["exploding", "exploding#2"]
    dispatcher.close()


# ---- values and config -----------------------------------------------------------------------


def test_alert_validates_and_normalises_severity() -> None:
    assert alert(severity=Severity.HIGH).severity == "high"
    assert type(alert(severity=Severity.HIGH).severity) is str
    with pytest.raises(AlertError, match="severity"):
        alert(severity="urgent")


def test_rollout_alert_takes_severity_and_reasons_from_the_verdict() -> None:
    a = rollout_alert(model="fraud", action="rollback", rollout_id="r-1",
                      champion_version="6", challenger_version="7", verdict=VERDICT)
    assert a.title == "champion-gateway: fraud challenger v7 rolled back"
    assert a.severity == "critical" and a.reasons == tuple(VERDICT["reasons"])
    assert a.details["verdict"] == VERDICT
    promoted = rollout_alert(model="fraud", action="promoted", challenger_version="7",
                             reason="all steps passed")
    assert promoted.severity == "info" and promoted.summary == "all steps passed"
    failed = rollout_alert(model="fraud", action="load_failed", reason="artifact missing")
    assert failed.severity == "high" and "failed to load" in failed.title


def test_parse_specs_from_config() -> None:
    specs = parse_alert_specs([
        {"type": "webhook", "url": "http://127.0.0.1:9/x", "timeout_s": 1, "retries": 0},
        {"type": "pagerduty", "routing_key_env": "PD", "min_severity": "high"},
    ])
    assert specs[0].timeout_s == 1.0 and specs[0].retries == 0
    assert specs[1].url is None and specs[1].min_severity == "high"
    assert parse_alert_specs(None) == ()


@pytest.mark.parametrize(("raw", "where"), [
    ([{"type": "email", "url": "http://x"}], "alerts[0].type"),
    ([{"type": "webhook", "url": "http://x"}, {"type": "slack", "colour": "red"}],
     "alerts[1].colour"),
    ([{"type": "webhook", "timeout_s": 0}], "alerts[0].timeout_s"),
    ([{"type": "webhook", "retries": -1}], "alerts[0].retries"),
    ([{"type": "webhook", "min_severity": "urgent"}], "alerts[0].min_severity"),
    ({"type": "webhook"}, "alerts"),
])
def test_spec_errors_name_the_field(raw: Any, where: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(where)}"):
        parse_alert_specs(raw)


def test_make_notifier_errors_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_ENV", raising=False)
    cases = [
        (AlertSpec(type="webhook"), "alerts[1].url: required"),
        (AlertSpec(type="slack"), "alerts[1].url: required"),
        (AlertSpec(type="webhook", url="ftp://host/x"), "alerts[1].url: must be an http"),
        (AlertSpec(type="webhook", url="${NO_SUCH_KEY_ENV}"),
         "alerts[1].url: environment variable NO_SUCH_KEY_ENV"),
        (AlertSpec(type="webhook", url="http://h/", headers={"Authorization":
                                                             "Bearer ${NO_SUCH_KEY_ENV}"}),
         "alerts[1].headers.Authorization: environment variable NO_SUCH_KEY_ENV"),
        (AlertSpec(type="pagerduty"), "alerts[1].routing_key_env: required"),
        (AlertSpec(type="pagerduty", routing_key_env="NO_SUCH_KEY_ENV"),
         "alerts[1].routing_key_env: environment variable NO_SUCH_KEY_ENV is not set"),
        (AlertSpec(type="sms", url="http://h/"),  # type: ignore[arg-type]
         "alerts[1].type: unknown notifier type 'sms'"),
    ]
    for spec, message in cases:
        with pytest.raises(ConfigError) as info:
            make_notifier(spec, "alerts[1]")
        assert str(info.value).startswith(message), (spec, str(info.value))


def test_build_dispatcher_fails_before_starting_any_worker() -> None:
    before = threading.active_count()
    with pytest.raises(ConfigError, match=r"alerts\[1\]\.url"):
        build_dispatcher([AlertSpec(type="webhook", url="http://127.0.0.1:9/"),
                          AlertSpec(type="webhook")])
    assert threading.active_count() == before
