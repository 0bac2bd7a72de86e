"""Value types shared by every guard and the verdict (re-exported by guards.verdict)."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


class Action(enum.StrEnum):
    ROLLBACK = "rollback"
    ROLLBACK_AND_ALERT = "rollback_and_alert"
    ROLLBACK_AND_SCALE = "rollback_and_scale"
    ALERT_ONLY = "alert_only"
    PAUSE = "pause"

    @property
    def rolls_back(self) -> bool:
        return self.value.startswith("rollback")


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class GuardState(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


def _num(x: float | None) -> float | None:
    # JSON has no inf/nan: report them as None
    return x if x is None or math.isfinite(x) else None


@dataclass(frozen=True)
class GuardResult:
    """One guard's finding at one look.

    `value` is the guard's headline measurement (e.g. challenger error rate, p95 ratio - 1,
    PSI), `threshold` the trigger threshold it is compared with, `statistic` the test
    statistic (log e-value for sequential tests; PSI for drift; None where not a test).
    `signal` is False when the guard has no data for its signal at all (no KPI feedback,
    no scores, no memory readings, no prices/SLO configured): such a result is
    INCONCLUSIVE and, unless its trigger is `required`, does not block promotion.
    """

    guard: str
    state: GuardState
    value: float | None
    threshold: float | None
    statistic: float | None
    n_champion: int
    n_challenger: int
    detail: str
    signal: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "guard": self.guard,
            "state": self.state.value,
            "value": _num(self.value),
            "threshold": _num(self.threshold),
            "statistic": _num(self.statistic),
            "n_champion": self.n_champion,
            "n_challenger": self.n_challenger,
            "detail": self.detail,
            "signal": self.signal,
        }


def no_signal(guard: str, threshold: float, why: str, n_a: int = 0, n_b: int = 0) -> GuardResult:
    return GuardResult(guard, GuardState.INCONCLUSIVE, None, threshold, None, n_a, n_b,
                       f"no data: {why}", signal=False)


@dataclass(frozen=True)
class TriggerSpec:
    """One configured trigger: which guard, its threshold, and what a breach means.

    `params` are guard-specific options (validated by `parse_triggers`); the key
    `required` (bool) makes a guard with no signal block promotion.
    """

    guard: str
    threshold: float
    severity: Severity
    action: Action
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "guard": self.guard,
            "threshold": self.threshold,
            "severity": self.severity.value,
            "action": self.action.value,
            "params": dict(self.params),
        }
