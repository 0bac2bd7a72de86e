"""Slack incoming webhook: a Block Kit message (header, summary, fields, reasons).

Block Kit limits are enforced here by truncation, since Slack rejects the whole message
(HTTP 400, which is not retried) when one text is too long: header text 150 characters,
section text 3000, at most 10 section fields of 2000 each.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from core.errors import ConfigError
from gateway.config import AlertSpec
from gateway.control.notifiers.base import Alert, HttpSender, check_url, resolve_env_refs, truncate

HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
MAX_FIELDS = 10
FALLBACK_TEXT_MAX = 3000
_EMOJI = {"critical": ":rotating_light:", "high": ":warning:", "medium": ":warning:",
          "low": ":information_source:", "info": ":white_check_mark:"}


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str, limit: int) -> str:
    """Escaped and truncated, never ending inside an escape like `&am`."""
    out = truncate(escape(text), limit)
    cut = out.rfind("&")
    if out.endswith("…") and cut != -1 and ";" not in out[cut:]:
        out = out[:cut] + "…"
    return out


def slack_payload(alert: Alert) -> dict[str, Any]:
    """The incoming-webhook message for `alert`; `text` is the notification fallback."""
    fields = [
        ("Model", alert.model),
        ("Severity", alert.severity),
        ("Action", alert.action),
        ("Champion", _version(alert.champion_version)),
        ("Challenger", _version(alert.challenger_version)),
        ("Rollout", alert.rollout_id),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": truncate(alert.title, HEADER_MAX),
                  "emoji": True}},
        {"type": "section",
         "text": {"type": "mrkdwn",
                  "text": mrkdwn(f"{_EMOJI[alert.severity]} {alert.summary}",
                                 SECTION_TEXT_MAX)}},
        {"type": "section",
         "fields": [{"type": "mrkdwn", "text": mrkdwn(f"*{k}*\n{v}", FIELD_TEXT_MAX)}
                    for k, v in fields if v][:MAX_FIELDS]},
    ]
    if alert.reasons:
        bullets = "\n".join(f"• {r}" for r in alert.reasons)
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn",
                                "text": mrkdwn(f"*Reasons*\n{bullets}", SECTION_TEXT_MAX)}})
    blocks.append({"type": "context",
                   "elements": [{"type": "mrkdwn",
                                 "text": mrkdwn(f"champion-gateway · {alert.timestamp}",
                                                FIELD_TEXT_MAX)}]})
    text = mrkdwn(f"[{alert.severity}] {alert.title}: {alert.summary}", FALLBACK_TEXT_MAX)
    return {"text": text, "blocks": blocks}


def _version(version: str | None) -> str | None:
    return None if version is None else f"v{version}"


def display_url(url: str) -> str:
    """The webhook URL for messages: its last path segment is the secret, so mask it."""
    parts = urlsplit(url)
    head, _, tail = parts.path.rpartition("/")
    path = f"{head}/***" if tail else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, "***" if parts.query else "", ""))


class SlackNotifier:
    def __init__(self, name: str, url: str, *, timeout_s: float = 2.0, retries: int = 2,
                 backoff_s: float = 0.25, min_severity: str = "info") -> None:
        self.name = name
        self.min_severity = min_severity
        self._http = HttpSender(name, url, display_url=display_url(url), timeout_s=timeout_s,
                                retries=retries, backoff_s=backoff_s)

    @classmethod
    def from_spec(cls, spec: AlertSpec, path: str) -> SlackNotifier:
        if not spec.url:
            raise ConfigError(f"{path}.url: required for a slack notifier (the incoming "
                              "webhook URL, e.g. \"${SLACK_WEBHOOK_URL}\")")
        if spec.headers:
            raise ConfigError(f"{path}.headers: not used by a slack notifier")
        url = check_url(resolve_env_refs(spec.url, f"{path}.url"), f"{path}.url")
        return cls(spec.name or f"slack({path})", url, timeout_s=spec.timeout_s,
                   retries=spec.retries, backoff_s=spec.backoff_s,
                   min_severity=spec.min_severity)

    def send(self, alert: Alert) -> None:
        self._http.post(slack_payload(alert))

    def close(self) -> None:
        self._http.close()
