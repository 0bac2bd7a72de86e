"""Business KPI guard: outcomes from the feedback stream, challenger vs champion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, param
from guards.context import JudgeContext, ResourceReadings
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.stats import log_e_normal_mixture, log_e_to_threshold
from guards.window import ArmWindow


class KpiGuard:
    """Relative KPI regression beyond the threshold, statistically significant.

    With t = threshold (0.05 = -5%) and higher-is-better KPIs, H0: m_B >= m_A - t |m_A|.
    The estimate d = (m_A - t |m_A|) - m_B has variance V_B/n_B + (1 -+ t)^2 V_A/n_A
    (both arms' noise); FAIL when the one-sided mSPRT rejects. `higher_is_better: false`
    flips the direction (e.g. a complaint rate). The mixing scale tau is t |m_A| (plug-in).
    """

    name = "kpi"
    PARAMS: ClassVar[Mapping[str, Any]] = {
        **COMMON_PARAMS, "higher_is_better": True, "min_samples": 100,
    }

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        self._t = trigger
        self._log_thr = log_e_to_threshold(alpha)
        self._sign = 1.0 if param(trigger, self.PARAMS, "higher_is_better") else -1.0
        self._min = int(param(trigger, self.PARAMS, "min_samples"))
        self._rejected = False

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 1

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if 0.0 < threshold < 1.0 else "must be a relative regression in (0, 1)"

    def evaluate(
        self, champion: ArmWindow, challenger: ArmWindow, resources: ResourceReadings | None
    ) -> GuardResult:
        n_a, n_b = champion.kpi_n, challenger.kpi_n
        if n_a == 0 or n_b == 0:
            return no_signal(self.name, self._t.threshold, "no KPI feedback", n_a, n_b)
        m_a, m_b = champion.kpi_mean, challenger.kpi_mean
        value = m_b / m_a - 1.0 if m_a else None
        why = f"challenger mean {m_b:.4g} vs champion {m_a:.4g} (n {n_b} vs {n_a})"
        if min(n_a, n_b) < self._min or m_a == 0.0:
            return GuardResult(self.name, GuardState.INCONCLUSIVE, value, self._t.threshold,
                               None, n_a, n_b, why + f"; waiting for {self._min} per arm")
        # factor on m_A such that H0 reads sign * (m_B - f m_A) >= 0
        f = 1.0 - self._sign * self._t.threshold * (1.0 if m_a > 0 else -1.0)
        d = self._sign * (f * m_a - m_b)
        var = challenger.kpi_var / n_b + f * f * champion.kpi_var / n_a
        log_e = log_e_normal_mixture(d, var, self._t.threshold * abs(m_a))
        self._rejected = self._rejected or log_e >= self._log_thr
        state = GuardState.FAIL if self._rejected else GuardState.PASS
        if self._rejected:
            why += f"; significant regression beyond {self._t.threshold:.0%}"
        return GuardResult(self.name, state, value, self._t.threshold, log_e, n_a, n_b, why)
