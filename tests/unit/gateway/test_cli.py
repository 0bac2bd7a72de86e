"""The `gateway` CLI without a gateway: argument parsing and one-line errors, the watch's
follower, frames and loop (on scripted status views, and on the real supervisor's status
driven through a rollout), and `rollout start|abort` and `history` against a real MLflow
store on SQLite in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from rich.console import Console

from gateway import cli
from gateway.admin_client import AdminClient, AdminError, format_status
from gateway.history import DEFAULT_EXPERIMENT, read_history, started_by
from gateway.rollout_alias import VERDICT_TAG, cli_tracking_uri
from gateway.status_view import shorten, step_progress, text_bar
from gateway.watch import Ended, Follower, build_frame, render_text, watch
from model_registry.history import AliasEvent
from model_registry.refs import CHALLENGER, CHAMPION
from model_registry.registry import ModelRegistry

# --- arguments and errors -------------------------------------------------------------------


def test_every_command_but_serve_and_demo_takes_json() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = dict(sub.choices.items())  # type: ignore[union-attr]
    assert {"status", "watch", "rollout", "history", "promote", "rollback", "pause",
            "resume"} <= set(commands)
    for name in ("status", "watch", "history", "promote", "rollback", "pause", "resume"):
        assert commands[name].parse_args(["--json"]).json is True, name
    assert parser.parse_args(["rollout", "start", "m", "3", "--json"]).json is True
    assert parser.parse_args(["rollout", "abort", "m", "--json"]).json is True


def test_watch_rollout_and_history_arguments() -> None:
    parser = cli.build_parser()
    w = parser.parse_args(["watch"])
    assert (w.url, w.interval, w.timeout, w.once, w.json) == (
        "http://127.0.0.1:8000", 1.0, None, False, False)
    w = parser.parse_args(["watch", "--url", "http://gw:8000", "--interval", "0.2",
                           "--timeout", "30", "--once"])
    assert (w.url, w.interval, w.timeout, w.once) == ("http://gw:8000", 0.2, 30.0, True)
    s = parser.parse_args(["rollout", "start", "fraud", "7", "--reason", "retrained",
                           "--actor", "alice", "--tracking-uri", "sqlite:///x.db"])
    assert (s.model, s.version, s.reason, s.actor, s.tracking_uri) == (
        "fraud", "7", "retrained", "alice", "sqlite:///x.db")
    a = parser.parse_args(["rollout", "abort", "fraud", "--reason", "bad"])
    assert (a.model, a.reason) == ("fraud", "bad")
    h = parser.parse_args(["history"])
    assert (h.model, h.limit, h.experiment) == (None, 20, DEFAULT_EXPERIMENT)
    assert parser.parse_args(["history", "fraud", "--limit", "5"]).limit == 5


def test_the_cli_reads_the_rollout_experiment_the_supervisor_writes() -> None:
    from gateway.config import SupervisorConfig
    from gateway.control.store import VERDICT_TAG as STORE_VERDICT_TAG

    assert SupervisorConfig().rollout_experiment == DEFAULT_EXPERIMENT
    assert VERDICT_TAG == STORE_VERDICT_TAG


@pytest.mark.parametrize("argv", [["watch", "--interval", "0"], ["watch", "--timeout", "x"],
                                  ["history", "--limit", "-1"], ["rollout", "start", "m"],
                                  ["rollout"], ["nonsense"]])
def test_usage_errors_are_one_line_with_exit_2(argv: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err


def test_an_unreachable_gateway_is_one_line_on_stderr_with_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status"], ["watch", "--once"], ["pause", "--json"]):
        assert cli.main([*argv, "--url", "http://127.0.0.1:9"]) == 2
        out = capsys.readouterr()
        assert out.out == "" and out.err.startswith("error: ") and out.err.count("\n") == 1
        assert "unreachable" in out.err


def test_an_unexpected_failure_is_one_line_unless_debugging(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(self: AdminClient) -> dict[str, Any]:
        raise RuntimeError("a bug\nwith two lines")

    monkeypatch.setattr(AdminClient, "status", boom)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.main(["status"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: RuntimeError: a bug with two lines (set GATEWAY_DEBUG=1 for the "
                   "traceback)\n")
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(RuntimeError):
        cli.main(["status"])


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: AdminClient) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr(AdminClient, "status", interrupted)
    assert cli.main(["watch", "--interval", "0.01"]) == 130


def test_a_non_json_answer_is_not_taken_for_the_admin_api() -> None:
    import httpx

    client = AdminClient("http://gw")
    client._http = httpx.Client(base_url="http://gw", transport=httpx.MockTransport(
        lambda request: httpx.Response(200, text="<html>hello</html>")))
    with pytest.raises(AdminError, match="not the gateway's admin API") as exc:
        client.status()
    assert not exc.value.unreachable
    client._http = httpx.Client(base_url="http://gw", transport=httpx.MockTransport(
        lambda request: httpx.Response(401, json={"error": {"message": "no token"}})))
    with pytest.raises(AdminError, match="401 no token") as exc:
        client.status()
    assert exc.value.status_code == 401 and not exc.value.unreachable
    assert AdminError("x", 503).unreachable and AdminError("x").unreachable


def test_serves_own_404_before_the_app_is_deployed_is_retried_not_fatal() -> None:
    """Serve's proxy answers 404 in plain text while the gateway app is still deploying:
    `watch` keeps waiting (a 404 from the gateway itself is JSON and final)."""
    import httpx

    client = AdminClient("http://gw")
    client._http = httpx.Client(base_url="http://gw", transport=httpx.MockTransport(
        lambda request: httpx.Response(404, text="Path '/admin/rollout' not found. Ping "
                                                 "http://.../-/routes for available routes.")))
    with pytest.raises(AdminError, match="no gateway app there") as exc:
        client.status()
    assert exc.value.unreachable
    client._http = httpx.Client(base_url="http://gw", transport=httpx.MockTransport(
        lambda request: httpx.Response(404, json={"error": {"message": "no report"}})))
    with pytest.raises(AdminError, match="404 no report") as exc:
        client.report("r-1")
    assert exc.value.status_code == 404 and not exc.value.unreachable


# --- status views ---------------------------------------------------------------------------

RESULTS = [
    {"guard": "catastrophic", "state": "pass", "value": 0.0, "threshold": 5.0,
     "statistic": None, "n_champion": 0, "n_challenger": 120,
     "detail": "run of consecutive server errors/timeouts: 0 (limit 5)", "signal": True},
    {"guard": "error_rate", "state": "inconclusive", "value": 0.0125, "threshold": 0.01,
     "statistic": 1.2345, "n_champion": 2400, "n_challenger": 120,
     "detail": "challenger 3/120 = 2.5000% vs champion 4/2400 = 0.1667%; " + "x" * 200,
     "signal": True},
    {"guard": "kpi", "state": "inconclusive", "value": None, "threshold": 0.05,
     "statistic": None, "n_champion": 0, "n_challenger": 0, "detail": "no data: no KPI feedback",
     "signal": False},
]
CANARY = {"phase": "canary", "rollout_id": "fraud-v2-0123abcd", "step": 1,
          "steps": [{"weight": 5.0}, {"weight": 25.0}, {"weight": 50.0}], "held": False,
          "reason": "step 1 passed", "table": {"version": 9, "challenger_weight": 25.0,
                                                "mode": "split"},
          "champion": {"version": "1"}, "challenger": {"version": "2"},
          "judge": {"looks_judged": 40, "tests": 9, "alpha_per_test": 0.01 / 9},
          "progress": {"requests": 120, "min_requests": 500, "elapsed_s": 45.0,
                       "min_duration_s": 60.0, "weight": 25.0},
          "verdict": {"state": "inconclusive", "results": RESULTS}}


def test_status_shows_the_steps_progress_and_each_guards_evidence() -> None:
    text = format_status(CANARY)
    assert "phase: canary step 2/3" in text and "guards: catastrophic=pass" in text
    assert "progress (canary at 25%): requests 120/500 [##--------]" in text
    assert "time 45/60 s [########--]" in text
    line = next(x for x in text.splitlines() if x.strip().startswith("error_rate"))
    assert "inconclusive" in line and "1.25% vs 1.00%" in line
    # rejects at log(1 / alpha per test) = log(900)
    assert "log e 1.23 / 6.80" in line and "n 2,400 / 120" in line
    assert "evidence (a test rejects at log e 6.80):" in text
    detail = next(x for x in text.splitlines() if "challenger 3/120" in x)
    assert detail.endswith("…") and len(detail) < 100
    assert "kpi" not in text  # no signal: not judged, not shown


def test_status_outside_a_step_has_no_progress_and_a_shadow_phase_says_so() -> None:
    text = format_status(CANARY | {"phase": "rolled_back", "step": None, "progress": None})
    assert "progress" not in text and text.startswith("phase: rolled_back   table v9")
    shadow = format_status(CANARY | {"phase": "shadow", "step": 0})
    assert shadow.startswith("phase: shadow   table")


def test_view_helpers() -> None:
    assert text_bar(0.0, 4) == "[----]" and text_bar(2.0, 4) == "[####]"
    assert shorten("a  b\nc", 10) == "a b c" and shorten("abcdef", 4) == "abc…"
    p = step_progress({"progress": {"requests": 50, "min_requests": 0, "elapsed_s": 400.0,
                                    "min_duration_s": 900.0, "weight": 5.0}})
    assert p is not None and p.requests_fraction == 1.0 and p.time_text() == "6.7/15 min"
    assert step_progress({"progress": {"requests": "x"}}) is None
    assert step_progress({}) is None


def test_a_frame_shows_phase_step_bars_guard_table_and_reason() -> None:
    text = render_text(build_frame(CANARY, url="http://gw:8000", now=0.0), width=140)
    assert "phase canary   step 2/3 (25%)   rollout fraud-v2-0123abcd" in text
    assert "champion v1   challenger v2   weights 75% / 25% (split, table v9)" in text
    requests = next(x for x in text.splitlines() if x.startswith("requests"))
    assert "120/500" in requests and "━" in requests
    assert "45/60 s" in text
    row = next(x for x in text.splitlines() if x.startswith("error_rate"))
    assert "inconclusive" in row and "1.25% vs 1.00%" in row and "log e 1.23 / 6.80" in row
    assert "2,400 / 120" in row
    assert "no signal yet: kpi" in text and "reason: step 1 passed" in text
    assert "UNREACHABLE" not in text and "waiting" not in text


def test_a_frame_says_unreachable_and_waiting() -> None:
    down = render_text(build_frame(CANARY, url="http://gw", error="GET /admin/rollout: "
                                   "unreachable (refused)", down_for_s=12.0, now=0.0))
    assert "UNREACHABLE for 12s: GET /admin/rollout: unreachable (refused) (retrying)" in down
    assert "phase canary" in down  # the last known view stays on screen
    idle = CANARY | {"phase": "promoted", "progress": None, "step": None}
    waiting = render_text(build_frame(idle, url="http://gw", following=False, now=0.0))
    assert "no rollout running (the last: fraud-v2-0123abcd); waiting" in waiting
    first = render_text(build_frame(None, url="http://gw", now=0.0))
    assert "waiting for the gateway's first answer" in first


def test_markup_in_a_reason_is_shown_as_written() -> None:
    text = render_text(build_frame(CANARY | {"reason": "[bold]not markup[/bold]"}, url="u",
                                   now=0.0))
    assert "[bold]not markup[/bold]" in text


# --- following a rollout ---------------------------------------------------------------------


def _view(phase: str, rid: str | None, reason: str = "") -> dict[str, Any]:
    return {"phase": phase, "rollout_id": rid, "reason": reason}


def test_the_follower_follows_the_running_rollout_to_its_end() -> None:
    f = Follower()
    assert f.observe(_view("canary", "r1")) is None and f.following == "r1"
    assert f.observe(_view("paused", "r1")) is None
    assert f.observe(_view("rolled_back", "r1", "error_rate: worse")) == Ended(
        "r1", "rolled_back", "error_rate: worse")


def test_the_follower_waits_for_the_next_rollout() -> None:
    f = Follower()
    assert f.observe(_view("promoted", "r0")) is None and f.following is None
    assert f.observe(_view("promoted", "r0")) is None
    assert f.observe(_view("loading", "r1")) is None and f.following == "r1"
    assert f.observe(_view("promoted", "r1", "every step passed")) == Ended(
        "r1", "promoted", "every step passed")


def test_a_rollout_that_ended_between_two_looks_and_a_superseded_one_end_the_watch() -> None:
    f = Follower()
    f.observe(_view("idle", None))
    assert f.observe(_view("failed", "r1", "load failed")) == Ended("r1", "failed",
                                                                    "load failed")
    g = Follower()
    g.observe(_view("canary", "r1"))
    ended = g.observe(_view("loading", "r2", "superseded"))
    assert ended is not None and (ended.rollout_id, ended.outcome) == ("r1", "superseded")
    assert "rollout r2 started" in ended.reason


class Script:
    """A gateway answering from a list: views, or AdminErrors to raise."""

    def __init__(self, answers: list[dict[str, Any] | AdminError]) -> None:
        self.answers = answers
        self.calls = 0

    def status(self) -> dict[str, Any]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, AdminError):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, s: float) -> None:
        self.now += s


def _console() -> Console:
    from io import StringIO

    return Console(file=StringIO(), width=140, color_system=None, force_terminal=False)


def _out(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_watch_rides_out_an_unreachable_gateway_and_ends_with_the_outcome() -> None:
    down = AdminError("http://gw/admin/rollout: unreachable (ConnectError)")
    script = Script([_view("idle", None), down, down,
                     CANARY, CANARY | {"phase": "rolled_back", "progress": None,
                                       "reason": "error_rate: challenger worse " + "x" * 150}])
    clock, console = Clock(), _console()
    rc = watch(script, url="http://gw", interval_s=0.5, timeout_s=5.0, console=console,
               sleep=clock.sleep, clock=lambda: clock.now)
    assert rc == 0 and script.calls == 5 and clock.now == 2.0
    text = _out(console)
    assert text.splitlines()[-1] == ("rollout fraud-v2-0123abcd ended: rolled_back: "
                                     "error_rate: challenger worse " + "x" * 150)
    assert "phase rolled_back" in text  # the last frame stays printed


def test_watch_gives_up_after_its_timeout_and_stops_at_once_on_a_refusal() -> None:
    down = AdminError("unreachable")
    clock = Clock()
    with pytest.raises(AdminError, match="gave up after 2s without an answer: unreachable"):
        watch(Script([down]), url="u", interval_s=1.0, timeout_s=2.0, console=_console(),
              sleep=clock.sleep, clock=lambda: clock.now)
    with pytest.raises(AdminError, match="403"):
        watch(Script([AdminError("GET /admin/rollout: 403 bad token", 403)]), url="u",
              console=_console(), sleep=Clock().sleep)


def test_watch_json_streams_each_change_then_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    down = AdminError("unreachable")
    script = Script([CANARY, CANARY, down, down, CANARY,
                     CANARY | {"phase": "promoted", "reason": "all steps passed"}])
    assert watch(script, url="u", json_lines=True, sleep=Clock().sleep) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x.get("phase") or ("down" if x.get("unreachable") else x.get("outcome"))
            for x in lines] == ["canary", "down", "canary", "promoted", "promoted"]
    assert lines[-1] == {"ended": True, "rollout_id": "fraud-v2-0123abcd",
                         "outcome": "promoted", "reason": "all steps passed"}


def test_watch_once_prints_one_frame(capsys: pytest.CaptureFixture[str]) -> None:
    console = _console()
    script = Script([CANARY])
    assert watch(script, url="u", once=True, console=console) == 0
    assert script.calls == 1 and "phase canary" in _out(console)
    assert watch(Script([CANARY]), url="u", once=True, json_lines=True) == 0
    assert json.loads(capsys.readouterr().out)["rollout_id"] == "fraud-v2-0123abcd"


def test_the_real_supervisors_status_through_a_watched_rollout() -> None:
    """The frames and the follower read what the supervisor's `status()` really says, from
    the challenger alias to a rollback."""
    from tests.unit.gateway.control.test_supervisor import HOLD_10, World

    async def scenario() -> list[tuple[dict[str, Any], str]]:
        world = World(HOLD_10)
        sup = world.supervisor()
        seen = [await sup.status()]
        await world.canary(sup)
        world.clock.advance(3.0)
        await world.flush(sup)
        seen.append(await sup.status())
        await world.flush(sup, challenger_err=0.5)
        seen.append(await sup.status())
        await sup.shutdown()
        return [(v, format_status(v)) for v in seen]

    (idle, _), (canary, canary_text), (rolled, _) = asyncio.run(
        asyncio.wait_for(scenario(), 60))
    follower = Follower()
    assert follower.observe(idle) is None and follower.following is None
    assert follower.observe(canary) is None and follower.following == canary["rollout_id"]
    ended = follower.observe(rolled)
    assert ended is not None and ended.outcome == "rolled_back"
    assert "error_rate" in ended.reason
    assert "progress (canary at 10%): requests 200/1,000,000,000" in canary_text
    assert "time 0.0/278 h" in canary_text  # 3 s of a 10**6 s step
    assert "log e" in canary_text and "n 200 / 200" in canary_text
    frame = render_text(build_frame(canary, url="u"), width=160)
    assert "step 1/1 (10%)" in frame and "200/1,000,000,000" in frame
    assert "error_rate" in frame and "log e" in frame


# --- registry: rollout start / abort, history --------------------------------------------------

MODEL = "cli-fraud"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real SQLite MLflow store with MODEL at versions 1-5 (champion v1) and `other` v1."""
    from model_registry.tracking import ensure_local_store

    folder = tmp_path_factory.mktemp("cli-mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    ensure_local_store(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name, count in ((MODEL, 5), ("other", 1)):
        client.create_registered_model(name)
        for _ in range(count):  # a version needs only a source to exist
            client.create_model_version(name, str(folder / "artifact"))
    ModelRegistry(MODEL, tracking_uri=uri).set_alias(CHAMPION, "1", actor="ops")
    yield uri


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_rollout_start_sets_the_challenger_alias_with_who_and_why(
        store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, "rollout", "start", MODEL, "2", "--tracking-uri", store,
                        "--actor", "alice", "--reason", "retrained", "--json")
    assert (rc, err) == (0, "")
    result = json.loads(out)
    assert (result["version"], result["previous_challenger"], result["champion"]) == (
        "2", None, "1")
    registry = ModelRegistry(MODEL, tracking_uri=store)
    assert registry.alias_version(CHALLENGER) == "2"
    last = registry.alias_history(CHALLENGER)[-1]
    assert (last.version, last.actor, last.reason) == ("2", "alice", "retrained")
    # the same again, the champion, a missing version, a missing model: one line, exit 2
    for version, words in (("2", "already points at version 2"), ("1", "is the champion"),
                           ("99", "'99' of registered model 'cli-fraud' not found"),
                           ("x", "does not exist")):
        rc, out, err = _run(capsys, "rollout", "start", MODEL, version, "--tracking-uri", store)
        assert rc == 2 and out == "" and words in err and err.count("\n") == 1, err
    rc, _, err = _run(capsys, "rollout", "start", "no-such-model", "1", "--tracking-uri", store)
    assert rc == 2 and "no-such-model" in err and err.count("\n") == 1
    # moving it on supersedes the running rollout, and says so
    rc, out, _ = _run(capsys, "rollout", "start", MODEL, "3", "--tracking-uri", store)
    assert rc == 0 and "it pointed at v2: that rollout is superseded" in out
    # abort deletes it; with nothing to abort, exit 2
    rc, out, _ = _run(capsys, "rollout", "abort", MODEL, "--tracking-uri", store, "--actor",
                      "bob", "--reason", "enough", "--json")
    assert rc == 0 and json.loads(out)["version"] == "3"
    assert registry.alias_version(CHALLENGER) is None
    last = registry.alias_history(CHALLENGER)[-1]
    assert (last.version, last.previous, last.actor, last.reason) == (None, "3", "bob", "enough")
    rc, _, err = _run(capsys, "rollout", "abort", MODEL, "--tracking-uri", store)
    assert rc == 2 and "no rollout to abort" in err


def test_a_judged_version_is_refused_with_its_verdict(
        store: str, capsys: pytest.CaptureFixture[str]) -> None:
    registry = ModelRegistry(MODEL, tracking_uri=store)
    registry.set_version_tag("4", VERDICT_TAG, "rolled_back")
    registry.set_version_tag("4", "gateway.reason", "error_rate: challenger worse")
    rc, out, err = _run(capsys, "rollout", "start", MODEL, "4", "--tracking-uri", store)
    assert rc == 2 and out == ""
    assert "already judged (rolled_back: error_rate: challenger worse)" in err
    assert registry.alias_version(CHALLENGER) != "4"


def test_the_tracking_uri_defaults_like_serve_and_a_missing_store_is_an_error(
        store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rc, _, err = _run(capsys, "history")
    assert rc == 2 and f"no MLflow store at {tmp_path.resolve()}/.gateway/mlflow.db" in err
    assert not (tmp_path / ".gateway").exists()  # nothing created by a read
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    assert cli_tracking_uri(None) == store
    assert cli_tracking_uri("sqlite:///" + store.split("///", 1)[1]) == store
    assert cli_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"


def _finished_run(uri: str, rollout_id: str, model: str, champion: str, challenger: str,
                  outcome: str, reason: str, verdict: dict[str, Any] | None) -> None:
    from gateway.control.rollout_run import RolloutRun

    run = RolloutRun.start(uri, DEFAULT_EXPERIMENT, rollout_id, model, champion, challenger,
                           {"steps": [{"weight": 5.0}]})
    time.sleep(0.02)
    run.finish(outcome, reason, verdict)


def test_history_lists_rollouts_newest_first_with_outcome_and_who_started_them(
        store: str, capsys: pytest.CaptureFixture[str]) -> None:
    registry = ModelRegistry(MODEL, tracking_uri=store)
    rc, _, err = _run(capsys, "history", MODEL, "--tracking-uri", store, "--experiment", "none")
    assert (rc, err) == (0, "")
    registry.set_alias(CHALLENGER, "5", actor="carol", reason="new features")
    _finished_run(store, f"{MODEL}-v5-aaaa1111", MODEL, "1", "5", "rolled_back",
                  "[significant] error_rate: challenger 9/100 vs champion 1/1000",
                  {"state": "fail", "results": []})
    _finished_run(store, "other-v1-bbbb2222", "other", "1", "1", "aborted",
                  "challenger alias deleted during the rollout", None)
    _finished_run(store, f"{MODEL}-v5-cccc3333", MODEL, "1", "5", "promoted", "every step "
                  "passed", {"state": "pass", "results": []})
    rc, out, _ = _run(capsys, "history", MODEL, "--tracking-uri", store, "--json")
    assert rc == 0
    rows = json.loads(out)
    assert [r["rollout_id"] for r in rows] == [f"{MODEL}-v5-cccc3333", f"{MODEL}-v5-aaaa1111"]
    newest, older = rows
    assert (newest["outcome"], newest["verdict"], newest["started_by"]) == (
        "promoted", "pass", "carol")
    assert (older["outcome"], older["champion_version"], older["challenger_version"]) == (
        "rolled_back", "1", "5")
    assert older["reason"].startswith("[significant] error_rate: challenger 9/100")
    assert older["start_reason"] == "new features" and older["duration_s"] >= 0.02
    assert older["ended_at"] >= older["started_at"]
    everything = read_history(store, None, limit=10)
    assert [r.model for r in everything] == [MODEL, "other", MODEL]
    assert everything[1].started_by is None  # no alias move recorded for it
    assert len(read_history(store, MODEL, limit=1)) == 1
    rc, out, _ = _run(capsys, "history", "--tracking-uri", store)
    assert rc == 0
    header = out.splitlines()[0].split()
    assert header == ["rollout", "versions", "outcome", "started", "duration", "by", "reason"]
    row = next(x for x in out.splitlines() if "aaaa1111" in x)
    assert "v1 -> v5" in row and "rolled_back" in row and "carol" in row
    assert "[significant] error_rate" in row  # a reason is text, never rich markup


def test_who_started_a_rollout_is_the_last_matching_alias_move_before_it() -> None:
    events = [AliasEvent(1, CHALLENGER, "5", None, "alice", "first", 100.0),
              AliasEvent(2, CHALLENGER, "6", "5", "bob", "next", 200.0),
              AliasEvent(3, CHAMPION, "6", "1", "carol", "by hand", 300.0),
              AliasEvent(4, CHALLENGER, "5", None, "dave", "much later", 10_000.0)]
    found = started_by(events, CHALLENGER, "5", 150.0)
    assert found is not None and found.actor == "alice"
    found = started_by(events, CHAMPION, "6", 301.0)
    assert found is not None and found.actor == "carol"
    assert started_by(events, CHALLENGER, "7", 150.0) is None
    assert started_by(events, CHALLENGER, None, 150.0) is None


def test_history_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, "history", "--tracking-uri", "http://127.0.0.1:9")
    assert rc == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1
