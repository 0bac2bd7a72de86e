"""A small client of the gateway's admin API, used by the CLI and the demo."""

from __future__ import annotations

import os
from typing import Any

import httpx

from core.errors import GatewayError


class AdminError(GatewayError):
    """The admin API refused a request or could not be reached."""


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

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AdminError(f"{self._url}{path}: unreachable ({exc})") from exc
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text[:200]
            raise AdminError(f"{method} {path}: {resp.status_code} {message}")
        return dict(resp.json())

    def close(self) -> None:
        self._http.close()


def format_status(view: dict[str, Any]) -> str:
    """A few human lines: phase, weights, models and the guards' states."""
    table = view.get("table", {})
    champ, chall = view.get("champion") or {}, view.get("challenger") or {}
    step = view.get("step")
    steps = view.get("steps") or []
    where = f" step {step + 1}/{len(steps)}" if step is not None and steps else ""
    lines = [
        f"phase: {view.get('phase')}{where}   table v{table.get('version')}   "
        f"challenger weight {table.get('challenger_weight', 0):g}% ({table.get('mode')})",
        f"champion: v{champ.get('version', '-')}   challenger: v{chall.get('version', '-')}",
    ]
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
    return "\n".join(lines)
