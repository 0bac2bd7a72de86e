"""The guard factory: trigger name -> guard class (one explicit table, no discovery)."""

from __future__ import annotations

from core.errors import ConfigError
from guards.base import Guard, GuardFactory
from guards.context import JudgeContext
from guards.cost import CostGuard
from guards.drift import InputDriftGuard, OutputDriftGuard
from guards.error_budget import ErrorBudgetBurnGuard
from guards.error_rate import ErrorRateGuard
from guards.hallucination_guard import HallucinationRateGuard
from guards.kpi import KpiGuard
from guards.latency import LatencyGuard, LatencyP99Guard
from guards.memory import MemoryGuard
from guards.results import TriggerSpec
from guards.throughput import ThroughputGuard

GUARDS: dict[str, GuardFactory] = {
    "error_rate": ErrorRateGuard,
    "latency_p95": LatencyGuard,
    "latency_p99": LatencyP99Guard,
    "kpi": KpiGuard,
    "hallucination_rate": HallucinationRateGuard,
    "output_drift": OutputDriftGuard,
    "input_drift": InputDriftGuard,
    "throughput": ThroughputGuard,
    "memory": MemoryGuard,
    "cost": CostGuard,
    "error_budget_burn": ErrorBudgetBurnGuard,
}


def guard_factory(name: str, where: str = "guard") -> GuardFactory:
    try:
        return GUARDS[name]
    except KeyError:
        known = ", ".join(sorted(GUARDS))
        raise ConfigError(f"{where}: unknown guard {name!r} (known: {known})") from None


def make_guard(trigger: TriggerSpec, context: JudgeContext, alpha: float) -> Guard:
    """Build the guard a trigger names; `alpha` is its share of the judge's error budget
    per sequential test. Raises ConfigError naming an unknown guard."""
    return guard_factory(trigger.guard)(trigger, context, alpha)
