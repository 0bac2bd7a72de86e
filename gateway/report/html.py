"""The rollout report: one self-contained HTML file from a timeline's dict.

`render_report(Timeline.to_dict())` (`gateway.control.timeline`) returns a page with inline
CSS and inline SVG charts only: it opens from a file, offline, and references nothing
outside itself (a Content-Security-Policy says so to the browser too). Every string that
came from the data is escaped. The one script, allowed by its hash, counts the charts into
`document.body.dataset.rendered` (what a browser test reads).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from gateway.report.svg import PALETTE, HLine, Marker, Series, bar_chart, fmt, line_chart

__all__ = ["render_report"]

NO_TRAFFIC = "no traffic judged"
_ARMS = (("champion", PALETTE[0]), ("challenger", PALETTE[1]))
_QUANTILE_DASH = (("p50_s", "p50", ""), ("p95_s", "p95", "5 3"), ("p99_s", "p99", "1 3"))

_SCRIPT = ("window.addEventListener('load', function () { document.body.dataset.rendered = "
           "String(document.querySelectorAll('svg.chart').length); });")
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
_CSP = (f"default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{_SCRIPT_HASH}'")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #222; padding: 0 16px; }
h1 { font-size: 1.5em; margin-bottom: 4px; }
h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { text-align: left; padding: 3px 10px 3px 0; vertical-align: top; }
table.grid th, table.grid td { border-bottom: 1px solid #eee; padding: 4px 8px; }
td.detail { max-width: 520px; word-break: break-word; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
          gap: 12px; }
svg.chart { width: 100%; height: auto; background: #fff; border: 1px solid #eee; }
.empty { color: #777; font-style: italic; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff;
         background: #777; font-size: 0.9em; }
.s-pass, .o-promoted { background: #2b9a48; }
.s-fail, .o-rolled_back, .o-load_failed, .o-failed { background: #c5221f; }
.s-inconclusive, .o-aborted, .o-superseded, .o-restored, .o-running { background: #b07b00; }
.note { color: #555; font-size: 0.85em; }
"""


def render_report(timeline: Mapping[str, Any]) -> str:
    """The whole report for `Timeline.to_dict()`; tolerant of missing or empty parts."""
    points: list[Mapping[str, Any]] = list(timeline.get("points") or [])
    events: list[Mapping[str, Any]] = list(timeline.get("events") or [])
    t0 = _origin(timeline, points, events)
    span = max([_f(p.get("t")) - t0 for p in points] + [_f(e.get("t")) - t0 for e in events]
               + [0.0])
    unit, unit_name = (60.0, "minutes") if span >= 1200 else (1.0, "seconds")
    x_label = f"{unit_name} since start"

    def x(t: Any) -> float:
        return (_f(t) - t0) / unit

    title = f"Rollout report: {timeline.get('model') or 'unknown model'}"
    body = [
        f"<h1>{escape(title)}</h1>",
        _summary(timeline),
        _steps(points, events, x, x_label),
        _traffic(points, x, x_label),
        _evidence(points, x, x_label),
        _distributions(timeline.get("distributions") or {}, bool(points)),
        _verdict(timeline.get("verdict")),
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(_CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        *body,
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ])


# ---- sections ------------------------------------------------------------------------------

def _summary(tl: Mapping[str, Any]) -> str:
    outcome = tl.get("outcome")
    started, ended = tl.get("started_at"), tl.get("ended_at")
    duration = (_duration(_f(ended) - _f(started))
                if started is not None and ended is not None else "")
    badge = (_badge("o", str(outcome)) if outcome
             else '<span class="badge o-running">running</span>')
    rows = [
        ("rollout", escape(str(tl.get("rollout_id") or "-"))),
        ("model", escape(str(tl.get("model") or "-"))),
        ("champion version", escape(str(tl.get("champion") or "-"))),
        ("challenger version", escape(str(tl.get("challenger") or "-"))),
        ("outcome", badge),
        ("started", escape(_when(started))),
        ("ended", escape(_when(ended))),
        ("duration", escape(duration or "-")),
        ("reason", escape(str(tl.get("reason") or "-"))),
    ]
    cells = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<section id="summary"><table>{cells}</table></section>'


def _steps(points: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]],
           x: Callable[[Any], float], x_label: str) -> str:
    out = ['<section id="steps"><h2>Steps and events</h2>']
    if points:
        # a stable sort by time: a transition comes after the look it was decided on
        timed = sorted([(x(p.get("t")), _f(p.get("weight"))) for p in points]
                       + [(x(e.get("t")), _f(e.get("weight"))) for e in events],
                       key=lambda xy: xy[0])
        markers = [Marker(x(e.get("t")), str(e.get("name", "")),
                          f"{e.get('name', '')}: {e.get('reason', '')}") for e in events]
        out.append(line_chart([Series("challenger weight", timed, PALETTE[1], step=True)],
                              title="Challenger traffic weight", x_label=x_label,
                              y_label="weight", y_unit="%", markers=markers, y_min=0.0,
                              width=1100, height=230))
    else:
        out.append(f'<p class="empty">{NO_TRAFFIC}</p>')
    if events:
        rows = "\n".join(
            f"<tr><td>{escape(fmt(x(e.get('t'))))}</td><td>{escape(str(e.get('name', '')))}"
            f"</td><td>{escape(fmt(_f(e.get('weight'))))}%</td>"
            f"<td>{escape(str(e.get('actor', '')))}</td>"
            f'<td class="detail">{escape(str(e.get("reason", "")))}</td></tr>'
            for e in events)
        out.append(f'<table class="grid" id="events"><tr><th>{escape(x_label)}</th>'
                   f"<th>event</th><th>weight</th><th>actor</th><th>reason</th></tr>"
                   f"{rows}</table>")
    out.append("</section>")
    return "\n".join(out)


def _traffic(points: Sequence[Mapping[str, Any]], x: Callable[[Any], float],
             x_label: str) -> str:
    out = ['<section id="traffic"><h2>Traffic per arm</h2>']
    if not points:
        out += [f'<p class="empty">{NO_TRAFFIC}</p>', "</section>"]
        return "\n".join(out)
    rate, errors, latency = [], [], []
    for arm, color in _ARMS:
        r, e = _per_interval(points, arm, x)
        rate.append(Series(arm, r, color))
        errors.append(Series(arm, e, color))
        for key, q, dash in _QUANTILE_DASH:
            latency.append(Series(f"{arm} {q}", [
                (x(p.get("t")), _ms(p.get(arm, {}).get(key))) for p in points], color, dash))
    out.append('<div class="charts">')
    out.append(line_chart(rate, title="Request rate (per interval)", x_label=x_label,
                          y_label="requests/s", y_min=0.0))
    out.append(line_chart(errors, title="Error rate (server errors + timeouts, per interval)",
                          x_label=x_label, y_label="errors", y_unit="%", y_min=0.0))
    out.append(line_chart(latency, title="Latency of OK responses (cumulative quantiles)",
                          x_label=x_label, y_label="ms", y_min=0.0))
    out += ["</div>", "</section>"]
    return "\n".join(out)


def _evidence(points: Sequence[Mapping[str, Any]], x: Callable[[Any], float],
              x_label: str) -> str:
    out = ['<section id="evidence"><h2>Guard evidence</h2>']
    if not points:
        out += [f'<p class="empty">{NO_TRAFFIC}</p>', "</section>"]
        return "\n".join(out)
    thr = next((_f(p["log_threshold"]) for p in reversed(points)
                if p.get("log_threshold") is not None), None)
    names: list[str] = []
    for p in points:
        names += [n for n in (p.get("guards") or {}) if n not in names]
    charts = []
    for name in names:
        series = [(x(p.get("t")), _opt((p.get("guards") or {}).get(name, {}).get("statistic")))
                  for p in points]
        if all(y is None for _, y in series):
            continue  # no test statistic (no signal, or not a sequential test)
        last = next(g for p in reversed(points) if (g := (p.get("guards") or {}).get(name)))
        hl = [HLine(thr, f"rejects at log e {fmt(thr)}")] if thr is not None else []
        charts.append(line_chart(
            [Series("log e-value", series, PALETTE[4])], hlines=hl, x_label=x_label,
            title=f"{name}: {last.get('state', '')} (evidence against the challenger)",
            y_label="log e"))
    if charts:
        out.append('<p class="note">A guard\'s test rejects once its log e-value crosses the '
                   "dashed line, and stays rejected (anytime-valid: looking at every judge pass "
                   "is safe); some guards also need an effect size past their threshold "
                   "(drift: PSI), see the verdict.</p>")
        out += ['<div class="charts">', *charts, "</div>"]
    else:
        out.append('<p class="empty">no guard has a test statistic yet</p>')
    out.append("</section>")
    return "\n".join(out)


def _distributions(dists: Mapping[str, Any], judged: bool) -> str:
    out = ['<section id="distributions"><h2>Distributions</h2>']
    charts, notes = [], []
    for kind in ("output", "input"):
        d = dists.get(kind)
        if not d or not d.get("edges"):
            notes.append(f'<p class="empty">{escape(kind)}: '
                         f"{'no values recorded' if judged else NO_TRAFFIC}</p>")
            continue
        edges = [_opt(e) for e in d["edges"]]
        labels = [_bin_label(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
        groups = []
        for arm, _ in _ARMS:
            counts = [_f(c) for c in d.get(arm, [])]
            total = sum(counts)
            groups.append((f"{arm} (n={int(total)})",
                           [100 * c / total if total else 0.0 for c in counts]))
        psi = _opt(d.get("psi"))
        psi_txt = f"PSI {psi:.3f}" if psi is not None else "PSI n/a (one arm has no values)"
        charts.append(bar_chart(labels, groups, title=f"{kind} values: {psi_txt}",
                                y_label="share", y_unit="%"))
    if charts:
        out.append('<p class="note">Bins: the champion\'s equal-mass groups, as the drift '
                   "guards coarsen them; PSI over the whole rollout (the drift guards' own "
                   "value, on time-matched looks, is in the verdict).</p>")
        out += ['<div class="charts">', *charts, "</div>"]
    out += notes
    out.append("</section>")
    return "\n".join(out)


def _verdict(v: Mapping[str, Any] | None) -> str:
    out = ['<section id="verdict"><h2>Final verdict</h2>']
    if not v:
        out += ['<p class="empty">no verdict</p>', "</section>"]
        return "\n".join(out)
    flags = [k for k in ("catastrophic", "hold") if v.get(k)]
    out.append(f"<p>{_badge('s', str(v.get('state', '')))} action "
               f"{escape(str(v.get('action') or '-'))}, severity "
               f"{escape(str(v.get('severity') or '-'))}"
               f"{escape(''.join(f', {k}' for k in flags))}</p>")
    reasons = v.get("reasons") or []
    if reasons:
        out.append("<ul>" + "".join(f"<li>{escape(str(r))}</li>" for r in reasons) + "</ul>")
    rows = []
    for r in v.get("results") or []:
        cells = [escape(str(r.get("guard", ""))), _badge("s", str(r.get("state", ""))),
                 *(escape(_num_text(r.get(k))) for k in ("value", "threshold", "statistic",
                                                         "n_champion", "n_challenger"))]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells)
                    + f'<td class="detail">{escape(str(r.get("detail", "")))}</td></tr>')
    out.append('<table class="grid" id="results"><tr><th>guard</th><th>state</th>'
               "<th>value</th><th>threshold</th><th>statistic</th><th>n champion</th>"
               "<th>n challenger</th><th>detail</th></tr>" + "\n".join(rows) + "</table>")
    out.append("</section>")
    return "\n".join(out)


# ---- helpers ---------------------------------------------------------------------------------

def _per_interval(points: Sequence[Mapping[str, Any]], arm: str, x: Callable[[Any], float]
                  ) -> tuple[list[tuple[float, float | None]], list[tuple[float, float | None]]]:
    """Request rate (per second) and error rate (%) between consecutive looks, from the
    cumulative counts; a gap where counts went back (a judge restarted) or none arrived."""
    rate: list[tuple[float, float | None]] = []
    errors: list[tuple[float, float | None]] = []
    for prev, cur in itertools.pairwise(points):
        a, b = prev.get(arm) or {}, cur.get(arm) or {}
        dt = _f(cur.get("t")) - _f(prev.get("t"))
        dn = _f(b.get("requests")) - _f(a.get("requests"))
        de = _f(b.get("errors")) - _f(a.get("errors"))
        xc = x(cur.get("t"))
        rate.append((xc, dn / dt if dt > 0 and dn >= 0 else None))
        errors.append((xc, 100 * de / dn if dn > 0 and de >= 0 else None))
    return rate, errors


def _origin(tl: Mapping[str, Any], points: Sequence[Mapping[str, Any]],
            events: Sequence[Mapping[str, Any]]) -> float:
    if tl.get("started_at") is not None:
        return _f(tl["started_at"])
    times = [_f(p.get("t")) for p in points] + [_f(e.get("t")) for e in events]
    return min(times, default=0.0)


def _badge(prefix: str, value: str) -> str:
    slug = re.sub(r"[^a-z_]", "", value.lower())  # a class name from data: letters only
    return f'<span class="badge {prefix}-{slug}">{escape(value)}</span>'


def _bin_label(lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return "all"
    if lo is None:
        return f"< {fmt(hi or 0.0)}"
    if hi is None:
        return f"≥ {fmt(lo)}"
    return f"[{fmt(lo)}, {fmt(hi)})"


def _when(t: Any) -> str:
    if t is None:
        return "-"
    v = _f(t)
    if v > 1e8:  # seconds since the epoch
        return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"t={fmt(v)} s"


def _duration(s: float) -> str:
    if not math.isfinite(s) or s < 0:
        return "-"
    h, rem = divmod(round(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{s:.1f} s")


def _num_text(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return str(v) if isinstance(v, int) else fmt(v)


def _ms(v: Any) -> float | None:
    f = _opt(v)
    return None if f is None else 1000 * f


def _opt(v: Any) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _f(v: Any) -> float:
    f = _opt(v)
    return 0.0 if f is None else f
