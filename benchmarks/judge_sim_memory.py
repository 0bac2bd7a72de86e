"""Device-memory readings for the judge simulation, as the supervisor builds them.

`gateway.control.sensors.ResourceSensor.readings`: gpu_monitor samples every `SAMPLE_S` seconds; the
history starts `WARMUP_S` after the challenger loaded (before that: the latest sample only);
each sample carries each arm's cumulative requests as the supervisor knew them when it first
saw the sample (a restarted supervisor knows none of the earlier ones: with fewer than two
known, the history has no request counts).

Two memory models:
- `torch`: no preallocation (reserved 0); each arm's process holds ~0.4 of a 16-80 GiB
  device, with allocator jitter and the caching allocator's occasional persistent step up;
  a leaking challenger adds `leak` bytes per request it served;
- `vllm`: the engine preallocates 0.9 of the device (`reserved_bytes`); used memory sits at
  the reservation with a little jitter, plus a few MiB that grow with the arm's peak request
  rate (CUDA graphs, workspace); the engine's KV-cache usage follows the arm's share of the
  traffic (`engine_usage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from guards.context import ArmResources, ResourceReadings

MiB = 2**20
GiB = 2**30
SAMPLE_S = 2.0
WARMUP_S = 30.0  # gateway.control.sensors.WARMUP_S


@dataclass
class Memory:
    rng: np.random.Generator
    kind: str  # torch | vllm
    total: int
    rate: float  # the rollout's total request rate (for KV-cache usage)
    leak: float = 0.0  # bytes per request served by the challenger
    next_at: float = 0.0
    times: list[float] = field(default_factory=list)
    used: list[tuple[int, int]] = field(default_factory=list)
    counts: list[tuple[int, int] | None] = field(default_factory=list)
    usage: tuple[float, float] = (0.0, 0.0)
    _steps: list[float] = field(default_factory=lambda: [0.0, 0.0])
    _peak: list[float] = field(default_factory=lambda: [0.0, 0.0])
    _last: tuple[float, int, int] = (0.0, 0, 0)
    readings: ResourceReadings | None = None

    @property
    def reserved(self) -> int:
        return int(0.9 * self.total) if self.kind == "vllm" else 0

    def update(self, now: float, served: tuple[int, int],
               known: tuple[int, int] | None) -> ResourceReadings | None:
        """Take the samples due by `now` (`served`: calls each arm started so far; `known`:
        the requests the supervisor has seen, None while it cannot count them)."""
        changed = False
        while self.next_at <= now:
            self._sample(self.next_at, served)
            self.counts.append(known)
            self.next_at += SAMPLE_S
            changed = True
        if changed:
            self.readings = self._readings()
        return self.readings

    def forget_counts(self) -> None:
        """A restarted supervisor: requests at earlier samples are unknown."""
        self.counts = [None] * len(self.counts)

    def _sample(self, t: float, served: tuple[int, int]) -> None:
        rng = self.rng
        t0, a0, b0 = self._last
        dt = max(t - t0, 1e-9)
        rates = ((served[0] - a0) / dt, (served[1] - b0) / dt)
        self._last = (t, served[0], served[1])
        used = []
        for arm in (0, 1):
            if self.kind == "vllm":
                self._peak[arm] = max(self._peak[arm], rates[arm])
                u = self.reserved + 1.5 * MiB * self._peak[arm] + rng.normal(0.0, 4 * MiB)
            else:
                if rng.random() < 0.03:  # the caching allocator keeps a bigger block
                    self._steps[arm] += rng.uniform(2, 32) * MiB
                u = 0.4 * self.total + self._steps[arm] + rng.normal(0.0, 2 * MiB)
            if arm == 1:
                u += self.leak * served[1]
            used.append(int(u))
        if self.kind == "vllm":
            kv = [float(np.clip(0.15 + 0.55 * r / self.rate + rng.normal(0.0, 0.03), 0.0, 1.0))
                  for r in rates]
            self.usage = (kv[0], kv[1])
        self.times.append(t)
        self.used.append((used[0], used[1]))

    def _readings(self) -> ResourceReadings:
        idx = [i for i, t in enumerate(self.times) if t >= WARMUP_S] or [len(self.times) - 1]
        return ResourceReadings(champion=self._arm(0, idx), challenger=self._arm(1, idx))

    def _arm(self, arm: int, idx: list[int]) -> ArmResources:
        used = [self.used[i][arm] for i in idx]
        known = [(used[j], c[arm]) for j, i in enumerate(idx) if (c := self.counts[i])]
        if len(known) >= 2:
            hist, req = tuple(u for u, _ in known), tuple(c for _, c in known)
        else:
            hist, req = tuple(used), ()
        return ArmResources(used_bytes=used[-1], total_bytes=self.total, history=hist,
                            requests=req, reserved_bytes=self.reserved,
                            engine_usage=self.usage[arm] if self.kind == "vllm" else None)
