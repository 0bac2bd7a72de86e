"""One JSON POST with bounded retries: the only retry loop for the gateway's outbound calls
(alert notifiers, the HTTP evaluation scorer).

Retried: transport errors and timeouts, 429 and 5xx answers (`retry_status` can change that
set) and whatever a `read` hook raises as `Retry`. The wait before retry n (n = 1, 2, ...)
is `backoff_s * 2 ** (n - 1)`; a 429's Retry-After (in seconds) replaces it; no wait exceeds
`max_backoff_s`. Any other non-2xx answer fails at once: retrying a 400 or 404 would only
repeat the same rejection. Every failure ends in one `PostError`, never an httpx error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, overload

import httpx

from core.redact import redact_url

T = TypeVar("T")
Kind = Literal["gave_up", "rejected", "failed"]
EXCERPT_BYTES = 4096  # of an error answer's body, for messages
EXCERPT_S = 1.0  # a server trickling an error body must not stall the retry loop


class Retry(Exception):
    """Raised by a `read` hook for a failure worth another attempt; its text is the reason."""


class PostError(Exception):
    """A POST that failed for good.

    `kind`: "gave_up" (every attempt failed in a way worth retrying), "rejected" (an answer
    not worth retrying, e.g. 400) or "failed" (an error that is not transient, e.g. a body
    that cannot be decoded). `status` and `text` (the start of the answer's body) are set
    when the last failure was an HTTP answer; `reason` is "HTTP <status>" then, else the
    error. The message names the URL redacted, so it is safe to log."""

    def __init__(self, url: str, kind: Kind, reason: str, attempts: int,
                 status: int | None = None, text: str = "") -> None:
        super().__init__(f"POST {redact_url(url)} failed after {attempts} attempt(s): "
                         f"{reason}")
        self.url, self.kind, self.reason, self.attempts = url, kind, reason, attempts
        self.status, self.text = status, text


class _Transient(Exception):
    def __init__(self, reason: str, status: int | None = None, text: str = "",
                 wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.text, self.wait_s = reason, status, text, wait_s


def retryable_status(status: int) -> bool:
    """429 (asked to slow down) and 5xx (the server's trouble) may pass on a later try."""
    return status == 429 or status >= 500


@overload
def post_json(client: httpx.Client, url: str, payload: Any, *, retries: int = ...,
              backoff_s: float = ..., max_backoff_s: float = ...,
              headers: Mapping[str, str] | None = ...,
              retry_status: Callable[[int], bool] = ..., read: None = ...,
              on_retry: Callable[[int, str, float], None] | None = ...) -> httpx.Response: ...


@overload
def post_json(client: httpx.Client, url: str, payload: Any, *, retries: int = ...,
              backoff_s: float = ..., max_backoff_s: float = ...,
              headers: Mapping[str, str] | None = ...,
              retry_status: Callable[[int], bool] = ...,
              read: Callable[[httpx.Response, float], T],
              on_retry: Callable[[int, str, float], None] | None = ...) -> T: ...


def post_json(client: httpx.Client, url: str, payload: Any, *, retries: int = 2,
              backoff_s: float = 0.25, max_backoff_s: float = 10.0,
              headers: Mapping[str, str] | None = None,
              retry_status: Callable[[int], bool] = retryable_status,
              read: Callable[[httpx.Response, float], T] | None = None,
              on_retry: Callable[[int, str, float], None] | None = None) -> T | httpx.Response:
    """POST `payload` as JSON to `url` with `client`, up to `retries + 1` attempts.

    Returns `read(response, started)` for the first 2xx answer, or the fully read response
    without `read`. The response is streamed, so `read` may bound what it reads: `started`
    is the `time.monotonic()` at which the attempt began, for a bound on the whole attempt.
    `on_retry(retry, reason, wait_s)` is called before each wait. Raises `PostError`;
    anything else `read` raises (other than `Retry` and httpx errors) propagates unchanged."""
    last: _Transient | None = None
    for attempt in range(retries + 1):
        try:
            return _attempt(client, url, payload, headers, retry_status, read, attempt + 1)
        except _Transient as exc:
            last = exc
        if attempt < retries:
            wait = backoff_s * 2 ** attempt if last.wait_s is None else last.wait_s
            wait = min(wait, max_backoff_s)
            if on_retry is not None:
                on_retry(attempt + 1, last.reason, wait)
            time.sleep(wait)
    assert last is not None  # the loop ran at least once and every pass failed
    raise PostError(url, "gave_up", last.reason, retries + 1, last.status, last.text)


def _attempt(client: httpx.Client, url: str, payload: Any,
             headers: Mapping[str, str] | None, retry_status: Callable[[int], bool],
             read: Callable[[httpx.Response, float], T] | None, attempt: int
             ) -> T | httpx.Response:
    started = time.monotonic()
    try:
        with client.stream("POST", url, json=payload, headers=headers) as response:
            if response.is_success:
                if read is not None:
                    return read(response, started)
                response.read()
                return response
            status, text = response.status_code, _excerpt(response)
            if not retry_status(status):
                raise PostError(url, "rejected", f"HTTP {status}", attempt, status, text)
            asked = _retry_after(response) if status == 429 else None
            raise _Transient(f"HTTP {status}", status, text, asked)
    except Retry as exc:
        raise _Transient(str(exc)) from exc
    except httpx.TransportError as exc:  # connect / read / write errors and timeouts
        raise _Transient(describe(exc)) from exc
    except httpx.HTTPError as exc:  # e.g. a body that fails to decode: not transient
        raise PostError(url, "failed", describe(exc), attempt) from exc


def describe(exc: BaseException) -> str:
    """`Name: message`, or just the name when the message is empty (httpx timeouts)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _excerpt(response: httpx.Response) -> str:
    data = b""
    deadline = time.monotonic() + EXCERPT_S
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= EXCERPT_BYTES or time.monotonic() > deadline:
                break
    except httpx.HTTPError:
        pass  # the status alone says enough
    return data[:EXCERPT_BYTES].decode(response.encoding or "utf-8", errors="replace")


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return None  # an HTTP date, or garbage: fall back to our own backoff
