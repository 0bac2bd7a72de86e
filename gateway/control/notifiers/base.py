"""What every notifier shares: the Alert value, the Notifier protocol, the config entry,
and one HTTP POST with bounded retries.

No Ray here: notifiers run on the alert dispatcher's worker threads (see gateway.control.alerts).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from core.errors import ConfigError, GatewayError
from core.httppost import PostError, post_json
from core.logs import get_logger
from core.redact import redact_url
from gateway.config import MAX_BACKOFF_S

log = get_logger(__name__)

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {name: len(SEVERITIES) - 1 - i for i, name in enumerate(SEVERITIES)}
USER_AGENT = "champion-gateway"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class AlertError(GatewayError):
    """An alert could not be delivered; the message names the notifier and the URL."""


@dataclass(frozen=True)
class Alert:
    """One notification about a rollout decision. `details` carries the evidence (e.g. the
    `Verdict.to_dict()` of the decision); it is copied, so later changes do not leak in."""

    title: str
    severity: str
    summary: str
    model: str
    rollout_id: str | None = None
    champion_version: str | None = None
    challenger_version: str | None = None
    action: str | None = None
    reasons: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        severity = str(getattr(self.severity, "value", self.severity))
        if severity not in SEVERITY_RANK:
            raise AlertError(f"alert severity must be one of {', '.join(SEVERITIES)}, "
                             f"got {self.severity!r}")
        object.__setattr__(self, "severity", severity)
        object.__setattr__(self, "reasons", tuple(str(r) for r in self.reasons))
        object.__setattr__(self, "details", dict(self.details))

    @property
    def timestamp(self) -> str:
        """`time` as ISO 8601 in UTC."""
        return iso_time(self.time)

    def to_dict(self) -> dict[str, Any]:
        """The generic webhook payload: JSON-safe (non-finite numbers become null)."""
        return jsonable({
            "title": self.title,
            "severity": self.severity,
            "summary": self.summary,
            "model": self.model,
            "rollout_id": self.rollout_id,
            "champion_version": self.champion_version,
            "challenger_version": self.challenger_version,
            "action": self.action,
            "reasons": list(self.reasons),
            "details": dict(self.details),
            "time": self.time,
            "timestamp": self.timestamp,
            "source": USER_AGENT,
        })


class Notifier(Protocol):
    """Delivers alerts to one destination.

    Contract: `send` delivers one alert synchronously, retrying transient failures itself,
    and raises `AlertError` (naming the destination URL, secrets redacted) once it gives up.
    It may block for up to about `(retries + 1) * timeout_s` plus backoff, so callers on an
    event loop go through `AlertDispatcher`, which calls `send` on a worker thread.
    `name` identifies the notifier in logs and counters; `min_severity` is the lowest
    severity it wants (the dispatcher drops the rest before calling `send`).
    """

    name: str
    min_severity: str

    def send(self, alert: Alert) -> None: ...


def iso_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types: mappings and sequences copied, non-finite floats as None,
    anything else unknown as its str() (so one odd value never loses a whole alert)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, str | int | float):
        return jsonable(value.value)  # enums
    if hasattr(value, "item") and callable(value.item):
        try:
            return jsonable(value.item())  # numpy scalars
        except (TypeError, ValueError):
            pass
    return str(value)


def severity_at_least(severity: str, minimum: str) -> bool:
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(minimum, 0)


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def resolve_env_refs(text: str, where: str) -> str:
    """Replace each `${NAME}` in `text` by the environment variable; ConfigError naming
    `where` when one is unset or empty."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if not found:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return found

    return _ENV_REF.sub(value, text)


def check_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: must be an http(s) URL, got {redact_url(url)!r}")
    return url


class HttpSender:
    """POST JSON to one URL with `core.httppost`'s bounded retries (transport errors,
    timeouts, 429 and 5xx); any other non-2xx answer fails at once. Every failure is an
    `AlertError` naming the notifier and the redacted URL."""

    def __init__(self, notifier: str, url: str, *, display_url: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout_s: float = 2.0,
                 retries: int = 2, backoff_s: float = 0.25) -> None:
        self.notifier = notifier
        self.url = url
        self.display_url = display_url or redact_url(url)
        self.retries = retries
        self.backoff_s = backoff_s
        all_headers = {"user-agent": USER_AGENT, **(headers or {})}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), headers=all_headers,
                                    follow_redirects=False)

    def post(self, payload: Mapping[str, Any]) -> httpx.Response:
        try:
            return post_json(self._client, self.url, payload, retries=self.retries,
                             backoff_s=self.backoff_s, max_backoff_s=MAX_BACKOFF_S,
                             on_retry=self._log_retry)
        except PostError as exc:
            last = (f"HTTP {exc.status}: {truncate(exc.text, 200)}" if exc.status is not None
                    else exc.reason)
            raise AlertError(f"alert notifier {self.notifier}: POST {self.display_url} "
                             f"failed after {exc.attempts} attempt(s): {last}") from None

    def _log_retry(self, retry: int, reason: str, wait_s: float) -> None:
        log.info("alert notifier %s: POST %s failed (%s); retry %d/%d in %.2f s",
                 self.notifier, self.display_url, reason, retry, self.retries, wait_s)

    def close(self) -> None:
        self._client.close()
