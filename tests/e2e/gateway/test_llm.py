"""LLM serving end to end on the CPU path: a real (small) text-generating MLflow model behind
the OpenAI-compatible endpoints, called with the official `openai` client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from tests.e2e.gateway.harness import Deployed, deployed, gateway_config
from tests.e2e.gateway.llm_helpers import ITEMS, register_lms
from tests.e2e.gateway.llm_helpers import chat_body as helper_chat_body

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lms(registry: ModelRegistry) -> dict[str, ModelRef]:
    return register_lms(registry, slow=True)


@pytest.fixture(scope="module")
def llm_app(ray_serve: str, registry: ModelRegistry,
            lms: dict[str, ModelRef]) -> Iterator[Deployed]:
    cfg = replace(gateway_config(weight=50.0), app_name="gw-llm")
    with deployed(ray_serve, registry, lms["grounded"], lms["grounded_slow"], cfg) as app:
        yield app


def chat_body(item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return helper_chat_body(item, **{"seed": 7, **extra})


def test_openai_client_completes_and_streams_chat(llm_app: Deployed) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{llm_app.url}/v1", api_key="unused", max_retries=0)
    item = ITEMS[0]
    arms = set()
    for _ in range(6):
        raw = client.chat.completions.with_raw_response.create(
            model="gw", max_tokens=16, messages=chat_body(item)["messages"])
        arms.add(raw.headers["x-gateway-arm"])
        completion = raw.parse()
        assert completion.choices[0].message.content
        assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert arms <= {"champion", "challenger"} and arms
    stream = client.chat.completions.create(model="gw", max_tokens=12, stream=True,
                                            messages=chat_body(item)["messages"])
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces).strip()
    text = client.completions.create(model="gw", prompt=item["question"], max_tokens=8)
    assert text.choices[0].text.strip()


def test_llm_bad_input_is_a_clear_4xx(llm_app: Deployed) -> None:
    resp = llm_app.client.post("/v1/chat/completions", json={"messages": "hi"})
    assert resp.status_code == 422 and resp.json()["error"]["param"] == "messages"
    resp = llm_app.client.post("/v1/completions", json={"prompt": "x", "n": 3})
    assert resp.status_code == 422 and "n" in resp.json()["error"]["message"]
    resp = llm_app.client.post("/v1/completions", content=b"{oops")
    assert resp.status_code == 400


def test_the_first_chunk_arrives_before_the_arm_finishes_generating(
        llm_app: Deployed) -> None:
    body = chat_body(ITEMS[1], max_tokens=30, stream=True)
    headers = {"x-gateway-key": _key_for(llm_app, "challenger")}  # the 50 ms/token arm
    start = time.perf_counter()
    first_at = None
    events = []
    with httpx.stream("POST", f"{llm_app.url}/v1/chat/completions", json=body,
                      headers=headers, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-gateway-arm"] == "challenger"
        for line in resp.iter_lines():
            if line.startswith("data: "):
                first_at = first_at or time.perf_counter() - start
                events.append(line[6:])
    total = time.perf_counter() - start
    assert events[-1] == "[DONE]"
    tokens = sum(1 for e in events[:-1] if json.loads(e)["choices"]
                 and json.loads(e)["choices"][0]["delta"].get("content"))
    assert tokens >= 10
    assert first_at is not None and first_at < total / 2, (first_at, total)
    assert total >= 0.05 * (tokens - 1)  # the arm really took its time per token


def _key_for(app: Deployed, arm: str) -> str:
    for i in range(200):
        key = f"user-{i}"
        resp = app.client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1},
                               headers={"x-gateway-key": key})
        if resp.headers.get("x-gateway-arm") == arm:
            return key
    raise AssertionError(f"no sticky key lands on the {arm}")
