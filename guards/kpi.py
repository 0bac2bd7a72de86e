"""Business KPI guard: outcomes from the feedback stream, challenger vs champion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from guards.base import COMMON_PARAMS, SequentialGuard
from guards.context import JudgeContext
from guards.look import Look
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.stats import log_e_normal_mixture


class KpiGuard(SequentialGuard):
    """Relative KPI regression beyond the threshold, statistically significant.

    With t = threshold (0.05 = -5%) and higher-is-better KPIs, H0: m_B >= m_A - t |m_A|,
    m_A the champion's mean over the same looks (time-matched: feedback strata are the
    looks at which outcomes arrive). The estimate d = (m_A - t |m_A|) - m_B has variance
    V_B/n_B + (1 -+ t)^2 V_A/n_A,eff (both arms' noise, times the design effect of keyed
    traffic); FAIL when the one-sided mSPRT rejects. `higher_is_better: false` flips the
    direction (e.g. a complaint rate). The mixing scale tau is t |m_A| (plug-in). Takes no
    alpha when the config says no feedback is posted (`JudgeContext.kpi_feedback`).
    """

    name = "kpi"
    PARAMS: ClassVar[Mapping[str, Any]] = {
        **COMMON_PARAMS, "higher_is_better": True, "min_samples": 100,
    }

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        super().__init__(trigger, context, alpha)
        self._sign = 1.0 if self.p("higher_is_better") else -1.0
        self._min = int(self.p("min_samples"))

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 1 if context.kpi_feedback else 0

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if 0.0 < threshold < 1.0 else "must be a relative regression in (0, 1)"

    def evaluate(self, look: Look) -> GuardResult:
        a, b = look.matched.kpi(), look.matched.challenger_kpi()
        n_a, n_b = round(a.n), round(b.n)
        if not self._ctx.kpi_feedback or a.n <= 0 or b.n <= 0:
            return no_signal(self.name, self._t.threshold, "no KPI feedback",
                             look.champion.kpi_n, look.challenger.kpi_n)
        m_a, m_b = a.mean, b.mean
        value = m_b / m_a - 1.0 if m_a else None
        why = f"challenger mean {m_b:.4g} vs champion {m_a:.4g} (n {n_b} vs {n_a})"
        if min(n_a, n_b) < self._min or m_a == 0.0:
            return self.result(GuardState.INCONCLUSIVE, value, None, n_a, n_b,
                               why + f"; waiting for {self._min} per arm")
        # factor on m_A such that H0 reads sign * (m_B - f m_A) >= 0
        f = 1.0 - self._sign * self._t.threshold * (1.0 if m_a > 0 else -1.0)
        d = self._sign * (f * m_a - m_b)
        var = (b.var / b.n + f * f * a.var / a.n) * look.deff.latency
        log_e = log_e_normal_mixture(d, var, self._t.threshold * abs(m_a))
        state = GuardState.FAIL if self.latch(log_e) else GuardState.PASS
        if state is GuardState.FAIL:
            why += f"; significant regression beyond {self._t.threshold:.0%}"
        return self.result(state, value, log_e, n_a, n_b, why)
