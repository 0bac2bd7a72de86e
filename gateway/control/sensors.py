"""What the supervisor senses about resources, for the judge's memory guard: gpu_monitor
samples of each slot's replica processes, the engines' own memory profiles, and the requests
each slot had served at each sample. Sensing only; acting is `gateway.control.effects`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.control import rollout as ro
from gpu_monitor import Sampler, make_gpu_source
from guards.context import ArmResources, ResourceReadings

__all__ = ["WARMUP_S", "ResourceSensor", "engine_memory", "engine_profiles"]

WARMUP_S = 30.0  # memory growth right after a model loads is not counted as creep
HISTORY = 300  # samples kept: 10 minutes at the default interval (growth over a rollout)


def engine_memory(profiles: Sequence[Mapping[str, Any]], total: int
                  ) -> tuple[int, float | None]:
    """Bytes the slot's engines preallocate on the device (their reserved share of it, at
    most the device) and their highest saturation signal, if any reports one."""
    reserved = sum(float(p.get("reserved_fraction") or 0.0) for p in profiles) * total
    usages = [float(u) for p in profiles if (u := p.get("engine_usage")) is not None]
    return min(int(reserved), total), (max(usages) if usages else None)


def engine_profiles(state: ro.RolloutState,
                    slot_reports: Mapping[str, Mapping[str, Mapping[str, Any]]],
                    ) -> dict[str, list[Any]]:
    """Slot -> the memory profiles its replicas reported, counting only replicas that serve
    the model the state puts in that slot (a replica still on an old model would mislead)."""
    return {slot: [r["memory"] for r in reports.values()
                   if r.get("memory") and r.get("model")
                   and (ref := state.slot_models.get(slot)) is not None
                   and r["model"]["version"] == ref.version]
            for slot, reports in slot_reports.items()}


class ResourceSensor:
    """Samples the memory of the slot replicas' processes on a background thread (started
    here) and turns the samples into `ResourceReadings` for the judge."""

    def __init__(self, interval_s: float, sampler: Sampler | None = None) -> None:
        self._sampler = Sampler(make_gpu_source("auto"), interval_s,
                                history_size=HISTORY) if sampler is None else sampler
        self._sampler.start()
        self._pids: dict[tuple[str, str], int] = {}
        # Requests each slot had served when a memory sample was first seen, by timestamp.
        self._served_at: dict[float, dict[str, int]] = {}

    def watch_pid(self, slot: str, replica_id: str, pid: Any) -> None:
        """Sample `pid` from now on as one of `slot`'s replicas (ignored unless an int)."""
        if isinstance(pid, int):
            self._pids[(slot, replica_id)] = pid
            self._sampler.set_pids(self._pids.values())

    def device_label(self) -> str:
        """The device the latest sample read (`cuda:0`, `cpu`), `cpu` before any."""
        latest = self._sampler.latest()
        return latest.devices[0].device if latest and latest.devices else "cpu"

    def readings(self, state: ro.RolloutState, served: Mapping[str, int] | None = None,
                 engines: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 ) -> ResourceReadings | None:
        """Memory of each arm's replicas, from the samples since the challenger was loaded
        (plus `WARMUP_S`: loading and the first requests grow a process's memory once, which
        is not a leak), across canary steps, with the requests each slot had served at each
        sample (`served`: slot -> cumulative requests, now) and what each slot's engine says
        of its memory (`engines`: slot -> its replicas' memory profiles,
        `gateway.serving.backends.MemoryProfile` as dicts). None before the first sample."""
        history = self._sampler.history()
        if not history:
            return None
        self._note_served(history[-1].timestamp, served or {})
        start = (state.loaded_at or state.phase_started_at) + WARMUP_S
        snaps = [snap for snap in history if snap.timestamp >= start] or history[-1:]

        def arm(slot: str) -> ArmResources | None:
            pids = [p for (s, _), p in self._pids.items() if s == slot]
            used = [sum(snap.process_memory_bytes(p) or 0 for p in pids) for snap in snaps]
            device = history[-1].devices[0] if history[-1].devices else None
            total = device.memory_total_bytes if device else None
            if not pids or not used[-1] or not total:
                return None
            counts = [self._served_at.get(snap.timestamp, {}).get(slot) for snap in snaps]
            # samples from before this supervisor saw them (a restart) have no request count
            known = [(u, c) for u, c in zip(used, counts, strict=True) if c is not None]
            hist, requests = (tuple(u for u, _ in known), tuple(c for _, c in known)) \
                if len(known) >= 2 else (tuple(used), ())
            reserved, usage = engine_memory((engines or {}).get(slot, ()), total)
            return ArmResources(used_bytes=used[-1], total_bytes=total, history=hist,
                                requests=requests, reserved_bytes=reserved, engine_usage=usage)

        return ResourceReadings(champion=arm(state.champion_slot),
                                challenger=arm(state.free_slot))

    def _note_served(self, timestamp: float, served: Mapping[str, int]) -> None:
        if timestamp not in self._served_at:
            self._served_at[timestamp] = dict(served)
            keep = {s.timestamp for s in self._sampler.history()}
            for ts in [t for t in self._served_at if t not in keep]:
                del self._served_at[ts]

    def close(self) -> None:
        self._sampler.stop()
