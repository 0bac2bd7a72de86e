"""The rollout report's HTML and SVG, read back with html.parser (no browser here)."""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import math
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from gateway.control.timeline import Timeline
from gateway.report import render_report
from gateway.report.svg import Series, bar_chart, fmt, line_chart, nice_ticks
from tests.unit.gateway.control.test_timeline import T0, rollout

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>" onload="alert(2)'


class Page(HTMLParser):
    """Every element with its attributes, the text, and each script's source."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)

    def all(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements
                if t == tag and (cls is None or cls in (a.get("class") or "").split())]

    @property
    def ids(self) -> set[str]:
        return {i for _, a in self.elements if (i := a.get("id"))}

    def charts(self) -> list[str]:
        return [a.get("aria-label") or "" for a in self.all("svg", "chart")]


SECTIONS = {"summary", "steps", "traffic", "evidence", "distributions", "verdict"}


def _guards_with_statistic(tl: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for p in tl["points"]:
        names += [n for n, g in p["guards"].items()
                  if g["statistic"] is not None and n not in names]
    return names


def test_a_rolled_back_rollout_has_every_section_and_chart() -> None:
    tl = rollout(fail=True).timeline.to_dict()
    html = render_report(tl)
    page = Page(html)
    assert SECTIONS | {"events", "results"} <= page.ids
    guards = _guards_with_statistic(tl)
    assert "error_rate" in guards
    dists = [k for k, d in tl["distributions"].items() if d is not None]
    assert dists == ["output", "input"]
    charts = page.charts()
    # the weights, three traffic charts, one per guard with a statistic, the distributions
    assert len(charts) == 1 + 3 + len(guards) + len(dists)
    assert any(c.startswith("error_rate: fail") for c in charts)
    weights = html.split('aria-label="Challenger traffic weight')[1].split("</svg>")[0]
    (d,) = re.findall(r'<path d="([^"]+)"', weights)
    ys = [float(c.split()[1]) for c in re.split(r"[ML]", d) if c.strip()]
    assert ys[0] == ys[-1] == max(ys) > min(ys)  # from 0% up, and back to 0% at the end
    # weights are percent already (as the routing table): the step to 50% says 50%
    promoted = " ".join(Page(render_report(rollout(fail=False).timeline.to_dict())).text)
    assert "50%" in promoted and "5000%" not in promoted
    assert any(c.startswith("output values: PSI") for c in charts)
    text = " ".join(page.text)
    for r in tl["verdict"]["results"]:  # the verdict table names every guard with its detail
        assert r["guard"] in text and r["detail"] in text
    rows = page.all("tr")
    assert len(rows) >= 1 + len(tl["verdict"]["results"])
    assert "rolled_back" in text and "iris" in text and "r-42" in text
    seconds = tl["ended_at"] - tl["started_at"]
    assert 0 < seconds < 60 and f"{seconds:.1f} s" in text


def test_the_one_script_counts_charts_and_the_policy_allows_only_it() -> None:
    page = Page(render_report(rollout(fail=False).timeline.to_dict()))
    (script,) = page.scripts
    assert "document.body.dataset.rendered" in script and "svg.chart" in script
    (meta,) = [a for a in page.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = meta["content"] or ""
    assert f"'sha256-{digest}'" in policy and "default-src 'none'" in policy


def test_strings_from_the_data_are_escaped_everywhere() -> None:
    tl = rollout(fail=True).timeline.to_dict()
    for key in ("rollout_id", "model", "champion", "challenger", "reason", "outcome"):
        tl[key] = EVIL
    for e in tl["events"]:
        e["name"], e["reason"], e["actor"] = EVIL, EVIL, EVIL
    v = tl["verdict"]
    v["reasons"] = [EVIL]
    v["state"] = v["action"] = v["severity"] = EVIL
    for r in v["results"]:
        r["detail"], r["guard"], r["state"] = EVIL, EVIL, EVIL
    for p in tl["points"]:  # guard names become chart titles
        p["guards"] = {EVIL + n: g for n, g in p["guards"].items()}
    html = render_report(tl)
    page = Page(html)
    assert len(page.scripts) == 1
    assert page.all("img") == []
    assert not [a for _, attrs in page.elements for a in attrs if a.startswith("on")]
    # a class name made from data keeps letters only
    assert all(re.fullmatch(r"[\w -]*", a.get("class") or "") for _, a in page.elements)
    text = "".join(page.text)
    assert text.count('<script>alert("x")</script>') >= 10  # shown as text, not run
    assert any(c.startswith(EVIL) for c in page.charts())


def test_the_page_references_nothing_outside_itself() -> None:
    html = render_report(rollout(fail=True).timeline.to_dict())
    assert "http://" not in html and "https://" not in html
    page = Page(html)
    for _, attrs in page.elements:
        assert not {"src", "href", "xlink:href", "action"} & set(attrs)
    assert page.all("link") == [] and page.all("iframe") == []


def test_a_rollout_that_never_loaded_says_no_traffic_judged() -> None:
    tl = Timeline()
    tl.start(rollout_id="r-1", model="iris", champion="3", challenger="4", started_at=T0)
    tl.event(T0, "rollout_started", "challenger alias moved to 4", 0.0)
    tl.event(T0 + 30, "load_failed", "health check failed", 0.0)
    tl.finish(t=T0 + 30, outcome="load_failed", reason="health check failed")
    page = Page(render_report(tl.to_dict()))
    assert page.charts() == []
    assert SECTIONS | {"events"} <= page.ids
    text = " ".join(page.text)
    assert text.count("no traffic judged") >= 3 and "no verdict" in text
    assert "30.0 s" in text and "load_failed" in text


def test_one_look_and_an_empty_dict_render() -> None:
    run = rollout(fail=False, looks=1)
    page = Page(render_report(run.timeline.to_dict()))
    assert len(page.charts()) >= 4
    svg_text = " ".join(a.get("d") or "" for a in page.all("path"))
    assert "nan" not in svg_text.lower() and "inf" not in svg_text.lower()
    assert page.all("circle")  # a lone look is a dot, not an empty line
    empty = Page(render_report({}))
    assert empty.charts() == [] and empty.ids >= SECTIONS
    assert "no traffic judged" in " ".join(empty.text)


def test_counts_that_go_back_leave_a_gap_not_a_negative_rate() -> None:
    tl = rollout(fail=False, looks=6).timeline.to_dict()
    restarted = copy.deepcopy(tl)
    points = restarted["points"]
    for arm in ("champion", "challenger"):  # as if the counts restarted from 0 at look 3
        base = points[2][arm]["requests"]
        for p in points[3:]:
            p[arm]["requests"] -= base
    html = render_report(restarted)
    rate_svg = html.split('aria-label="Request rate')[1].split("</svg>")[0]
    ys = [float(y) for y in re.findall(r"[ML]-?[\d.]+ (-?[\d.]+)", rate_svg)]
    assert ys and all(28 <= y <= 250 - 72 + 28 for y in ys)  # inside the plot area
    assert rate_svg.count("<path") == 4  # each arm: looks 1-2, a gap at 3, looks 4-5


# ---- svg -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (0, 7.3), (-3.2, 250.0), (0.001, 0.0042),
                                         (1e5, 3e6)])
def test_nice_ticks_are_round_and_cover_the_range(lo: float, hi: float) -> None:
    ticks = nice_ticks(lo, hi)
    assert 2 <= len(ticks) <= 11
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 5, 10))
    assert ticks[0] >= lo - 1e-12 and ticks[0] - step < lo
    assert ticks[-1] <= hi * (1 + 1e-12) + 1e-12 and ticks[-1] + step > hi


def test_fmt_is_short() -> None:
    assert [fmt(v) for v in (0, 0.5, 6.802, 1234.5, 2e7, 1e-5)] == \
        ["0", "0.5", "6.802", "1234", "2e+07", "1e-05"]


def test_a_gap_splits_a_line_and_a_step_series_holds_its_value() -> None:
    svg = line_chart([Series("a", [(0, 1), (1, 2), (2, None), (3, 1), (4, 3)])], title="t")
    assert svg.count("<path") == 2
    step = line_chart([Series("w", [(0, 0), (1, 5), (2, 5)], step=True)], title="w")
    (d,) = re.findall(r'<path d="([^"]+)"', step)
    coords = [tuple(map(float, c.split())) for c in re.split(r"[ML]", d) if c.strip()]
    for (x1, y1), (x2, y2) in itertools.pairwise(coords):
        assert x1 == x2 or y1 == y2  # only horizontal and vertical moves


def test_bar_chart_needs_one_value_per_category() -> None:
    svg = bar_chart(["a", "b"], [("x", [1, 2]), ("y", [0, 3])], title="h")
    assert svg.count("<rect") == 1 + 3  # the frame and the non-zero bars
    with pytest.raises(ValueError):
        bar_chart(["a", "b"], [("x", [1])], title="h")
