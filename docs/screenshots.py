"""The README's pictures, from the last `make demo` run: the promoted rollout's report page
and `gateway watch`'s view of it mid-canary, both drawn by headless Chromium.

    python docs/screenshots.py [--reports .gateway/reports] [--out docs/img]

Reads `.gateway/reports/<rollout>.html` and `<rollout>.canary.json` (written by the demo),
writes `report.png` and `watch.png`. Needs Debian's `chromium`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from gateway.watch import build_frame


def _chromium(*args: str) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("needs Chromium on PATH (apt install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu",
                                 "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            sys.exit("chromium did not finish in 90 s")


def _promoted(reports: Path) -> Path:
    """The newest report of a promoted rollout that has a mid-canary view beside it."""
    pages = sorted((p for p in reports.glob("*.html")
                    if p.with_suffix(".canary.json").exists()
                    and "promoted" in p.read_text(encoding="utf-8")),
                   key=lambda p: p.stat().st_mtime)
    if not pages:
        sys.exit(f"no promoted rollout's report in {reports}: run `make demo` first")
    return pages[-1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reports", type=Path, default=Path(".gateway/reports"))
    p.add_argument("--out", type=Path, default=Path("docs/img"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    page = _promoted(args.reports)
    _chromium(f"--screenshot={args.out / 'report.png'}", "--window-size=1000,1500",
              page.resolve().as_uri())
    view = json.loads(page.with_suffix(".canary.json").read_text(encoding="utf-8"))
    console = Console(record=True, width=110, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(build_frame(view, url="http://127.0.0.1:8000"))
    with tempfile.TemporaryDirectory() as tmp:
        frame = Path(tmp) / "watch.html"
        frame.write_text(console.export_html(inline_styles=True), encoding="utf-8")
        _chromium(f"--screenshot={args.out / 'watch.png'}", "--window-size=1000,560",
                  frame.as_uri())
    for name in ("report.png", "watch.png"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
