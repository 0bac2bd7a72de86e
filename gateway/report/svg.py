"""Tiny inline-SVG charts for the rollout report: no dependencies, no script.

`line_chart` draws several series over one x axis (None is a gap; `step=True` holds each
value until the next x, for traffic weights), horizontal threshold lines and vertical event
markers; `bar_chart` draws grouped bars (one group per category, one bar per arm). Every
chart is an `<svg class="chart">` that scales to its container (`viewBox`). All text is
escaped here, so callers pass raw strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["PALETTE", "HLine", "Marker", "Series", "bar_chart", "fmt", "line_chart",
           "nice_ticks"]

PALETTE = ("#1f6fb4", "#e8710a", "#2b9a48", "#c5221f", "#7b3fb2", "#8c564b")
_FONT = 11
_CHAR_W = 6.2  # approximate width of a character at _FONT, for legend layout


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float | None]]  # (x, y); y None is a gap
    color: str = ""  # default: PALETTE by position
    dash: str = ""  # SVG stroke-dasharray, e.g. "4 3"
    step: bool = False  # hold each y until the next x


@dataclass(frozen=True)
class HLine:
    y: float
    label: str
    color: str = "#c5221f"


@dataclass(frozen=True)
class Marker:
    x: float
    label: str
    title: str = ""  # the tooltip; default the label
    color: str = "#888"


def fmt(v: float) -> str:
    """A short label for a number: up to 4 significant digits, no exponent in between."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        return f"{v:.2g}"
    return f"{v:.4g}" if a < 1000 else f"{v:.0f}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + step * 1e-9:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks


@dataclass(frozen=True)
class _Frame:
    """The plot area inside the chart and the data range it maps."""

    left: float
    top: float
    width: float
    height: float
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, v: float) -> float:
        return self.left + (v - self.x0) / (self.x1 - self.x0) * self.width

    def y(self, v: float) -> float:
        return self.top + self.height - (v - self.y0) / (self.y1 - self.y0) * self.height


def _span(values: Sequence[float], lo: float | None, hi: float | None) -> tuple[float, float]:
    a = lo if lo is not None else min(values, default=0.0)
    b = hi if hi is not None else max(values, default=1.0)
    if b <= a:  # one value: give it some room, on the side that is not fixed
        pad = abs(a) * 0.1 or 1.0
        if hi is not None:
            a = b - pad
        else:
            b = a + pad
            if lo is None:
                a -= pad
    return a, b


def _text(x: float, y: float, s: str, anchor: str = "start", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>'
            f"{escape(s)}</text>")


def _open(title: str, width: int, height: int) -> list[str]:
    return [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(title)}" font-size="{_FONT}" font-family="sans-serif">',
            f"<title>{escape(title)}</title>",
            _text(8, 16, title, extra=' font-weight="bold"')]


def _legend(names: Sequence[tuple[str, str, str]], left: float, top: float,
            width: float) -> tuple[list[str], float]:
    """Legend entries (name, color, dash) in rows from (left, top); returns the height."""
    out, x, y = [], left, top
    for name, color, dash in names:
        w = 26 + len(name) * _CHAR_W + 14
        if x + w > left + width and x > left:
            x, y = left, y + 16
        d = f' stroke-dasharray="{escape(dash)}"' if dash else ""
        out.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 20:.1f}" y2="{y - 4:.1f}" '
                   f'stroke="{escape(color)}" stroke-width="2.5"{d}/>')
        out.append(_text(x + 25, y, name))
        x += w
    return out, (y - top + 16) if names else 0.0


def _axes(f: _Frame, x_label: str, y_label: str, y_fmt: str, x_ticks: bool = True) -> list[str]:
    out = [f'<rect x="{f.left:.1f}" y="{f.top:.1f}" width="{f.width:.1f}" '
           f'height="{f.height:.1f}" fill="none" stroke="#bbb"/>']
    for v in nice_ticks(f.y0, f.y1):
        y = f.y(v)
        out.append(f'<line x1="{f.left:.1f}" y1="{y:.1f}" x2="{f.left + f.width:.1f}" '
                   f'y2="{y:.1f}" stroke="#eee"/>')
        out.append(_text(f.left - 4, y + 4, fmt(v) + y_fmt, "end"))
    for v in nice_ticks(f.x0, f.x1, 6) if x_ticks else ():
        x = f.x(v)
        out.append(f'<line x1="{x:.1f}" y1="{f.top + f.height:.1f}" x2="{x:.1f}" '
                   f'y2="{f.top + f.height + 4:.1f}" stroke="#888"/>')
        out.append(_text(x, f.top + f.height + 16, fmt(v), "middle"))
    if x_label:
        out.append(_text(f.left + f.width / 2, f.top + f.height + 30, x_label, "middle"))
    if y_label:
        cx, cy = 12, f.top + f.height / 2
        out.append(_text(cx, cy, y_label, "middle", f' transform="rotate(-90 {cx} {cy:.1f})"'))
    return out


def _path(f: _Frame, s: Series, color: str) -> list[str]:
    """One series: a polyline per run of finite points; a lone point is a dot."""
    pts = sorted(s.points, key=lambda p: p[0])
    runs: list[list[tuple[float, float]]] = [[]]
    for i, (x, y) in enumerate(pts):
        if y is None or not math.isfinite(y):
            runs.append([])
            continue
        runs[-1].append((f.x(x), f.y(y)))
        if s.step:  # hold y until the next x (or the end of the plot)
            nx = pts[i + 1][0] if i + 1 < len(pts) else f.x1
            runs[-1].append((f.x(nx), f.y(y)))
    dash = f' stroke-dasharray="{escape(s.dash)}"' if s.dash else ""
    out = []
    for run in runs:
        if len(run) == 1:
            (x, y), = run
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{escape(color)}"/>')
        elif run:
            d = "M" + " L".join(f"{x:.1f} {y:.1f}" for x, y in run)
            out.append(f'<path d="{d}" fill="none" stroke="{escape(color)}" '
                       f'stroke-width="1.8"{dash}/>')
    return out


def line_chart(series: Sequence[Series], *, title: str, x_label: str = "",
               y_label: str = "", y_unit: str = "", hlines: Sequence[HLine] = (),
               markers: Sequence[Marker] = (), y_min: float | None = None,
               y_max: float | None = None, width: int = 640, height: int = 250) -> str:
    """Series over a shared x axis; `y_unit` is appended to tick labels (e.g. "%")."""
    colors = [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]
    legend_items = [(s.name, c, s.dash) for s, c in zip(series, colors, strict=True)]
    legend_items += [(h.label, h.color, "6 3") for h in hlines]
    legend, legend_h = _legend(legend_items, 60, height + 8, width - 70)
    xs = [x for s in series for x, _ in s.points] + [m.x for m in markers]
    ys = [y for s in series for _, y in s.points if y is not None and math.isfinite(y)]
    ys += [h.y for h in hlines if math.isfinite(h.y)]
    x0, x1 = _span(xs, None, None)
    y0, y1 = _span(ys, y_min, y_max)
    if y_max is None and ys and max(ys) > y0:  # headroom above the highest value
        y1 = y1 + (y1 - y0) * 0.05
    f = _Frame(60, 28, width - 72, height - 72, x0, x1, y0, y1)
    total_h = height + legend_h
    out = _open(title, width, int(total_h))
    out += _axes(f, x_label, y_label, y_unit)
    for m in markers:
        x = f.x(m.x)
        out.append(f'<g><title>{escape(m.title or m.label)}</title>'
                   f'<line x1="{x:.1f}" y1="{f.top:.1f}" x2="{x:.1f}" '
                   f'y2="{f.top + f.height:.1f}" stroke="{escape(m.color)}" '
                   f'stroke-dasharray="2 3"/>'
                   + _text(x + 3, f.top + 4, m.label,
                           extra=f' font-size="9" fill="#555" '
                                 f'transform="rotate(90 {x + 3:.1f} {f.top + 4:.1f})"')
                   + "</g>")
    for h in hlines:
        if math.isfinite(h.y):
            y = f.y(h.y)
            out.append(f'<line x1="{f.left:.1f}" y1="{y:.1f}" x2="{f.left + f.width:.1f}" '
                       f'y2="{y:.1f}" stroke="{escape(h.color)}" stroke-dasharray="6 3"/>')
    for s, c in zip(series, colors, strict=True):
        out += _path(f, s, c)
    out += legend
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(categories: Sequence[str], groups: Sequence[tuple[str, Sequence[float]]], *,
              title: str, y_label: str = "", y_unit: str = "", width: int = 640,
              height: int = 260) -> str:
    """Grouped bars: for each category, one bar per (name, values) group, side by side."""
    n = len(categories)
    for name, values in groups:
        if len(values) != n:
            raise ValueError(f"bar_chart: {name!r} has {len(values)} values for {n} categories")
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(groups))]
    legend, legend_h = _legend([(g[0], c, "") for g, c in zip(groups, colors, strict=True)],
                               60, height + 8, width - 70)
    top = max((v for _, vs in groups for v in vs if math.isfinite(v)), default=0.0)
    f = _Frame(60, 28, width - 72, height - 86, 0.0, float(max(n, 1)), 0.0,
               top * 1.1 if top > 0 else 1.0)
    out = _open(title, width, int(height + legend_h))
    out += _axes(f, "", y_label, y_unit, x_ticks=False)  # categories are labelled below
    slot = f.width / max(n, 1)
    bar_w = slot * 0.8 / max(len(groups), 1)
    for i, cat in enumerate(categories):
        cx = f.left + slot * (i + 0.5)
        for j, ((name, values), color) in enumerate(zip(groups, colors, strict=True)):
            v = values[i]
            if not math.isfinite(v) or v <= 0:
                continue
            x = f.left + slot * i + slot * 0.1 + j * bar_w
            y = f.y(v)
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                       f'height="{f.top + f.height - y:.1f}" fill="{escape(color)}">'
                       f"<title>{escape(f'{name} {cat}: {fmt(v)}{y_unit}')}</title></rect>")
        ly = f.top + f.height + 10
        out.append(_text(cx, ly, cat, "end",
                         f' font-size="9" transform="rotate(-35 {cx:.1f} {ly:.1f})"'))
    out += legend
    out.append("</svg>")
    return "\n".join(out)
