"""The Guard extension point and the plumbing every guard shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from guards.context import JudgeContext
from guards.look import Look
from guards.results import GuardResult, GuardState, TriggerSpec
from guards.stats import ConditionalRateTest, ShapeTest, log_e_to_threshold

COMMON_PARAMS: Mapping[str, Any] = {"required": False}


class Guard(Protocol):
    """One signal judged for one rollout.

    Contract: `evaluate` is called at every look (`guards.look.Look`: both arms' cumulative
    windows, this look's deltas, the time-matched champion, the shared-incident health and
    the sticky-key design effect) and returns PASS (no breach and the guard's minimum
    evidence reached), FAIL (the trigger breached; for statistical guards: rejected at the
    guard's share of alpha) or INCONCLUSIVE, with the evidence. Relative comparisons use
    the look's strata (deltas, or `look.matched`), never raw cumulative windows, so what
    both arms see cancels; absolute ceilings count only looks where the champion is
    healthy. A guard may keep sequential-test state between looks (`state`/`load` persist
    it); it must be cheap (it runs thousands of times per simulated rollout) and do no I/O.
    """

    name: str

    def evaluate(self, look: Look) -> GuardResult: ...

    def state(self) -> dict[str, Any]: ...

    def load(self, state: Mapping[str, Any]) -> None: ...


class GuardFactory(Protocol):
    """What the registry needs from a guard class besides its constructor."""

    PARAMS: Mapping[str, Any]

    def __call__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> Guard: ...

    def n_tests(self, trigger: TriggerSpec, context: JudgeContext) -> int:
        """How many sequential tests the guard runs that can have a signal under this
        configuration (each gets an equal share of alpha; 0 for none)."""
        ...

    def check_threshold(self, threshold: float) -> str | None:
        """None if the threshold is acceptable, else what is wrong with it."""
        ...


def param(trigger: TriggerSpec, defaults: Mapping[str, Any], key: str) -> Any:
    return trigger.params.get(key, defaults[key])


class SequentialGuard:
    """Common plumbing: threshold on log e, a latched rejection, results, persistence.

    Subclasses list in `STATE` the attributes that carry evidence between looks (plain
    values, `ConditionalRateTest`s or `ShapeTest`s); `state`/`load` persist exactly those,
    so a restarted supervisor resumes every test where it was.
    """

    name: str = "guard"
    PARAMS: ClassVar[Mapping[str, Any]] = COMMON_PARAMS
    STATE: ClassVar[tuple[str, ...]] = ("_rejected",)

    def __init__(self, trigger: TriggerSpec, context: JudgeContext, alpha: float) -> None:
        self._t = trigger
        self._ctx = context
        self._log_thr = log_e_to_threshold(alpha)
        self._rejected = False

    def p(self, key: str) -> Any:
        return param(self._t, self.PARAMS, key)

    def latch(self, log_e: float) -> bool:
        """Record a look's log e; True once it ever crossed the threshold."""
        if log_e >= self._log_thr:
            self._rejected = True
        return self._rejected

    def result(self, state: GuardState, value: float | None, statistic: float | None,
               n_a: int, n_b: int, why: str) -> GuardResult:
        return GuardResult(self.name, state, value, self._t.threshold, statistic, n_a, n_b,
                           why)

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.STATE:
            v = getattr(self, key)
            out[key] = v.state() if isinstance(v, ConditionalRateTest | ShapeTest) else v
        return out

    def load(self, state: Mapping[str, Any]) -> None:
        for key in self.STATE:
            if key not in state:
                continue
            cur = getattr(self, key)
            if isinstance(cur, ConditionalRateTest | ShapeTest):
                cur.load(state[key])
            else:
                setattr(self, key, tuple(state[key]) if isinstance(cur, tuple)
                        else state[key])
