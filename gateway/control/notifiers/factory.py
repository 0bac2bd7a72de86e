"""The one factory of alert notifiers: a config entry (`AlertSpec`) -> Notifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.errors import ConfigError
from gateway.config import AlertSpec
from gateway.control.notifiers.base import SEVERITIES, Notifier
from gateway.control.notifiers.pagerduty import PagerDutyNotifier
from gateway.control.notifiers.slack import SlackNotifier
from gateway.control.notifiers.webhook import WebhookNotifier

NOTIFIERS: dict[str, Callable[[AlertSpec, str], Notifier]] = {
    "webhook": WebhookNotifier.from_spec,
    "slack": SlackNotifier.from_spec,
    "pagerduty": PagerDutyNotifier.from_spec,
}


def make_notifier(spec: AlertSpec, path: str = "alerts[0]") -> Notifier:
    """The notifier for one config entry. ConfigError names the field at fault under `path`
    (unknown type, missing url, unset environment variable for a key or header)."""
    factory = NOTIFIERS.get(spec.type)
    if factory is None:
        raise ConfigError(f"{path}.type: unknown notifier type {spec.type!r} "
                          f"(known: {', '.join(NOTIFIERS)})")
    if spec.min_severity not in SEVERITIES:
        raise ConfigError(f"{path}.min_severity: must be one of {', '.join(SEVERITIES)}, "
                          f"got {spec.min_severity!r}")
    return factory(spec, path)


def make_notifiers(specs: Sequence[AlertSpec], path: str = "alerts") -> list[Notifier]:
    return [make_notifier(spec, f"{path}[{i}]") for i, spec in enumerate(specs)]
