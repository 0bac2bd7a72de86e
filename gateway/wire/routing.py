"""The routing table and the arm choice. Pure Python: no Ray, no I/O.

Modes:
- `split`: the challenger gets `challenger_weight` percent of requests (weighted random, or
  by a stable hash of the sticky key so one key always lands on one arm for a given table).
- `shadow`: the champion answers every request; a copy goes to the challenger and its answer
  is measured and dropped.
- `pinned`: every request goes to the champion; the challenger (if loaded) gets nothing.
  A rollback publishes a pinned table.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import InputError
from model_registry.refs import ModelRef

SLOTS = ("a", "b")
# Sticky hashing resolution: weight is in percent with two decimals.
_BUCKETS = 10_000


class Mode(enum.StrEnum):
    SPLIT = "split"
    SHADOW = "shadow"
    PINNED = "pinned"


class Arm(enum.StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"


@dataclass(frozen=True)
class RoutingTable:
    """One immutable, versioned routing decision, published to every ingress replica."""

    version: int
    champion_slot: str
    challenger_slot: str | None
    challenger_weight: float
    mode: Mode
    # What each slot serves (None: the slot is empty). Slots load these immutable versions.
    slot_models: Mapping[str, ModelRef | None] = field(default_factory=dict)
    # Slots whose replica was lost and is being replaced (held at 0%): a call to one that
    # fails is the loss's doing, not its model's.
    lost_slots: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.champion_slot not in SLOTS:
            raise ValueError(f"champion_slot must be one of {SLOTS}, got {self.champion_slot!r}")
        if self.challenger_slot is not None and (
            self.challenger_slot not in SLOTS or self.challenger_slot == self.champion_slot
        ):
            raise ValueError(
                f"challenger_slot must be the other slot, got {self.challenger_slot!r}")
        if not 0.0 <= self.challenger_weight <= 100.0:
            raise ValueError(f"challenger_weight must be in [0, 100], got {self.challenger_weight}")

    @property
    def challenger_active(self) -> bool:
        """Whether any request may reach the challenger (as an answer or a shadow copy)."""
        if self.challenger_slot is None or self.mode is Mode.PINNED:
            return False
        return self.mode is Mode.SHADOW or self.challenger_weight > 0

    def model_of(self, arm: Arm) -> ModelRef | None:
        slot = self.slot_of(arm)
        return None if slot is None else self.slot_models.get(slot)

    def slot_of(self, arm: Arm) -> str | None:
        return self.champion_slot if arm is Arm.CHAMPION else self.challenger_slot

    def evolve(self, **changes: Any) -> RoutingTable:
        """A new table with the changes and, unless given, the next version number."""
        changes.setdefault("version", self.version + 1)
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "champion_slot": self.champion_slot,
            "challenger_slot": self.challenger_slot,
            "challenger_weight": self.challenger_weight,
            "mode": self.mode.value,
            "slot_models": {
                slot: (ref.to_dict() if ref else None) for slot, ref in self.slot_models.items()
            },
            "lost_slots": list(self.lost_slots),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingTable:
        models = data.get("slot_models") or {}
        return cls(
            version=int(data["version"]),
            champion_slot=str(data["champion_slot"]),
            challenger_slot=data.get("challenger_slot"),
            challenger_weight=float(data["challenger_weight"]),
            mode=Mode(data["mode"]),
            slot_models={s: (ModelRef.from_dict(r) if r else None) for s, r in models.items()},
            lost_slots=tuple(str(s) for s in data.get("lost_slots") or ()),
        )


def sticky_bucket(key: str) -> int:
    """A stable bucket in [0, 10000) for a key: the same in every process and every run."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BUCKETS


def choose_arm(table: RoutingTable, key: str | None = None,
               rand: Callable[[], float] = random.random) -> Arm:
    """Which arm answers a request under `table`.

    With a sticky key, a key goes to the challenger iff its bucket is below the weight, so
    raising the weight only moves keys from champion to challenger, never back.
    """
    if table.mode is not Mode.SPLIT or table.challenger_slot is None:
        return Arm.CHAMPION
    weight = table.challenger_weight
    if weight <= 0.0:
        return Arm.CHAMPION
    if key is not None:
        return Arm.CHALLENGER if sticky_bucket(key) < weight * (_BUCKETS / 100) else Arm.CHAMPION
    return Arm.CHALLENGER if rand() * 100.0 < weight else Arm.CHAMPION


def parse_weight_update(body: Any, current: RoutingTable) -> tuple[float, Mode]:
    """Validate an admin weight update `{"challenger_weight": 0-100, "mode": ...}`."""
    if not isinstance(body, dict):
        raise InputError("body: expected a JSON object", status=400)
    unknown = sorted(set(body) - {"challenger_weight", "mode"})
    if unknown:
        raise InputError(f"{unknown[0]}: unknown field", field=unknown[0])
    weight = body.get("challenger_weight", current.challenger_weight)
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise InputError("challenger_weight: expected a number in [0, 100]",
                         field="challenger_weight")
    if not 0.0 <= float(weight) <= 100.0:
        raise InputError(f"challenger_weight: must be in [0, 100], got {weight}",
                         field="challenger_weight")
    mode_raw = body.get("mode", current.mode.value)
    try:
        mode = Mode(mode_raw)
    except ValueError:
        raise InputError(f"mode: must be one of split, shadow, pinned, got {mode_raw!r}",
                         field="mode") from None
    if float(weight) > 0 and mode is not Mode.PINNED and current.challenger_slot is None:
        raise InputError("challenger_weight: no challenger is loaded", status=409,
                         field="challenger_weight")
    return float(weight), mode
