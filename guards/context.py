"""Inputs to the judge beyond the two windows: prices, SLOs, references, resource readings."""

from __future__ import annotations

from dataclasses import dataclass

from guards.results import Action


@dataclass(frozen=True)
class JudgeContext:
    """Rollout-wide settings the guards read.

    `alpha` is the false-rollback budget of the whole judge: it is split equally (union
    bound) over every sequential test of every configured trigger, so the probability that
    any trigger fires on a challenger no worse than the champion is <= alpha, however
    often the judge looks. Optional fields left None switch the guards that need them to
    "no data" (non-blocking) instead of inventing a value.
    """

    alpha: float = 0.01
    catastrophic_run: int = 5  # N consecutive server errors/timeouts -> FAIL at once
    catastrophic_action: Action = Action.ROLLBACK
    latency_slo_s: float | None = None  # absolute p95 (or p99) latency SLO in seconds
    error_slo_target: float | None = None  # availability SLO, e.g. 0.999 -> budget 0.1%
    price_per_replica_second: float | None = None  # currency per busy replica-second
    price_per_1k_input_tokens: float = 0.0
    price_per_1k_output_tokens: float = 0.0
    input_reference: tuple[int, ...] | None = None  # counts on WindowSpec.input_edges bins

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("JudgeContext.alpha must be in (0, 1)")
        if self.catastrophic_run < 1:
            raise ValueError("JudgeContext.catastrophic_run must be >= 1")
        if self.latency_slo_s is not None and self.latency_slo_s <= 0:
            raise ValueError("JudgeContext.latency_slo_s must be > 0")
        if self.error_slo_target is not None and not 0.0 < self.error_slo_target < 1.0:
            raise ValueError("JudgeContext.error_slo_target must be in (0, 1)")


@dataclass(frozen=True)
class ArmResources:
    """Memory of the device(s) serving one arm, as reported by gpu_monitor.

    `history` holds recent `used_bytes` samples, oldest first, at a fixed sampling period
    (used to detect memory that keeps creeping up).
    """

    used_bytes: int
    total_bytes: int
    history: tuple[int, ...] = ()

    @property
    def fraction(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes > 0 else 0.0


@dataclass(frozen=True)
class ResourceReadings:
    """Per-arm resource readings filled by the supervisor; None where not measured."""

    champion: ArmResources | None = None
    challenger: ArmResources | None = None
