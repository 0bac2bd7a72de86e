"""Alias history, stored as registered-model tags (MLflow keeps no history of aliases).

One event per tag: key `gateway.alias_history.<seq>` (zero-padded so keys sort by sequence),
value a small JSON object. Pure functions only; the registry does the I/O.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

HISTORY_TAG_PREFIX = "gateway.alias_history."
DEFAULT_HISTORY_LIMIT = 200
# MLflow 3.x accepts 100k-character registered-model tag values, but older servers and
# schemas cap them at 5000; staying far below keeps one event one tag on any of them.
MAX_REASON_CHARS = 1000
MAX_ACTOR_CHARS = 200
_SEQ_DIGITS = 9


@dataclass(frozen=True)
class AliasEvent:
    """One change of one alias. `version` is None when the alias was deleted."""

    seq: int
    alias: str
    version: str | None
    previous: str | None
    actor: str
    reason: str
    time: float  # Unix seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def history_key(seq: int) -> str:
    return f"{HISTORY_TAG_PREFIX}{seq:0{_SEQ_DIGITS}d}"


def is_history_key(key: str) -> bool:
    return key.startswith(HISTORY_TAG_PREFIX)


def seq_of(key: str) -> int | None:
    """The sequence number in a history tag key, or None for any other key."""
    if not is_history_key(key):
        return None
    tail = key[len(HISTORY_TAG_PREFIX):]
    return int(tail) if tail.isdigit() else None


def history_keys(tags: dict[str, str]) -> list[tuple[int, str]]:
    """(sequence number, key) of each history tag among `tags`, oldest first."""
    return sorted((s, k) for k in tags if (s := seq_of(k)) is not None)


def next_seq(tags: dict[str, str]) -> int:
    keyed = history_keys(tags)
    return keyed[-1][0] + 1 if keyed else 1


def keys_to_prune(tags: dict[str, str], limit: int) -> list[str]:
    """The keys of the oldest history tags to delete so that at most `limit` remain."""
    keyed = history_keys(tags)
    return [k for _, k in keyed[: max(0, len(keyed) - limit)]]


def encode(event: AliasEvent) -> str:
    body = event.to_dict()
    del body["seq"]  # the key holds it
    body["actor"] = event.actor[:MAX_ACTOR_CHARS]
    body["reason"] = event.reason[:MAX_REASON_CHARS]
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def decode(seq: int, value: str) -> AliasEvent | None:
    """The event in one tag value; None if the value is not a readable event (skipped)."""
    try:
        body = json.loads(value)
        return AliasEvent(
            seq=seq,
            alias=str(body["alias"]),
            version=None if body.get("version") is None else str(body["version"]),
            previous=None if body.get("previous") is None else str(body["previous"]),
            actor=str(body.get("actor", "")),
            reason=str(body.get("reason", "")),
            time=float(body.get("time", 0.0)),
        )
    except (ValueError, KeyError, TypeError):
        return None


def events_from_tags(tags: dict[str, str], alias: str | None = None) -> list[AliasEvent]:
    """The history events among `tags`, oldest first, optionally only those of `alias`."""
    events = [e for s, k in history_keys(tags) if (e := decode(s, tags[k])) is not None]
    return [e for e in events if alias is None or e.alias == alias]
