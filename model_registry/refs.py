"""Immutable references to registered model versions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
KNOWN_ALIASES = (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)
# Version tags the gateway writes when it judges a version (and the CLI reads).
VERDICT_TAG = "gateway.verdict"
REASON_TAG = "gateway.reason"


@dataclass(frozen=True)
class ModelRef:
    """One registered model version. Always points at an immutable version, never an alias."""

    name: str
    version: str
    source: str
    run_id: str | None = None

    @property
    def uri(self) -> str:
        """The immutable MLflow URI a slot loads (`models:/name/version`)."""
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "source": self.source,
                "run_id": self.run_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        return cls(name=str(data["name"]), version=str(data["version"]),
                   source=str(data["source"]), run_id=data.get("run_id"))
