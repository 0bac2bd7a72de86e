"""Output and input drift guards: a sequential shape test, with PSI as the effect size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from core.errors import ConfigError
from guards.base import COMMON_PARAMS, SequentialGuard
from guards.context import JudgeContext
from guards.look import Look
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.stats import ShapeTest, equal_mass_groups, psi, regroup


def grouped_psi(reference: Sequence[float], current: Sequence[float], n_groups: int) -> float:
    """PSI after coarsening both histograms into the reference's equal-mass groups."""
    starts = equal_mass_groups(reference, n_groups)
    return psi(regroup(reference, starts), regroup(current, starts))


class _DriftGuard(SequentialGuard):
    """FAIL when the challenger's values are significantly distributed unlike the
    champion's over the same looks (`ShapeTest`, anytime-valid, a share of alpha) AND the
    PSI of the challenger against the time-matched champion (or the configured reference)
    is above the threshold (default 0.25).

    PSI alone has no p-value and its bias under no drift is about (groups - 1)(1/n_ref +
    1/n_cur); as an effect-size gate behind a valid test it only keeps tiny but
    significant shifts from rolling back. The fine, fixed window bins are coarsened into
    `n_groups` groups of equal champion mass, fixed once `min_count` champion values are
    seen (so the grouping is predictable).
    """

    name = "drift"
    PARAMS: ClassVar[Mapping[str, Any]] = {**COMMON_PARAMS, "min_count": 200, "n_groups": 10}
    STATE = ("_rejected", "_test", "_starts")

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        super().__init__(trigger, context, alpha)
        self._min = int(self.p("min_count"))
        self._groups = int(self.p("n_groups"))
        self._test = ShapeTest(alpha, self._groups)
        self._starts: tuple[int, ...] | None = None

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 1

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if threshold > 0.0 else "must be a PSI > 0 (0.25 is the usual alarm)"

    def load(self, state: Mapping[str, Any]) -> None:
        super().load(state)
        if self._starts is not None:
            self._starts = tuple(int(x) for x in self._starts)

    def _judge(self, look: Look, hist: str, reference: Sequence[float] | None,
               what: str) -> GuardResult:
        a_all: Sequence[int] = getattr(look.champion, hist)
        d_a: Sequence[int] = getattr(look.d_champion, hist)
        d_b: Sequence[int] = getattr(look.d_challenger, hist)
        current: Sequence[int] = getattr(look.matched.challenger, hist)
        if self._starts is not None:
            self._test.update(d_a, d_b, self._starts, look.deff.latency)
        elif sum(a_all) >= self._min:
            self._starts = tuple(equal_mass_groups(a_all, self._groups))
        ref = reference if reference is not None else getattr(look.matched, hist)
        n_ref, n_cur = round(sum(ref)), sum(current)
        if n_ref == 0 or n_cur == 0:
            return no_signal(self.name, self._t.threshold, f"no {what} values", n_ref, n_cur)
        value = grouped_psi(ref, current, self._groups)
        log_e = self._test.log_e
        why = (f"PSI {value:.3f} of challenger {what} ({n_cur}) vs {n_ref} "
               f"{'reference' if reference is not None else 'champion (same looks)'} values; "
               f"shape test log e {log_e:.2f} / {self._log_thr:.2f}")
        if self._test.rejected and value > self._t.threshold:
            state = GuardState.FAIL
            why += f"; significant and PSI > {self._t.threshold}"
        elif min(n_ref, n_cur) < self._min:
            state = GuardState.INCONCLUSIVE
            why += f"; waiting for {self._min} per side"
        else:
            state = GuardState.PASS
        return self.result(state, value, log_e, n_ref, n_cur, why)


class OutputDriftGuard(_DriftGuard):
    """Challenger's output summaries vs the champion's over the same looks."""

    name = "output_drift"

    def evaluate(self, look: Look) -> GuardResult:
        return self._judge(look, "output_hist", None, "output")


class InputDriftGuard(_DriftGuard):
    """Challenger's request summaries: tested against the champion's over the same looks
    (traffic drift that both arms see is not the challenger's doing), with PSI against a
    reference sample (`context.input_reference`) as the effect size."""

    name = "input_drift"

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 0 if context.input_reference is None else 1

    def evaluate(self, look: Look) -> GuardResult:
        ref = self._ctx.input_reference
        current = look.challenger.input_hist
        if ref is None:
            return no_signal(self.name, self._t.threshold, "no input reference configured",
                             0, sum(current))
        if len(ref) != len(current):
            raise ConfigError(
                f"context.input_reference has {len(ref)} bins but the window spec has "
                f"{len(current)} (len(input_edges) + 1)")
        return self._judge(look, "input_hist", ref, "input")
