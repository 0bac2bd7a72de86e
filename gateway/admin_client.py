"""A small client of the gateway's admin API, used by the CLI and the demo."""

from __future__ import annotations

import os
from typing import Any

import httpx

from core.errors import GatewayError
from gateway.status_view import guard_rows, log_e_threshold, step_label, step_progress, text_bar


class AdminError(GatewayError):
    """The admin API refused a request or could not be reached. `status_code` is the HTTP
    status of a refusal, None when nothing answered."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    @property
    def unreachable(self) -> bool:
        """Nothing answered, or the server failed: worth retrying (a 4xx is not)."""
        return self.status_code is None or self.status_code >= 500


class AdminClient:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0,
                 actor: str = "cli") -> None:
        headers = {"x-gateway-actor": actor}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self._url = url

    @classmethod
    def from_env(cls, url: str, token_env: str = "GATEWAY_ADMIN_TOKEN",
                 actor: str = "cli") -> AdminClient:
        return cls(url, os.environ.get(token_env), actor=actor)

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/admin/rollout")

    def operate(self, op: str, reason: str = "") -> dict[str, Any]:
        return self._call("POST", f"/admin/rollout/{op}", json={"reason": reason})

    def report(self, rollout_id: str | None = None) -> str:
        """The rollout report's HTML page (the current or last rollout's, or `rollout_id`'s)."""
        params = {"rollout": rollout_id} if rollout_id else None
        resp = self._request("GET", "/admin/rollout/report", params=params)
        if not resp.headers.get("content-type", "").startswith("text/html"):
            raise AdminError(f"{self._url}/admin/rollout/report: the answer is not a report "
                             f"({resp.headers.get('content-type')})", resp.status_code)
        return resp.text

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AdminError(f"{self._url}{path}: unreachable ({exc})") from exc
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                if resp.status_code == 404:
                    # Serve's proxy, not the gateway: its app is not deployed (yet). Like no
                    # answer at all, worth retrying.
                    raise AdminError(f"{self._url}{path}: no gateway app there (yet): "
                                     f"{resp.text[:120]}") from None
                message = resp.text[:200]
            raise AdminError(f"{method} {path}: {resp.status_code} {message}", resp.status_code)
        return resp

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = self._request(method, path, **kwargs)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise AdminError(f"{self._url}{path}: the answer is not the gateway's admin API "
                             f"(not a JSON object: {resp.text[:80]!r})", resp.status_code)
        return body

    def close(self) -> None:
        self._http.close()


def format_status(view: dict[str, Any]) -> str:
    """A few human lines: phase, weights, models, the step's progress towards its gate, the
    guards' states and each guard's evidence."""
    table = view.get("table", {})
    champ, chall = view.get("champion") or {}, view.get("challenger") or {}
    label = step_label(view)
    where = f" {label}" if label and label != view.get("phase") else ""
    lines = [
        f"phase: {view.get('phase')}{where}   table v{table.get('version')}   "
        f"challenger weight {table.get('challenger_weight', 0):g}% ({table.get('mode')})",
        f"champion: v{champ.get('version', '-')}   challenger: v{chall.get('version', '-')}",
    ]
    progress = _progress_line(view)
    if progress:
        lines.append(progress)
    holds = view.get("holds") or []
    if holds:
        lines.append(f"HELD ({', '.join(holds)}): the step clock is stopped and resumes when "
                     "it clears")
    elif view.get("held"):
        lines.append("HELD: both arms degraded together (a shared incident); the step clock "
                     "is stopped and resumes when it clears")
    registry = view.get("registry") or {}
    aliases = registry.get("aliases")
    if aliases is not None:
        named = "   ".join(f"{a}: v{v}" for a, v in sorted(aliases.items())) or "none"
        lines.append(f"registry aliases: {named}")
    if registry and not registry.get("reachable", True):
        lines.append(f"REGISTRY UNREACHABLE: {registry.get('error')}")
    lines.extend(f"note: {n}" for n in registry.get("notes") or [])
    if view.get("reason"):
        lines.append(f"reason: {view['reason']}")
    verdict = view.get("verdict") or {}
    states = [f"{r['guard']}={r['state']}" for r in verdict.get("results", [])
              if r.get("signal", True)]
    if states:
        lines.append("guards: " + "  ".join(states))
    lines.extend(_evidence_lines(view))
    return "\n".join(lines)


def _progress_line(view: dict[str, Any]) -> str | None:
    p = step_progress(view)
    if p is None:
        return None
    return (f"progress ({view.get('phase')} at {p.weight:g}%): "
            f"requests {p.requests_text()} {text_bar(p.requests_fraction)}   "
            f"time {p.time_text()} {text_bar(p.time_fraction)}")


def _evidence_lines(view: dict[str, Any]) -> list[str]:
    """Per guard: state, value vs threshold, the test's log e-value vs where it rejects,
    requests per arm (champion / challenger), then the guard's own words, shortened."""
    rows = guard_rows(view, detail_width=90)
    if not rows:
        return []
    limit = log_e_threshold(view)
    head = "evidence" + (f" (a test rejects at log e {limit:.2f}):" if limit else ":")
    width = max(len(r.guard) for r in rows)
    lines = [head]
    for r in rows:
        lines.append(f"  {r.guard:<{width}}  {r.state:<12}  {r.value:<18}  "
                     f"{r.evidence or '-':<19}  n {r.n}")
        if r.detail:
            lines.append(f"    {r.detail}")
    return lines
