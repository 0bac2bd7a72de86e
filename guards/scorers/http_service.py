"""A scorer that asks an external evaluation service over HTTP (an LLM judge, a NLI model...).

The only scorer in guards/ that does I/O; it runs in the asynchronous hallucination evaluator,
never on the request path or inside a guard.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.errors import ConfigError
from core.httppost import PostError, Retry, post_json
from core.redact import redact_url
from guards.scorers.base import ScorerError

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_RETRIES = 5
_MAX_BACKOFF_S = 10.0


@dataclass(frozen=True)
class HttpScorer:
    """POSTs `{"context", "response", "question"}` as JSON to `url` and reads a score back.

    `score_key` names the score in the JSON reply; a dotted key ("result.score") walks nested
    objects. The score must be a number in [0, 1] (higher = more likely hallucinated).
    Each attempt is bounded by `timeout_s` (connect, each read, and the whole body); failures
    that may be transient (transport errors, timeouts, 408/429/500/502/503/504) are retried up
    to `retries` more times after `backoff_s * 2 ** (retry - 1)` seconds, or a 429's
    Retry-After (`core.httppost`). Other statuses and bad payloads fail at once. With
    `token_env`, the bearer token is read from that environment variable.
    Worst case one call takes about (retries + 1) * timeout_s plus the back-off sleeps.
    """

    url: str
    score_key: str = "score"
    timeout_s: float = 2.0
    retries: int = 1
    backoff_s: float = 0.1
    token_env: str | None = None
    threshold: float = 0.5
    name: str = "http"
    max_response_bytes: int = 1 << 20
    _local: threading.local = field(
        default_factory=threading.local, init=False, repr=False, compare=False
    )
    _clients: list[httpx.Client] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"scorer.url: expected an http(s) URL, got {self.display_url!r}")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ConfigError(f"scorer.timeout_s: must be a positive number, got {self.timeout_s}")
        if not 0 <= self.retries <= _MAX_RETRIES:
            raise ConfigError(f"scorer.retries: must be 0..{_MAX_RETRIES}, got {self.retries}")
        if self.backoff_s < 0:
            raise ConfigError(f"scorer.backoff_s: must be >= 0, got {self.backoff_s}")
        if not self.score_key:
            raise ConfigError("scorer.score_key: must not be empty")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"scorer.threshold: must be in [0, 1], got {self.threshold}")
        if self.token_env is not None and not os.environ.get(self.token_env):
            raise ConfigError(f"scorer.token_env: environment variable {self.token_env} is unset")

    @property
    def display_url(self) -> str:
        """`url` for messages and logs: a password, query values (an API key) and the
        fragment masked (`core.redact`)."""
        return redact_url(self.url)

    def __repr__(self) -> str:  # the generated repr would print the URL with its secrets
        return (f"HttpScorer(url={self.display_url!r}, score_key={self.score_key!r}, "
                f"token_env={self.token_env!r}, name={self.name!r})")

    def score(self, context: str, response: str, question: str | None = None) -> float:
        payload = {"context": context, "response": response, "question": question}
        for key, value in payload.items():
            if not isinstance(value, str) and not (key == "question" and value is None):
                raise ScorerError(f"{self.name}: {key} must be a string, got {type(value)}")
        try:
            body = post_json(self._client(), self.url, payload, retries=self.retries,
                             backoff_s=self.backoff_s, max_backoff_s=_MAX_BACKOFF_S,
                             headers=self._headers(),
                             retry_status=_RETRYABLE_STATUS.__contains__, read=self._read)
        except PostError as exc:
            raise ScorerError(self._failure(exc)) from None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise ScorerError(f"{self.name}: POST {self.display_url} returned invalid JSON: "
                              f"{exc}") from exc
        return self._extract(document)

    def _failure(self, exc: PostError) -> str:
        if exc.kind == "rejected":
            return f"{self.name}: POST {self.display_url} answered HTTP {exc.status}"
        if exc.kind == "failed":
            return f"{self.name}: POST {self.display_url} failed: {exc.reason}"
        return (f"{self.name}: POST {self.display_url} failed after {exc.attempts} attempts: "
                f"{exc.reason}")

    def _read(self, reply: httpx.Response, started: float) -> bytes:
        deadline = started + self.timeout_s
        chunks: list[bytes] = []
        size = 0
        for chunk in reply.iter_bytes():
            size += len(chunk)
            if size > self.max_response_bytes:
                raise ScorerError(
                    f"{self.name}: POST {self.display_url} reply exceeds "
                    f"{self.max_response_bytes} bytes"
                )
            if time.monotonic() > deadline:
                # A server trickling bytes must not stretch the attempt past its timeout.
                raise Retry(f"reply body not complete within {self.timeout_s}s")
            chunks.append(chunk)
        return b"".join(chunks)

    def _extract(self, document: Any) -> float:
        value = document
        for part in self.score_key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise ScorerError(
                    f"{self.name}: POST {self.display_url} reply lacks key {self.score_key!r}"
                )
            value = value[part]
        valid = isinstance(value, int | float) and not isinstance(value, bool)
        if not valid or not 0.0 <= value <= 1.0:
            raise ScorerError(
                f"{self.name}: POST {self.display_url} key {self.score_key!r} is {value!r}, "
                "expected a number in [0, 1]"
            )
        return float(value)

    def _headers(self) -> dict[str, str]:
        if self.token_env is None:
            return {}
        token = os.environ.get(self.token_env)
        if not token:
            raise ScorerError(f"{self.name}: environment variable {self.token_env} is unset")
        return {"Authorization": f"Bearer {token}"}

    def _client(self) -> httpx.Client:
        # One pooled client per thread: keeps connection reuse without sharing one across threads.
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None or client.is_closed:
            client = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        """Close the pooled connections of every thread (the scorer stays usable)."""
        with self._lock:
            clients, self._clients[:] = list(self._clients), []
        for client in clients:
            client.close()
