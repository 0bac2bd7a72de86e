"""What the LLM end-to-end tests share: HaluEval items, chat bodies, the demo text models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.demo.textgen import GroundedLM, UngroundedLM, load_corpus, register_textgen, train_lm
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry

DATA = Path(__file__).resolve().parents[2] / "data" / "halueval_qa_slice.jsonl"
ITEMS = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def chat_body(item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A chat request that gives the model the item's knowledge as the system message."""
    return {"model": "gw", "max_tokens": 24,
            "messages": [{"role": "system", "content": item["knowledge"]},
                         {"role": "user", "content": item["question"]}], **extra}


def register_lms(registry: ModelRegistry, *, slow: bool = False) -> dict[str, ModelRef]:
    """A grounded and an ungrounded text model (and a grounded one at 50 ms per token)."""
    lm = train_lm(load_corpus())
    refs = {"grounded": register_textgen(registry, GroundedLM(lm), "grounded LM"),
            "ungrounded": register_textgen(registry, UngroundedLM(lm), "ungrounded LM")}
    if slow:
        refs["grounded_slow"] = register_textgen(
            registry, GroundedLM(lm, delay_per_token_s=0.05), "grounded LM, 50 ms per token")
    return refs
