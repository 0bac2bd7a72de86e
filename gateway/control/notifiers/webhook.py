"""Generic JSON webhook: POSTs `Alert.to_dict()` as is, with optional extra headers."""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import ConfigError
from gateway.config import AlertSpec
from gateway.control.notifiers.base import Alert, HttpSender, check_url, resolve_env_refs


class WebhookNotifier:
    def __init__(self, name: str, url: str, *, headers: Mapping[str, str] | None = None,
                 timeout_s: float = 2.0, retries: int = 2, backoff_s: float = 0.25,
                 min_severity: str = "info") -> None:
        self.name = name
        self.min_severity = min_severity
        self._http = HttpSender(name, url, headers=headers, timeout_s=timeout_s,
                                retries=retries, backoff_s=backoff_s)

    @classmethod
    def from_spec(cls, spec: AlertSpec, path: str) -> WebhookNotifier:
        if not spec.url:
            raise ConfigError(f"{path}.url: required for a webhook notifier")
        url = check_url(resolve_env_refs(spec.url, f"{path}.url"), f"{path}.url")
        headers = {k: resolve_env_refs(v, f"{path}.headers.{k}") for k, v in spec.headers.items()}
        return cls(spec.name or f"webhook({path})", url, headers=headers,
                   timeout_s=spec.timeout_s, retries=spec.retries, backoff_s=spec.backoff_s,
                   min_severity=spec.min_severity)

    def send(self, alert: Alert) -> None:
        self._http.post(alert.to_dict())

    def close(self) -> None:
        self._http.close()
