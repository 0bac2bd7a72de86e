"""Which model version served each recent request, so a business outcome reported later
(`POST /v1/feedback`) counts for the arm that earned it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Literal

__all__ = ["FeedbackStatus", "RequestLedger"]

FeedbackStatus = Literal["ok", "unknown", "expired"]


class RequestLedger:
    """The last `capacity` request ids and the version that answered each; an id older than
    `ttl_s` (on the caller's clock) is expired."""

    def __init__(self, capacity: int, ttl_s: float) -> None:
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._seen: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def remember(self, request_ids: Iterable[tuple[str, str]], now: float) -> None:
        """(request id, model version) pairs served at `now`; the oldest are forgotten."""
        for rid, version in request_ids:
            self._seen[rid] = (version, now)
            self._seen.move_to_end(rid)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        # Ids expired for another whole ttl are forgotten (oldest first; they then answer
        # "unknown"), so the memory held is bounded by traffic x ttl, not only by capacity.
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if now - oldest[1] <= 2 * self._ttl_s:
                break
            self._seen.popitem(last=False)

    def lookup(self, request_id: str, now: float) -> tuple[FeedbackStatus, str | None]:
        """("ok", the version that served it), or ("unknown" | "expired", None)."""
        found = self._seen.get(request_id)
        if found is None:
            return "unknown", None
        version, at = found
        if now - at > self._ttl_s:
            return "expired", None
        return "ok", version
