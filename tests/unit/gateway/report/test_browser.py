"""The rollout report in a real browser (headless Chromium): its script runs under its own
Content-Security-Policy and counts every chart, and the page renders to an image."""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
from pathlib import Path

import pytest

from gateway.report import render_report
from tests.unit.gateway.control.test_timeline import rollout

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium on PATH (apt install chromium)"),
]


def _chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium once; stop its whole process group if it hangs."""
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own group: Chromium and its helpers only
        proc.communicate()
        pytest.fail(f"chromium did not finish in 60 s: {' '.join(cmd)}")
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    html = render_report(rollout(fail=True).timeline.to_dict())
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(html, encoding="utf-8")
    return path, html.count('<svg class="chart"')


def test_the_script_counts_every_chart(report: tuple[Path, int], tmp_path: Path) -> None:
    path, charts = report
    dom = _chromium(tmp_path, "--dump-dom", path.as_uri())
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:500]
    rendered = re.search(r'data-rendered="(\d+)"', body.group(0))
    assert rendered is not None, f"the script did not run: {body.group(0)}"
    assert int(rendered.group(1)) == charts >= 8


def test_a_screenshot_is_a_png_of_the_window(report: tuple[Path, int], tmp_path: Path) -> None:
    path, _ = report
    png = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,2400", path.as_uri())
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1200, 2400)
    assert len(data) > 50_000  # charts and text, not a blank page
