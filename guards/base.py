"""The Guard extension point and the helpers every guard shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from guards.context import JudgeContext, ResourceReadings
from guards.results import GuardResult, TriggerSpec
from guards.window import ArmWindow

COMMON_PARAMS: Mapping[str, Any] = {"required": False}


class Guard(Protocol):
    """One signal judged for one rollout.

    Contract: `evaluate` is called at every look with the CUMULATIVE windows of both arms
    (everything since the judge was created; counts never decrease between calls) and
    returns PASS (no breach and the guard's minimum evidence reached), FAIL (the trigger
    breached; for statistical guards: rejected at the guard's share of alpha) or
    INCONCLUSIVE, with the evidence. A guard may keep sequential-test state between looks;
    it must be cheap (it runs thousands of times per simulated rollout) and do no I/O.
    """

    name: str

    def evaluate(
        self,
        champion: ArmWindow,
        challenger: ArmWindow,
        resources: ResourceReadings | None,
    ) -> GuardResult: ...


class GuardFactory(Protocol):
    """What the registry needs from a guard class besides its constructor."""

    PARAMS: Mapping[str, Any]

    def __call__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> Guard: ...

    def n_tests(self, trigger: TriggerSpec, context: JudgeContext) -> int:
        """How many sequential tests the guard runs (each gets an equal share of alpha)."""
        ...

    def check_threshold(self, threshold: float) -> str | None:
        """None if the threshold is acceptable, else what is wrong with it."""
        ...


def param(trigger: TriggerSpec, defaults: Mapping[str, Any], key: str) -> Any:
    return trigger.params.get(key, defaults[key])
