"""URLs for messages and logs, with their secrets masked.

One rule for every caller: a password becomes `***`. Query strings may carry secrets too
(tokens, signatures), so by default their values are hidden and the fragment dropped; a
caller whose URIs put nothing secret there (a tracking URI) keeps them with `keep_query`.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit


def redact_url(url: str, *, keep_query: bool = False) -> str:
    """`url` without its password; without its query values and fragment unless
    `keep_query`. With `keep_query` a URL that has no password comes back unchanged (byte
    for byte: rebuilding would rewrite e.g. `sqlite:////abs/path`)."""
    parts = urlsplit(url)
    if keep_query and parts.password is None:
        return url
    netloc = parts.netloc if parts.password is None else _masked_netloc(parts, keep_query)
    if keep_query:
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def _masked_netloc(parts: SplitResult, keep_query: bool) -> str:
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    # An empty user name ("scheme://:secret@host"): the two callers always differed here
    # (alert URLs keep the ":***@" mark, tracking URIs drop the empty credentials).
    if not parts.username and keep_query:
        return host
    return f"{parts.username}:***@{host}"
