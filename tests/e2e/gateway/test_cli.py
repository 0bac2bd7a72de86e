"""The CLI of the ML engineer who ships, against a live gateway: `gateway rollout start`
starts a rollout that reaches canary, `gateway status` shows the step's progress,
`gateway rollout abort` aborts it, `gateway watch` (a separate process on a terminal) waits
for the next rollout and follows a raising challenger to its rollback, and `gateway
history` lists both rollouts with their outcomes and who started them."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.control.store import VERDICT_TAG
from gateway.demo.models import Faults
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import Deployed, deployed, wait_for
from tests.e2e.gateway.rollout_helpers import HOLD_50, Sink, Traffic, judged_config, register

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _in_canary(app: Deployed, version: str) -> dict[str, Any] | None:
    s = app.status()
    ok = s["phase"] == "canary" and (s.get("challenger") or {}).get("version") == version
    return s if ok else None


class Terminal:
    """`gateway watch` in its own process, on a pseudo-terminal (so rich redraws in place,
    as for a person); everything it writes is kept, without escape codes, in `text()`."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = pty.openpty()
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "60"}
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", *argv],
                                     stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                                     env=env, close_fds=True)
        os.close(slave)
        self._master = master
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def text(self) -> str:
        return ANSI.sub("", b"".join(self._chunks).decode("utf-8", "replace"))

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._reader.join(5)
            os.close(self._master)


def _one_error_line(err: str) -> bool:
    """The CLI's error is one `error: ...` line and no traceback. (Ray's log monitor also
    writes the actors' log lines to this process's stderr: those are not the CLI's.)"""
    ours = [line for line in err.splitlines() if line.startswith("error: ")]
    return len(ours) == 1 and "Traceback" not in err


def test_start_status_abort_watch_and_history_from_the_cli(
        ray_serve: str, registry: ModelRegistry, models: dict[str, ModelRef], sink: Sink,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    healthy = register(registry, scale=1.01, what="cli: healthy")
    raising = register(registry, Faults(error_rate=1.0), what="cli: raises")
    # Only errors are judged, and a late answer is not one: on a machine busy with other
    # tests a fresh replica's first calls can take seconds, and the healthy challenger must
    # stay in canary until it is aborted. (A raising one fails at once, whatever the limit.)
    cfg = judged_config("gw-cli", sink, HOLD_50, triggers=[{"guard": "error_rate"}],
                        timeouts={"challenger_s": 8.0})
    model, uri = registry.model_name, registry.tracking_uri
    with deployed(ray_serve, registry, models["v1"], None, cfg) as app, \
            Traffic(app.url, rate=30):
        rc, out, err = _cli(capsys, "rollout", "start", model, healthy.version,
                            "--tracking-uri", uri, "--actor", "alice", "--reason", "retrained",
                            "--json")
        assert (rc, err) == (0, ""), err
        assert json.loads(out)["version"] == healthy.version
        first = wait_for(lambda: _in_canary(app, healthy.version), 90, "canary")

        # status: the step's gate and how far along it is, as JSON and in words
        def progressing() -> dict[str, Any] | None:
            rc, out, _ = _cli(capsys, "status", "--json", "--url", app.url)
            assert rc == 0
            view = json.loads(out)
            p = view.get("progress") or {}
            return view if p.get("requests", 0) > 0 and view.get("verdict") else None

        view = wait_for(progressing, 30, "requests counted towards the step")
        p = view["progress"]
        assert (p["min_requests"], p["min_duration_s"], p["weight"]) == (10**9, 10**6, 50.0)
        assert view["rollout_id"] == first["rollout_id"]
        rc, out, _ = _cli(capsys, "status", "--url", app.url)
        assert rc == 0 and "progress (canary at 50%): requests " in out
        assert "registry aliases:" in out and "evidence" in out and "error_rate" in out

        rc, out, err = _cli(capsys, "rollout", "abort", model, "--tracking-uri", uri,
                            "--actor", "bob", "--reason", "changed my mind")
        assert (rc, err) == (0, ""), err
        assert f"(v{healthy.version}) deleted" in out
        aborted = app.wait_phase("rolled_back", 30)
        assert aborted["rollout_id"] == first["rollout_id"]
        assert "challenger alias deleted" in aborted["reason"]
        wait_for(lambda: registry.get_version_tags(healthy.version).get(VERDICT_TAG)
                 == "aborted", 20, "the aborted verdict tag")
        rc, _, err = _cli(capsys, "rollout", "start", model, healthy.version,
                          "--tracking-uri", uri)
        assert rc == 2 and _one_error_line(err) and "already judged (aborted" in err

        # watch: waits (no rollout runs), then follows the next one to its end
        term = Terminal(["watch", "--url", app.url, "--interval", "0.2", "--timeout", "60"])
        wait_for(lambda: "no rollout running" in term.text(), 60, "the watch to be waiting",
                 detail=lambda: term.text()[-500:])
        rc, _, err = _cli(capsys, "rollout", "start", model, raising.version,
                          "--tracking-uri", uri, "--actor", "carol")
        assert (rc, err) == (0, ""), err
        assert term.wait(120) == 0, term.text()[-2000:]
        screen = term.text()
        # it followed it (frames of the rollout before its end)
        phases = set(re.findall(r"(loading|shadow|canary)", screen))
        assert phases, [line for line in screen.splitlines() if "phase" in line][-20:]
        ended = screen.strip().splitlines()[-1]
        assert re.match(rf"rollout {re.escape(model)}-v{raising.version}-\w+ ended: "
                        "rolled_back: ", ended), ended
        assert "error_rate" in ended or "consecutive" in ended

        # report: the ended rollout's page, written to a file
        page = tmp_path / "report.html"
        rc, out, err = _cli(capsys, "report", "--url", app.url, "-o", str(page), "--json")
        assert (rc, err) == (0, ""), err
        assert json.loads(out)["bytes"] == page.stat().st_size > 10_000
        assert "rolled_back" in page.read_text(encoding="utf-8")
        rc, _, err = _cli(capsys, "report", "--url", app.url, "--rollout", "nope-v1-0",
                          "-o", str(tmp_path / "none.html"))
        assert rc == 2 and _one_error_line(err) and "404" in err

    # history: both rollouts, newest first, with outcome and who started them
    def both() -> list[dict[str, Any]] | None:
        rc, out, _ = _cli(capsys, "history", model, "--json", "--tracking-uri", uri)
        assert rc == 0
        rows = [r for r in json.loads(out) if r["outcome"] != "running"]
        return rows if len(rows) >= 2 else None

    rows = wait_for(both, 30, "both rollout runs finished in MLflow")
    newest, older = rows[0], rows[1]
    assert (newest["challenger_version"], newest["outcome"], newest["started_by"]) == (
        raising.version, "rolled_back", "carol")
    assert (older["challenger_version"], older["outcome"], older["started_by"]) == (
        healthy.version, "aborted", "alice")
    assert older["rollout_id"] == first["rollout_id"] and older["start_reason"] == "retrained"
    assert {newest["champion_version"], older["champion_version"]} == {models["v1"].version}
    rc, out, _ = _cli(capsys, "history", model, "--tracking-uri", uri)
    assert rc == 0 and "rolled_back" in out and "aborted" in out and "carol" in out
