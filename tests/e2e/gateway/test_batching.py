"""Dynamic batching in the model slots, end to end: concurrent clients' requests share model
calls (`slots.batching`), and each client still gets its own answer, its own error, or its
own 4xx (real MLflow model, real Ray Serve, real HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.demo.models import N_FEATURES, tensor_signature
from model_registry.registry import ModelRegistry
from model_registry.testing import PoisonRowModel, log_pyfunc_model
from tests.e2e.gateway.harness import Deployed, _HandleLoop, deployed, gateway_config

pytestmark = pytest.mark.slow

SCALE = 2.0
POISONED = {5, 17, 33}  # these clients send a row the model raises on
CLIENTS = 48


@pytest.fixture(scope="module")
def batched_app(ray_serve: str, registry: ModelRegistry) -> Iterator[Deployed]:
    # 50 ms a call whatever its rows (a GPU forward pass), so concurrent requests queue up.
    info = log_pyfunc_model(registry.tracking_uri, PoisonRowModel(SCALE, 13.0, delay_s=0.05),
                            signature=tensor_signature())
    champion = registry.register(info.runs_uri)
    cfg = gateway_config({"slots": {"batching": {"max_batch_size": 32,
                                                 "batch_wait_timeout_s": 0.01}}})
    with deployed(ray_serve, registry, champion, None, cfg) as app:
        yield app


def _row(i: int) -> list[list[float]]:
    return [[13.0 if i in POISONED else i + 0.5] * N_FEATURES]


async def _send_all(url: str) -> tuple[list[httpx.Response], httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60.0,
                                 limits=httpx.Limits(max_connections=CLIENTS + 1)) as client:
        calls = [client.post("/v1/predict", json={"inputs": _row(i)}) for i in range(CLIENTS)]
        bad = client.post("/v1/predict", json={"inputs": [[1.0, 2.0]]})  # wrong shape
        *answers, refused = await asyncio.gather(*calls, bad)
    return list(answers), refused


def _slot_views(app: Deployed) -> list[dict[str, Any]]:
    async def ask() -> list[dict[str, Any]]:
        from ray import serve

        handle = serve.get_deployment_handle("slot_a", app.cfg.app_name)
        return list(await handle.broadcast("describe").results_async(timeout_s=10.0))

    return list(_HandleLoop.run(ask()))


def test_concurrent_requests_share_calls_and_keep_their_own_answers(
        batched_app: Deployed) -> None:
    for _ in range(3):  # a few rounds: on a busy machine one round may trickle in
        answers, refused = asyncio.run(_send_all(batched_app.url))
        for i, resp in enumerate(answers):
            if i in POISONED:
                assert resp.status_code == 502, (i, resp.status_code, resp.text)
                assert "poisoned row" in resp.text
            else:
                assert resp.status_code == 200, (i, resp.status_code, resp.text)
                assert resp.json()["outputs"] == [pytest.approx(SCALE * N_FEATURES * (i + 0.5))]
        assert refused.status_code == 422 and "expected shape" in refused.text
        sizes = {int(k): n for view in _slot_views(batched_app)
                 for k, n in view["batch_sizes"].items()}
        if any(k > 1 for k in sizes):
            break
    assert any(k > 1 for k in sizes), f"no request shared a model call: {sizes}"
    # every answered request is counted once, whatever batch it ran in
    assert sum(sizes.values()) >= CLIENTS - len(POISONED)


def test_batched_requests_are_each_observed(batched_app: Deployed) -> None:
    """The comparison window gets one observation per request, batched or not, and the
    poisoned rows count as the model's errors, not the batch-mates'."""
    before = batched_app.status()["replica_counts"]
    asyncio.run(_send_all(batched_app.url))

    def counted() -> dict[str, int] | None:
        now = batched_app.status()["replica_counts"]
        ok = now.get("champion.ok", 0) - before.get("champion.ok", 0)
        return now if ok >= CLIENTS - len(POISONED) else None

    from tests.e2e.gateway.harness import wait_for

    now = wait_for(counted, 20.0, "the batch's observations",
                   detail=lambda: batched_app.status()["replica_counts"])
    assert now.get("champion.ok", 0) - before.get("champion.ok", 0) == CLIENTS - len(POISONED)
    assert now.get("champion.server_error", 0) - before.get("champion.server_error", 0) == \
        len(POISONED)
