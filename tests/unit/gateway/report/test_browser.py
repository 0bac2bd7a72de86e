"""The rollout report in a real browser (headless Chromium): its script runs under its own
Content-Security-Policy and counts every chart, and the page renders to an image."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from gateway.report import render_report
from tests.browser import chromium, needs_chromium, rendered_charts
from tests.unit.gateway.control.test_timeline import rollout

pytestmark = [pytest.mark.slow, needs_chromium]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    html = render_report(rollout(fail=True).timeline.to_dict())
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(html, encoding="utf-8")
    return path, html.count('<svg class="chart"')


def test_the_script_counts_every_chart(report: tuple[Path, int], tmp_path: Path) -> None:
    path, charts = report
    assert rendered_charts(tmp_path, path) == charts >= 8


def test_a_screenshot_is_a_png_of_the_window(report: tuple[Path, int], tmp_path: Path) -> None:
    path, _ = report
    png = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,2400", path.as_uri())
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1200, 2400)
    assert len(data) > 50_000  # charts and text, not a blank page
