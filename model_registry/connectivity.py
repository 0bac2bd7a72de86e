"""Fail fast when an HTTP tracking server is unreachable.

MLflow's HTTP client retries 7 times with exponential backoff (minutes) and a 120 s timeout.
Its knobs are environment variables read on every request, and MLflow takes no per-client
or per-call setting, so we (1) probe `<uri>/health` once with a short timeout before using a
server, and (2) lower MLflow's retry/timeout defaults for the process, only where the user has
not set them (`os.environ.setdefault`). Setting them around each call instead would race with
other threads using MLflow (and `setenv` is not thread-safe); process-wide defaults do not.
"""

from __future__ import annotations

import os

import httpx

from core.logs import get_logger
from model_registry.errors import RegistryUnavailableError

log = get_logger(__name__)

DEFAULT_PROBE_TIMEOUT_S = 2.0
# Connection refused then fails in ~1-3 s (two quick retries) instead of minutes; 10 s per
# request still leaves room for slow artifact responses.
FAST_FAIL_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def apply_fast_fail_defaults() -> dict[str, str]:
    """Set MLflow's HTTP retry/timeout env vars where unset; return the ones this call set."""
    applied = {}
    for key, value in FAST_FAIL_ENV.items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    if applied:
        log.info("MLflow HTTP client set to fail fast (process-wide): %s", applied)
    return applied


def probe_http(uri: str, model: str, timeout_s: float = DEFAULT_PROBE_TIMEOUT_S) -> None:
    """Raise RegistryUnavailableError unless `<uri>/health` answers within `timeout_s`.

    Any answer below 500 counts as reachable (a proxy may put auth or a prefix in front of
    `/health`); only transport failures and 5xx mean unavailable.
    """
    url = f"{uri.rstrip('/')}/health"
    try:
        # The probe exchanges no data, it only checks that something answers; TLS
        # verification stays with MLflow's own requests (which honour its CA settings).
        response = httpx.get(url, timeout=timeout_s, verify=False)
    except httpx.HTTPError as exc:
        raise RegistryUnavailableError(
            f"MLflow tracking server unreachable for model {model!r}: GET /health failed "
            f"within {timeout_s:g} s: {type(exc).__name__}: {exc}",
            model=model, tracking_uri=uri,
        ) from exc
    if response.status_code >= 500:
        raise RegistryUnavailableError(
            f"MLflow tracking server unavailable for model {model!r}: GET /health answered "
            f"{response.status_code}",
            model=model, tracking_uri=uri,
        )
