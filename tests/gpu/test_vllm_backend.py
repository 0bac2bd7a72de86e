"""The vLLM backend.

GPU tests (marked `gpu`; tests/conftest.py skips them with the reason where no NVIDIA GPU is
usable) build a tiny Llama checkpoint on local disk, register it in a SQLite MLflow registry
and serve it with vLLM. The unmarked tests run everywhere: the clear load error on machines
without vLLM or a GPU, the weights-location convention, and the engine-loop relay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from core.errors import InputError, ModelLoadError
from gateway.serving.backends.vllm import (
    INSTALL_HINT,
    WEIGHTS_URI_TAG,
    EngineLoop,
    VllmBackend,
    register_vllm_weights,
    resolve_weights_dir,
    runtime_problems,
)
from gateway.serving.llm.openai_parse import parse_chat, parse_completion
from model_registry.refs import ModelRef
from model_registry.registry import ModelRegistry
from model_registry.testing import log_linear_model, use_tracking_uri

# ---- everywhere --------------------------------------------------------------------------


@pytest.mark.skipif(not runtime_problems(), reason="vLLM and a GPU are usable here")
def test_load_explains_what_is_missing() -> None:
    ref = ModelRef(name="llm", version="3", source="/nowhere")
    with pytest.raises(ModelLoadError) as info:
        VllmBackend().load(ref)
    message = str(info.value)
    assert message.startswith("model llm version 3: " + INSTALL_HINT)
    assert "pip install -e '.[vllm]'" in message or "no usable NVIDIA GPU" in message


def test_an_unloaded_backend_refuses_requests() -> None:
    with pytest.raises(ModelLoadError, match="no model loaded"):
        VllmBackend().predict({"prompt": "hi"})


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    db = tmp_path_factory.mktemp("vllm-registry") / "mlflow.db"
    return ModelRegistry("vllm-test", f"sqlite:///{db}")


def _weights_dir(root: Path) -> Path:
    """A directory that follows the weights convention (config.json and friends)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "tokenizer.json").write_text("{}")
    return root


@pytest.mark.parametrize("copy", [False, True])
def test_registered_weights_resolve_to_their_directory(registry: ModelRegistry,
                                                       tmp_path: Path, copy: bool) -> None:
    weights = _weights_dir(tmp_path / "weights-src")
    ref = register_vllm_weights(registry, weights, f"copy={copy}", copy=copy)
    tags = registry.get_version_tags(ref.version)
    assert (WEIGHTS_URI_TAG in tags) is not copy
    with use_tracking_uri(registry.tracking_uri):
        found = resolve_weights_dir(ref)
    assert (found / "config.json").read_text() == (weights / "config.json").read_text()
    assert (found == weights) is not copy  # a pointer, or a copy in the artifacts


def test_a_weights_pointer_file_is_followed_when_the_tag_is_gone(registry: ModelRegistry,
                                                                 tmp_path: Path) -> None:
    weights = _weights_dir(tmp_path / "w")
    ref = register_vllm_weights(registry, weights, "pointer")
    MlflowClient(registry.tracking_uri).delete_model_version_tag(
        registry.model_name, ref.version, WEIGHTS_URI_TAG)
    with use_tracking_uri(registry.tracking_uri):
        assert resolve_weights_dir(ref) == weights


def test_versions_without_weights_are_a_clear_load_error(registry: ModelRegistry,
                                                         tmp_path: Path) -> None:
    info = log_linear_model(registry.tracking_uri, 1.0, 0.0)
    plain = registry.register(info.runs_uri)
    with use_tracking_uri(registry.tracking_uri), \
            pytest.raises(ModelLoadError, match=f"version {plain.version}: no weights found"):
        resolve_weights_dir(plain)
    registry.set_version_tag(plain.version, WEIGHTS_URI_TAG, str(tmp_path))
    with use_tracking_uri(registry.tracking_uri), \
            pytest.raises(ModelLoadError, match="not a weights directory"):
        resolve_weights_dir(plain)


def test_registering_a_non_weights_directory_fails(registry: ModelRegistry,
                                                   tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        register_vllm_weights(registry, tmp_path, "empty")


@pytest.fixture()
def engine_loop() -> Iterator[EngineLoop]:
    loop = EngineLoop(name="test-engine-loop")
    yield loop
    loop.close()


def test_engine_loop_runs_coroutines_on_its_own_thread(engine_loop: EngineLoop) -> None:
    import threading

    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert engine_loop.call(where(), 5.0) == "test-engine-loop"
    assert asyncio.run(engine_loop.run(where())) == "test-engine-loop"


def test_relay_streams_each_item_as_it_is_produced(engine_loop: EngineLoop) -> None:
    async def produce() -> AsyncIterator[int]:
        for i in range(5):
            await asyncio.sleep(0.05)
            yield i

    async def consume() -> list[tuple[int, float]]:
        started = time.perf_counter()
        return [(i, time.perf_counter() - started) async for i in engine_loop.relay(produce)]

    got = asyncio.run(consume())
    assert [i for i, _ in got] == [0, 1, 2, 3, 4]
    assert got[0][1] < 0.15 < got[-1][1]  # not buffered until the end


def test_relay_passes_errors_and_cancels_the_producer(engine_loop: EngineLoop) -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise ValueError("engine failed")

    async def drain() -> list[int]:
        return [i async for i in engine_loop.relay(failing)]

    with pytest.raises(ValueError, match="engine failed"):
        asyncio.run(drain())

    state: dict[str, Any] = {"closed": False}

    async def endless() -> AsyncGenerator[int, None]:
        try:
            i = 0
            while True:
                await asyncio.sleep(0.01)
                yield i
                i += 1
        finally:
            state["closed"] = True  # vLLM aborts the request here

    async def take_two() -> list[int]:
        stream = engine_loop.relay(endless)
        got = [await anext(stream), await anext(stream)]
        await stream.aclose()
        return got

    assert asyncio.run(take_two()) == [0, 1]
    deadline = time.monotonic() + 2.0
    while not state["closed"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state["closed"]


# ---- on a GPU ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(registry: ModelRegistry, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[VllmBackend]:
    pytest.importorskip("vllm", reason="the `vllm` extra is not installed")
    from gateway.demo.hf_tiny import build_tiny_llama
    from gateway.demo.textgen import load_corpus

    weights = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), load_corpus())
    ref = register_vllm_weights(registry, weights, "tiny llama")
    backend = VllmBackend(gpu_memory_utilization=0.3, max_model_len=512, enforce_eager=True,
                          max_tokens_limit=256)
    with use_tracking_uri(registry.tracking_uri):
        backend.load(ref)
    try:
        backend.health_check()
        yield backend
    finally:
        backend.close()


@pytest.mark.gpu
def test_generate_and_stream_agree_greedily(served: VllmBackend) -> None:
    request = parse_completion({"prompt": "The capital of France", "max_tokens": 24,
                                "temperature": 0, "seed": 1}, 256)
    result = asyncio.run(served.generate(request))
    assert 1 <= result.completion_tokens <= 24 and result.prompt_tokens >= 1
    assert result.finish_reason in ("stop", "length")

    async def collect() -> list[Any]:
        return [c async for c in served.stream(request)]

    chunks = asyncio.run(collect())
    assert "".join(c.text for c in chunks) == result.text
    assert sum(c.tokens for c in chunks) == result.completion_tokens
    assert chunks[-1].finish_reason == result.finish_reason
    assert chunks[-1].prompt_tokens == result.prompt_tokens


@pytest.mark.gpu
def test_the_first_chunk_arrives_before_generation_ends(served: VllmBackend) -> None:
    body = {"model": "m", "max_tokens": 200, "temperature": 1.0, "seed": 3,
            "messages": [{"role": "system", "content": "Paris is in France."},
                         {"role": "user", "content": "Where is Paris?"}]}
    request = parse_chat(body, 256)

    async def timed() -> tuple[float, float, int]:
        started = time.perf_counter()
        first, n = None, 0
        async for chunk in served.stream(request):
            first = first if first is not None else time.perf_counter() - started
            n += chunk.tokens
        assert first is not None
        return first, time.perf_counter() - started, n

    first, total, tokens = asyncio.run(timed())
    if tokens >= 20:
        assert first < total / 2


@pytest.mark.gpu
def test_predict_serves_json_records_and_rejects_bad_ones(served: VllmBackend) -> None:
    pred = served.predict([{"prompt": "Hello", "max_tokens": 8, "temperature": 0},
                           {"prompt": "World", "max_tokens": 4}])
    assert len(pred.outputs) == 2 and pred.tokens_out >= 2 and pred.tokens_in >= 2
    with pytest.raises(InputError, match=r"inputs\[1\]\.max_tokens"):
        served.predict([{"prompt": "a"}, {"prompt": "b", "max_tokens": 10_000}])


@pytest.mark.gpu
def test_memory_profile_reports_the_reservation_and_kv_cache_usage(served: VllmBackend) -> None:
    served.predict([{"prompt": "Hello there", "max_tokens": 16, "temperature": 0}])
    profile = served.memory_profile()
    assert profile.reserved_fraction == 0.3 and profile.live
    # the engine's own saturation signal reached us through the stat logger
    assert profile.engine_usage is not None and 0.0 <= profile.engine_usage <= 1.0
