"""Output and input drift guards (PSI)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gateway.errors import ConfigError
from guards.base import COMMON_PARAMS, param
from guards.context import JudgeContext, ResourceReadings
from guards.results import GuardResult, GuardState, TriggerSpec, no_signal
from guards.stats import equal_mass_groups, psi, regroup
from guards.window import ArmWindow


def grouped_psi(reference: Sequence[int], current: Sequence[int], n_groups: int) -> float:
    """PSI after coarsening both histograms into the reference's equal-mass groups."""
    starts = equal_mass_groups(reference, n_groups)
    return psi(regroup(reference, starts), regroup(current, starts))


class _DriftGuard:
    """PSI > threshold (default 0.25) with at least `min_count` values on each side.

    PSI has no p-value; under no drift its bias is about (groups - 1)(1/n_ref + 1/n_cur)
    (0.09 at 200 per side with 10 groups) and its spread shrinks as 1/n, so requiring
    `min_count` per side keeps false alarms negligible at the 0.25 threshold. The fine,
    fixed window bins are coarsened into `n_groups` groups of equal reference mass, like
    the quantile bins of common PSI implementations, so no group is empty in the reference.
    """

    name = "drift"
    PARAMS: ClassVar[Mapping[str, Any]] = {**COMMON_PARAMS, "min_count": 200, "n_groups": 10}

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        self._t = trigger
        self._min = int(param(trigger, self.PARAMS, "min_count"))
        self._groups = int(param(trigger, self.PARAMS, "n_groups"))
        self._context = context

    @staticmethod
    def n_tests(trigger: TriggerSpec, context: JudgeContext) -> int:
        return 0

    @staticmethod
    def check_threshold(threshold: float) -> str | None:
        return None if threshold > 0.0 else "must be a PSI > 0 (0.25 is the usual alarm)"

    def _judge(self, reference: Sequence[int], current: Sequence[int], what: str) -> GuardResult:
        n_ref, n_cur = sum(reference), sum(current)
        if n_ref == 0 or n_cur == 0:
            return no_signal(self.name, self._t.threshold, f"no {what} values", n_ref, n_cur)
        value = grouped_psi(reference, current, self._groups)
        why = f"PSI {value:.3f} of challenger {what} ({n_cur}) vs {n_ref} reference values"
        if min(n_ref, n_cur) < self._min:
            state = GuardState.INCONCLUSIVE
            why += f"; waiting for {self._min} per side"
        elif value > self._t.threshold:
            state = GuardState.FAIL
            why += f" > {self._t.threshold}"
        else:
            state = GuardState.PASS
        return GuardResult(self.name, state, value, self._t.threshold, value, n_ref, n_cur, why)


class OutputDriftGuard(_DriftGuard):
    """Challenger's output summaries vs the champion's on the same traffic window."""

    name = "output_drift"

    def evaluate(
        self, champion: ArmWindow, challenger: ArmWindow, resources: ResourceReadings | None
    ) -> GuardResult:
        return self._judge(champion.output_hist, challenger.output_hist, "output")


class InputDriftGuard(_DriftGuard):
    """Challenger's request summaries vs a reference sample (`context.input_reference`)."""

    name = "input_drift"

    def evaluate(
        self, champion: ArmWindow, challenger: ArmWindow, resources: ResourceReadings | None
    ) -> GuardResult:
        ref = self._context.input_reference
        current = challenger.input_hist
        if ref is None:
            return no_signal(self.name, self._t.threshold, "no input reference configured",
                             0, sum(current))
        if len(ref) != len(current):
            raise ConfigError(
                f"context.input_reference has {len(ref)} bins but the window spec has "
                f"{len(current)} (len(input_edges) + 1)")
        return self._judge(ref, current, "input")
