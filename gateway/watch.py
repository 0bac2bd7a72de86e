"""`gateway watch`: follow one rollout live, over the admin API only (from any machine).

Three parts, so the first two are tested without a gateway or a terminal:
- `Follower` (pure): which rollout is followed, and when it has ended;
- `build_frame` (pure): a status view -> one rich renderable (`render_text` for plain text);
- `watch`: the loop that polls `GET /admin/rollout`, redraws in place (rich.live) or streams
  JSON lines, rides out an unreachable gateway, and says how the rollout ended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import StringIO
from typing import Any, Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gateway.admin_client import AdminError
from gateway.status_view import (
    ACTIVE_PHASES,
    ENDED_PHASES,
    guard_rows,
    log_e_threshold,
    no_signal_guards,
    shorten,
    step_label,
    step_progress,
)

__all__ = ["Ended", "Follower", "build_frame", "render_text", "watch"]

PHASE_STYLE = {"loading": "cyan", "shadow": "cyan", "canary": "bold cyan",
               "paused": "bold yellow", "promoted": "bold green", "rolled_back": "bold red",
               "failed": "bold red", "idle": "dim"}
STATE_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}
BAR_WIDTH = 30


class StatusSource(Protocol):
    def status(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Ended:
    """How the followed rollout ended."""

    rollout_id: str | None
    outcome: str  # the phase it ended in, or "superseded" when another rollout replaced it
    reason: str

    def line(self) -> str:
        because = f": {self.reason}" if self.reason else ""
        return f"rollout {self.rollout_id or '-'} ended: {self.outcome}{because}"

    def to_dict(self) -> dict[str, Any]:
        return {"ended": True, "rollout_id": self.rollout_id, "outcome": self.outcome,
                "reason": self.reason}


class Follower:
    """Which rollout is being followed. The rollout running at the first look, else the next
    one to start; it has ended when its phase is an end phase (rolled_back, promoted, failed,
    idle) or another rollout id appears. A rollout that started and ended between two looks
    (a fast load failure) counts too: a new id already in an end phase."""

    def __init__(self) -> None:
        self._seen_first = False
        self._initial: str | None = None
        self.following: str | None = None

    def observe(self, view: Mapping[str, Any]) -> Ended | None:
        phase, rid = str(view.get("phase")), view.get("rollout_id")
        reason = str(view.get("reason") or "")
        if not self._seen_first:
            self._seen_first, self._initial = True, rid
            if phase in ACTIVE_PHASES:
                self.following = rid
            return None
        if self.following is not None:
            if rid != self.following:
                return Ended(self.following, "superseded",
                             f"rollout {rid} started" + (f" ({reason})" if reason else ""))
            if phase in ENDED_PHASES:
                return Ended(rid, phase, reason)
            return None
        if phase in ACTIVE_PHASES:
            self.following = rid
        elif phase in ENDED_PHASES and rid is not None and rid != self._initial:
            return Ended(rid, phase, reason)
        return None


def build_frame(view: Mapping[str, Any] | None, *, url: str, following: bool = True,
                error: str | None = None, down_for_s: float | None = None,
                now: float | None = None) -> RenderableType:
    """One screen: phase and step, models and weights, progress towards the step's gate,
    each guard's evidence, the last reason. `view` is the last status read (None before the
    first); `error` says the gateway is unreachable (the rest is then the last known view)."""
    clock = time.strftime("%H:%M:%S", time.localtime(now if now is not None else time.time()))
    parts: list[RenderableType] = [Text.assemble(("gateway watch ", "bold"), url,
                                                 ("   " + clock, "dim"))]
    if error is not None:
        since = f" for {down_for_s:.0f}s" if down_for_s is not None else ""
        parts.append(Text(f"UNREACHABLE{since}: {shorten(error, 160)} (retrying)",
                          style="bold red"))
    if view is None:
        parts.append(Text("waiting for the gateway's first answer", style="dim"))
        return Group(*parts)
    phase = str(view.get("phase"))
    if not following:
        last = view.get("rollout_id")
        parts.append(Text(f"no rollout running (the last: {last or 'none'}); waiting for the "
                          "next one (`gateway rollout start`)", style="dim"))
    parts.append(_phase_line(view, phase))
    parts.append(_models_line(view))
    parts.extend(_hold_lines(view))
    progress = _progress_grid(view)
    if progress is not None:
        parts.append(progress)
    guards = _guard_table(view)
    if guards is not None:
        parts.append(guards)
    registry = view.get("registry") or {}
    if registry and not registry.get("reachable", True):
        parts.append(Text(f"REGISTRY UNREACHABLE: {registry.get('error')}", style="bold red"))
    parts.extend(Text(f"note: {n}", style="yellow") for n in registry.get("notes") or [])
    if view.get("reason"):
        parts.append(Text.assemble(("reason: ", "bold"), shorten(str(view["reason"]), 300)))
    return Group(*parts)


def render_text(renderable: RenderableType, width: int = 120) -> str:
    """A renderable as plain text (tests, logs)."""
    console = Console(file=StringIO(), width=width, color_system=None, force_terminal=False,
                      legacy_windows=False)
    console.print(renderable)
    out = console.file
    assert isinstance(out, StringIO)
    return out.getvalue()


def _phase_line(view: Mapping[str, Any], phase: str) -> Text:
    line = Text.assemble(("phase ", "bold"), (phase, PHASE_STYLE.get(phase, "")))
    label = step_label(view)
    if label and label != phase:
        steps = view.get("steps") or []
        step = view.get("step")
        weight = (steps[step].get("weight") if isinstance(step, int) and step < len(steps)
                  and isinstance(steps[step], Mapping) else None)
        line.append(f"   {label}" + (f" ({weight:g}%)" if isinstance(weight, int | float)
                                      else ""))
    if view.get("paused_phase"):
        line.append(f"   paused in {view['paused_phase']}", style="yellow")
    if view.get("awaiting_promotion"):
        line.append("   awaiting `gateway promote`", style="bold yellow")
    if view.get("rollout_id"):
        line.append(f"   rollout {view['rollout_id']}", style="dim")
    return line


def _models_line(view: Mapping[str, Any]) -> Text:
    table = view.get("table") or {}
    champ, chall = view.get("champion") or {}, view.get("challenger") or {}
    weight = float(table.get("challenger_weight") or 0.0)
    return Text(f"champion v{champ.get('version', '-')}   challenger "
                f"v{chall.get('version', '-')}   weights {100 - weight:g}% / {weight:g}% "
                f"({table.get('mode')}, table v{table.get('version')})")


def _hold_lines(view: Mapping[str, Any]) -> list[Text]:
    holds = view.get("holds") or []
    if holds:
        return [Text(f"HELD ({', '.join(holds)}): the step clock is stopped", style="yellow")]
    if view.get("held"):
        return [Text("HELD: both arms degraded together (a shared incident); the step clock "
                     "is stopped", style="yellow")]
    return []


def _progress_grid(view: Mapping[str, Any]) -> Table | None:
    p = step_progress(view)
    if p is None:
        return None
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_row("requests", ProgressBar(total=1.0, completed=p.requests_fraction,
                                         width=BAR_WIDTH), p.requests_text())
    grid.add_row("time", ProgressBar(total=1.0, completed=p.time_fraction, width=BAR_WIDTH),
                 p.time_text())
    return grid


def _guard_table(view: Mapping[str, Any]) -> Table | None:
    rows = guard_rows(view, detail_width=60)
    if not rows:
        return None
    limit = log_e_threshold(view)
    table = Table(box=None, header_style="bold", pad_edge=False, caption_justify="left",
                  title_justify="left")
    if limit is not None:
        table.title = Text(f"guards (a test rejects at log e {limit:.2f})", style="bold")
    for name in ("guard", "state", "value vs threshold", "evidence", "n champion/challenger"):
        table.add_column(name, no_wrap=True)
    # The one column that gives way on a narrow terminal: cut to one line, never wrapped.
    table.add_column("detail")
    for r in rows:
        table.add_row(Text(r.guard), Text(r.state, style=STATE_STYLE.get(r.state, "")),
                      Text(r.value), Text(r.evidence or "-"), Text(r.n),
                      Text(r.detail, no_wrap=True, overflow="ellipsis"))
    quiet = no_signal_guards(view)
    if quiet:
        table.caption = Text(f"no signal yet: {', '.join(quiet)}", style="dim")
    return table


def watch(client: StatusSource, *, url: str, interval_s: float = 1.0,
          timeout_s: float | None = None, once: bool = False, json_lines: bool = False,
          console: Console | None = None, out: TextIO | None = None,
          sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> int:
    """Follow the running (else the next) rollout to its end; 0 when it ended (or after one
    frame with `once`). An unreachable gateway is retried, shown as such, until `timeout_s`
    (then AdminError); a refusal (4xx: a bad token, a wrong URL) raises at once."""
    console = console or Console()
    follower = Follower()
    state = _Loop(client, follower, timeout_s, clock)
    if once:
        view = client.status()
        follower.observe(view)
        if json_lines:
            print(json.dumps(view, sort_keys=True), file=out, flush=True)
        else:
            console.print(build_frame(view, url=url, following=follower.following is not None))
        return 0
    if json_lines:
        return _stream_json(state, interval_s, sleep, out)
    from rich.live import Live

    try:
        with Live(build_frame(None, url=url), console=console, auto_refresh=False,
                  transient=False) as live:
            while True:
                ended = state.poll()
                following = follower.following is not None or ended is not None
                live.update(build_frame(state.view, url=url, following=following,
                                        error=state.error, down_for_s=state.down_for()),
                            refresh=True)
                if ended is not None:
                    break
                sleep(interval_s)
    finally:
        if not console.is_terminal:  # Live ends its last frame with a newline on terminals only
            console.line()
    # One line however long (the terminal wraps it), so it can be grepped and copied whole.
    console.print(Text(ended.line(), style=PHASE_STYLE.get(ended.outcome, "bold")),
                  soft_wrap=True)
    return 0


class _Loop:
    """One poll at a time: the last view, whether the gateway answers, the give-up clock."""

    def __init__(self, client: StatusSource, follower: Follower, timeout_s: float | None,
                 clock: Callable[[], float]) -> None:
        self._client, self._follower, self._timeout_s = client, follower, timeout_s
        self._clock = clock
        self.view: dict[str, Any] | None = None
        self.error: str | None = None
        self._down_since: float | None = None

    def down_for(self) -> float | None:
        return None if self._down_since is None else self._clock() - self._down_since

    def poll(self) -> Ended | None:
        try:
            view = self._client.status()
        except AdminError as exc:
            if not exc.unreachable:
                raise
            now = self._clock()
            if self._down_since is None:
                self._down_since = now
            self.error = str(exc)
            if self._timeout_s is not None and now - self._down_since >= self._timeout_s:
                raise AdminError(f"gave up after {self._timeout_s:g}s without an answer: "
                                 f"{exc}") from exc
            return None
        self.view, self.error, self._down_since = view, None, None
        return self._follower.observe(view)


def _stream_json(state: _Loop, interval_s: float, sleep: Callable[[float], None],
                 out: TextIO | None) -> int:
    """One JSON object per line: each status that differs from the last printed, an
    `{"unreachable": true, "error": ...}` line when the gateway stops answering, and
    `{"ended": true, "rollout_id", "outcome", "reason"}` last."""
    last = None
    while True:
        ended = state.poll()
        if state.error is not None:
            line = json.dumps({"unreachable": True, "error": state.error}, sort_keys=True)
        else:
            line = json.dumps(state.view, sort_keys=True)
        if line != last:
            print(line, file=out, flush=True)
            last = line
        if ended is not None:
            print(json.dumps(ended.to_dict(), sort_keys=True), file=out, flush=True)
            return 0
        sleep(interval_s)
