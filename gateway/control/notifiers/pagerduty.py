"""PagerDuty Events API v2: one `trigger` event per alert, deduplicated per rollout, so
every alert about one rollout lands on the same PagerDuty alert/incident."""

from __future__ import annotations

import os
import socket
from typing import Any

from core.errors import ConfigError
from gateway.config import AlertSpec
from gateway.control.notifiers.base import (
    USER_AGENT,
    Alert,
    HttpSender,
    check_url,
    resolve_env_refs,
    truncate,
)

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
# Ours -> PagerDuty's four severities.
SEVERITY_MAP = {"critical": "critical", "high": "error", "medium": "warning", "low": "info",
                "info": "info"}


def dedup_key(alert: Alert) -> str | None:
    """`champion-gateway/<model>/<rollout id>`; None (PagerDuty makes one) without a rollout."""
    if alert.rollout_id is None:
        return None
    return truncate(f"{USER_AGENT}/{alert.model}/{alert.rollout_id}", DEDUP_KEY_MAX)


def pagerduty_payload(alert: Alert, routing_key: str, source: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "payload": {
            "summary": truncate(f"{alert.title}: {alert.summary}", SUMMARY_MAX),
            "source": source,
            "severity": SEVERITY_MAP[alert.severity],
            "timestamp": alert.timestamp,
            "component": alert.model,
            "group": USER_AGENT,
            "class": alert.action or "rollout",
            "custom_details": alert.to_dict(),
        },
        "client": USER_AGENT,
    }
    key = dedup_key(alert)
    if key is not None:
        event["dedup_key"] = key
    return event


class PagerDutyNotifier:
    def __init__(self, name: str, routing_key: str, *, url: str = DEFAULT_URL,
                 source: str | None = None, timeout_s: float = 2.0, retries: int = 2,
                 backoff_s: float = 0.25, min_severity: str = "info") -> None:
        self.name = name
        self.min_severity = min_severity
        self.source = source or socket.gethostname()
        self._routing_key = routing_key
        self._http = HttpSender(name, url, timeout_s=timeout_s, retries=retries,
                                backoff_s=backoff_s)

    @classmethod
    def from_spec(cls, spec: AlertSpec, path: str) -> PagerDutyNotifier:
        if not spec.routing_key_env:
            raise ConfigError(f"{path}.routing_key_env: required for a pagerduty notifier "
                              "(the environment variable holding the integration key)")
        routing_key = os.environ.get(spec.routing_key_env, "").strip()
        if not routing_key:
            raise ConfigError(f"{path}.routing_key_env: environment variable "
                              f"{spec.routing_key_env} is not set")
        if spec.headers:
            raise ConfigError(f"{path}.headers: not used by a pagerduty notifier")
        url = check_url(resolve_env_refs(spec.url or DEFAULT_URL, f"{path}.url"), f"{path}.url")
        return cls(spec.name or f"pagerduty({path})", routing_key, url=url,
                   timeout_s=spec.timeout_s, retries=spec.retries, backoff_s=spec.backoff_s,
                   min_severity=spec.min_severity)

    def send(self, alert: Alert) -> None:
        self._http.post(pagerduty_payload(alert, self._routing_key, self.source))

    def close(self) -> None:
        self._http.close()
