"""The rollout status (`GET /admin/rollout`) in words: pure helpers shared by `gateway status`
(`admin_client.format_status`) and `gateway watch` (`gateway.watch`). No I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTIVE_PHASES", "ENDED_PHASES", "GuardRow", "StepProgress", "guard_rows",
           "log_e_threshold", "no_signal_guards", "shorten", "step_label", "step_progress",
           "text_bar"]

# The supervisor's phases (gateway.control.rollout.Phase): a rollout runs in ACTIVE_PHASES
# and has ended in ENDED_PHASES (idle: a restored champion, or nothing ever rolled out).
ACTIVE_PHASES = frozenset({"loading", "shadow", "canary", "paused"})
ENDED_PHASES = frozenset({"rolled_back", "promoted", "failed", "idle"})
# Guards whose value is a rate: shown as percentages.
RATE_GUARDS = frozenset({"error_rate", "hallucination_rate"})


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters (an ellipsis marks a cut)."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def text_bar(fraction: float, width: int = 10) -> str:
    """`[####------]`: a plain-text bar for `fraction` (clamped to 0..1)."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def step_label(view: Mapping[str, Any]) -> str:
    """`step 2/3` in canary, `shadow` in shadow, else empty."""
    step, steps = view.get("step"), view.get("steps") or []
    if view.get("phase") == "shadow":
        return "shadow"
    if step is None or not steps:
        return ""
    return f"step {step + 1}/{len(steps)}"


@dataclass(frozen=True)
class StepProgress:
    """How far the current step is towards its gate (both must be met to advance)."""

    requests: int
    min_requests: int
    elapsed_s: float
    min_duration_s: float
    weight: float

    @property
    def requests_fraction(self) -> float:
        return 1.0 if self.min_requests <= 0 else min(1.0, self.requests / self.min_requests)

    @property
    def time_fraction(self) -> float:
        return 1.0 if self.min_duration_s <= 0 else min(1.0,
                                                        self.elapsed_s / self.min_duration_s)

    def requests_text(self) -> str:
        return f"{self.requests:,}/{self.min_requests:,}"

    def time_text(self) -> str:
        """`12/60 s`, `3.5/15 min`, in the unit that suits the step's minimum duration."""
        scale, unit = (3600.0, "h") if self.min_duration_s >= 7200 else \
            (60.0, "min") if self.min_duration_s >= 120 else (1.0, "s")
        return f"{_num(self.elapsed_s / scale)}/{_num(self.min_duration_s / scale)} {unit}"


def step_progress(view: Mapping[str, Any]) -> StepProgress | None:
    """The status's `progress` (None outside shadow/canary or from an older gateway)."""
    p = view.get("progress")
    if not isinstance(p, Mapping):
        return None
    try:
        return StepProgress(int(p["requests"]), int(p["min_requests"]), float(p["elapsed_s"]),
                            float(p["min_duration_s"]), float(p.get("weight") or 0.0))
    except (KeyError, TypeError, ValueError):
        return None


def log_e_threshold(view: Mapping[str, Any]) -> float | None:
    """The log e-value at which a sequential test rejects: log(1 / alpha per test)."""
    judge = view.get("judge")
    alpha = judge.get("alpha_per_test") if isinstance(judge, Mapping) else None
    if not isinstance(alpha, int | float) or not 0 < alpha < 1:
        return None
    return math.log(1.0 / alpha)


@dataclass(frozen=True)
class GuardRow:
    """One guard's evidence, each field already in words."""

    guard: str
    state: str
    value: str  # "7.00% vs 1.00%"
    evidence: str  # "log e 1.20 / 6.80", or "" where the guard runs no test
    n: str  # "1,000 / 200" (champion / challenger)
    detail: str


def guard_rows(view: Mapping[str, Any], detail_width: int = 70) -> list[GuardRow]:
    """The last verdict's guards that have a signal, in the verdict's order."""
    verdict = view.get("verdict") or {}
    limit = log_e_threshold(view)
    rows = []
    for r in verdict.get("results") or []:
        if not r.get("signal", True):
            continue
        guard = str(r.get("guard", "?"))
        value = f"{_value(guard, r.get('value'))} vs {_value(guard, r.get('threshold'))}"
        stat = r.get("statistic")
        evidence = ""
        if isinstance(stat, int | float):
            evidence = f"log e {stat:.2f}" + (f" / {limit:.2f}" if limit is not None else "")
        n = f"{int(r.get('n_champion') or 0):,} / {int(r.get('n_challenger') or 0):,}"
        rows.append(GuardRow(guard, str(r.get("state", "?")), value, evidence, n,
                             shorten(str(r.get("detail") or ""), detail_width)))
    return rows


def no_signal_guards(view: Mapping[str, Any]) -> list[str]:
    """The guards of the last verdict that have no data for their signal (not judged)."""
    verdict = view.get("verdict") or {}
    return [str(r.get("guard")) for r in verdict.get("results") or []
            if not r.get("signal", True)]


def _value(guard: str, x: Any) -> str:
    if not isinstance(x, int | float):
        return "n/a"
    if guard in RATE_GUARDS:
        return f"{x:.2%}"
    return f"{x:.3g}"


def _num(x: float) -> str:
    return f"{x:.0f}" if x >= 10 or x == int(x) else f"{x:.1f}"
