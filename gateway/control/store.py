"""Where the supervisor keeps what must survive a restart: tags in the model registry.

- the rollout state, as a registered-model tag per gateway app;
- the judge's evidence (every e-process, the matched strata), on the challenger's version:
  version tags are unbounded text in MLflow's SQL store, registered-model tags are not;
- the verdict on a version, which keeps an already judged challenger from a second rollout.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from core.logs import get_logger
from gateway.control import rollout as ro
from gateway.control.ports import RolloutRegistry
from model_registry.refs import VERDICT_TAG, ModelRef

__all__ = [
    "JUDGE_TAG",
    "STATE_TAG",
    "VERDICT_TAG",
    "RolloutStore",
    "decode_judge_state",
    "encode_judge_state",
]

log = get_logger(__name__)

STATE_TAG = "gateway.rollout_state"
JUDGE_TAG = "gateway.judge_state"


def encode_judge_state(state: dict[str, Any]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(state, separators=(",", ":")).encode(),
                                          6)).decode()


def decode_judge_state(text: str) -> dict[str, Any]:
    data = json.loads(zlib.decompress(base64.b64decode(text)))
    if not isinstance(data, dict):
        raise ValueError("judge state is not an object")
    return data


class RolloutStore:
    """One gateway app's persisted rollout in `registry` (blocking calls)."""

    def __init__(self, registry: RolloutRegistry, app_name: str) -> None:
        self._registry = registry
        self.state_tag = f"{STATE_TAG}.{app_name}"
        self.judge_tag = f"{JUDGE_TAG}.{app_name}"

    def load_state(self, champion: ModelRef) -> ro.RolloutState:
        """The persisted state if it is an unfinished rollout or still has `champion` (the
        registry's), else a fresh one with `champion`: it may have been moved while the
        gateway was down."""
        raw = self._registry.get_model_tags().get(self.state_tag)
        if raw:
            try:
                state = ro.RolloutState.from_dict(json.loads(raw))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("ignoring unreadable persisted state: %s", exc)
            else:
                if state.phase in ro.ACTIVE or state.champion == champion:
                    log.info("resumed rollout %s in phase %s step %d", state.rollout_id,
                             state.phase.value, state.step)
                    return state
        return ro.initial_state(champion)

    def save_state(self, state: ro.RolloutState) -> None:
        self._registry.set_model_tag(self.state_tag, json.dumps(state.to_dict(),
                                                                separators=(",", ":")))

    def load_judge(self, version: str) -> dict[str, Any] | None:
        """The judge state saved on `version`, None if none; raises if unreadable."""
        raw = self._registry.get_version_tags(version).get(self.judge_tag)
        return decode_judge_state(raw) if raw else None

    def save_judge(self, version: str, encoded: str) -> None:
        """Save `encode_judge_state(judge.state())` on `version` (encode it where the judge
        lives: its state refers to live data)."""
        self._registry.set_version_tag(version, self.judge_tag, encoded)

    def verdict(self, version: str) -> str | None:
        """The verdict tag of `version` (rolled_back, promoted, ...), None if not judged."""
        return self._registry.get_version_tags(version).get(VERDICT_TAG)
