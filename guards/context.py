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
    # Whether clients post business outcomes (/v1/feedback) and LLM answers are scored: a
    # test that can never have a signal takes no share of alpha.
    kpi_feedback: bool = True
    hallucination_scoring: bool = True
    # Shared incidents (guards.incident): the recent interval, in champion requests, and the
    # fewest failures that can mark an arm degraded.
    incident_window: int = 200
    incident_min_errors: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("JudgeContext.alpha must be in (0, 1)")
        if self.catastrophic_run < 1:
            raise ValueError("JudgeContext.catastrophic_run must be >= 1")
        if self.latency_slo_s is not None and self.latency_slo_s <= 0:
            raise ValueError("JudgeContext.latency_slo_s must be > 0")
        if self.error_slo_target is not None and not 0.0 < self.error_slo_target < 1.0:
            raise ValueError("JudgeContext.error_slo_target must be in (0, 1)")
        if self.incident_window < 1 or self.incident_min_errors < 1:
            raise ValueError("JudgeContext.incident_window and incident_min_errors must be >= 1")


@dataclass(frozen=True)
class ArmResources:
    """Memory of the device(s) serving one arm, as reported by gpu_monitor.

    `history` holds `used_bytes` samples since the challenger was loaded (across steps),
    oldest first, and `requests` the arm's cumulative requests served at each sample (same
    length, or empty when unknown): memory growth is judged per request served.
    `reserved_bytes` is what the serving engine preallocates by design (vLLM reserves
    `gpu_memory_utilization` of the device at start): only memory beyond it counts towards
    saturation. `engine_usage` is the engine's own saturation signal in [0, 1] where it has
    one (vLLM's KV-cache usage), else None.
    """

    used_bytes: int
    total_bytes: int
    history: tuple[int, ...] = ()
    requests: tuple[int, ...] = ()
    reserved_bytes: int = 0
    engine_usage: float | None = None

    @property
    def fraction(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes > 0 else 0.0

    @property
    def beyond_reservation(self) -> float:
        """Share of the memory outside the engine's preallocation that is in use."""
        free_pool = self.total_bytes - self.reserved_bytes
        if free_pool <= 0:
            return 0.0
        return max(self.used_bytes - self.reserved_bytes, 0) / free_pool


@dataclass(frozen=True)
class ResourceReadings:
    """Per-arm resource readings filled by the supervisor; None where not measured."""

    champion: ArmResources | None = None
    challenger: ArmResources | None = None
