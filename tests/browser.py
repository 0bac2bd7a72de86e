"""Headless Chromium for the tests that look at a page in a real browser (Debian's
`chromium` package; `make test` installs it where it can, and these tests skip, saying so,
where it is absent)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium on PATH (apt install chromium)")


def chromium(profile: Path, *args: str, timeout_s: float = 60.0) -> str:
    """Run headless Chromium once (its stdout); stop its whole process group if it hangs."""
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={profile / 'profile'}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own group: Chromium and its helpers only
        proc.communicate()
        pytest.fail(f"chromium did not finish in {timeout_s:g} s: {' '.join(cmd)}")
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out


def rendered_charts(profile: Path, page: Path) -> int:
    """The number of charts the report's own script counted once the page loaded in the
    browser (its `data-rendered`); fails if the script did not run."""
    dom = chromium(profile, "--dump-dom", page.as_uri())
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:500]
    rendered = re.search(r'data-rendered="(\d+)"', body.group(0))
    assert rendered is not None, f"the script did not run: {body.group(0)}"
    return int(rendered.group(1))
