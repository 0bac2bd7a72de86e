"""The CPU text-generation models: training, sampling, grounding, MLflow round trip, and
the pyfunc TextGenerator adapter (real models, real MLflow SQLite store, no Ray)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pytest

from core.errors import ModelLoadError
from gateway.demo.textgen import (
    BigramLM,
    GroundedLM,
    TextGenModel,
    UngroundedLM,
    load_corpus,
    register_textgen,
    sample_index,
    train_lm,
)
from gateway.serving.llm.generation import GenerationRequest
from gateway.serving.llm.openai_parse import parse_chat, parse_completion
from gateway.serving.llm.pyfunc_textgen import (
    TASK_KEY,
    TEXT_GENERATION,
    PyfuncTextGenerator,
    is_text_generation,
)
from guards.hallucination import make_scorer
from model_registry.registry import ModelRegistry
from model_registry.testing import log_linear_model, use_tracking_uri

DATA = Path(__file__).resolve().parents[4] / "data" / "halueval_qa_slice.jsonl"


@pytest.fixture(scope="module")
def lm() -> BigramLM:
    return train_lm(load_corpus())


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text().splitlines()[:30]]


def _record(item: dict[str, Any], seed: int, **kw: Any) -> dict[str, Any]:
    return {"prompt": item["question"], "context": item["knowledge"],
            "question": item["question"], "max_tokens": 40, "temperature": 0.8,
            "top_p": 0.95, "seed": seed, **kw}


def test_training_takes_under_five_seconds() -> None:
    corpus = load_corpus()
    started = time.perf_counter()
    lm = train_lm(corpus)
    assert time.perf_counter() - started < 5.0
    assert len(lm.vocab) > 1000
    assert np.isclose(lm.continuation.sum(), 1.0) and np.isclose(lm.starts.sum(), 1.0)


def test_bigram_probabilities_are_distributions(lm: BigramLM) -> None:
    for word in ("the", "Paris", "was", "zzz-not-a-word"):
        probs = lm.next_probs(lm.index.get(word))
        assert np.isclose(probs.sum(), 1.0) and (probs > 0).all()
    # "Manhattan" is followed by "Bootleg" in the corpus: the LM must prefer it to chance.
    probs = lm.next_probs(lm.index["Manhattan"])
    assert probs[lm.index["Bootleg"]] > 100 * lm.continuation[lm.index["Bootleg"]]


def test_sampling_is_seeded_greedy_at_zero_temperature_and_top_p_limited() -> None:
    weights = np.array([0.5, 0.3, 0.15, 0.05])
    draws = [sample_index(np.random.default_rng(s), weights, 1.0, 1.0) for s in range(400)]
    assert set(draws) == {0, 1, 2, 3}
    assert sample_index(np.random.default_rng(0), weights, 0.0, 1.0) == 0
    nucleus = {sample_index(np.random.default_rng(s), weights, 1.0, 0.7) for s in range(200)}
    assert nucleus == {0, 1}


@pytest.mark.parametrize("cls", [GroundedLM, UngroundedLM])
def test_generation_is_deterministic_with_a_seed(cls: type[TextGenModel], lm: BigramLM,
                                                 items: list[dict[str, Any]]) -> None:
    model = cls(lm)
    rec = _record(items[0], seed=11)
    assert model.predict(None, [rec]) == model.predict(None, [rec])
    texts = {model.predict(None, [_record(items[0], seed=s)])[0]["text"] for s in range(8)}
    assert len(texts) > 1  # really sampled


@pytest.mark.parametrize("cls", [GroundedLM, UngroundedLM])
def test_max_tokens_and_finish_reasons(cls: type[TextGenModel], lm: BigramLM,
                                       items: list[dict[str, Any]]) -> None:
    model = cls(lm)
    outs = model.predict(None, [_record(items[i], seed=i, max_tokens=6) for i in range(10)])
    for out in outs:
        assert out["completion_tokens"] == len(out["text"].split()) <= 6
        if out["finish_reason"] == "length":
            assert out["completion_tokens"] == 6
        else:
            assert out["finish_reason"] == "stop" and out["text"].endswith((".", "?", "!"))
    assert any(o["finish_reason"] == "length" for o in outs)
    empty = model.predict(None, [_record(items[0], seed=1, max_tokens=0)])[0]
    assert empty == {"text": "", "finish_reason": "length",
                     "prompt_tokens": len(items[0]["question"].split()), "completion_tokens": 0}


def test_grounded_answers_use_only_context_words(lm: BigramLM,
                                                 items: list[dict[str, Any]]) -> None:
    model = GroundedLM(lm)
    for i, item in enumerate(items[:10]):
        words = set(item["knowledge"].split())
        text = model.predict(None, [_record(item, seed=i)])[0]["text"]
        assert text and set(text.split()) <= words


def test_scorer_separates_grounded_from_ungrounded(lm: BigramLM,
                                                   items: list[dict[str, Any]]) -> None:
    scorer = make_scorer()
    grounded, ungrounded = GroundedLM(lm), UngroundedLM(lm)
    g_scores, u_scores = [], []
    for i, item in enumerate(items):
        rec = _record(item, seed=i)
        g_scores.append(scorer.score(item["knowledge"], grounded.predict(None, [rec])[0]["text"],
                                     item["question"]))
        u_scores.append(scorer.score(item["knowledge"],
                                     ungrounded.predict(None, [rec])[0]["text"],
                                     item["question"]))
    g, u = np.array(g_scores), np.array(u_scores)
    assert len(items) == 30
    assert (g >= scorer.threshold).mean() <= 0.1
    assert (u >= scorer.threshold).mean() >= 0.8
    assert u.mean() - g.mean() > 0.5


def test_predict_stream_yields_words_that_make_up_the_prediction(
        lm: BigramLM, items: list[dict[str, Any]]) -> None:
    model = GroundedLM(lm)
    rec = _record(items[3], seed=5)
    chunks = list(model.predict_stream(None, rec))
    assert all(c["tokens"] == 1 for c in chunks)
    assert all(c["finish_reason"] is None for c in chunks[:-1])
    whole = model.predict(None, [rec])[0]
    assert "".join(c["text"] for c in chunks) == whole["text"]
    assert chunks[-1]["finish_reason"] == whole["finish_reason"]
    assert chunks[-1]["prompt_tokens"] == whole["prompt_tokens"]


def test_grounded_model_without_context_still_answers(lm: BigramLM) -> None:
    out = GroundedLM(lm).predict(None, [{"prompt": "Hello", "max_tokens": 5, "seed": 0}])[0]
    assert out["completion_tokens"] >= 1


# ---- MLflow round trip and the pyfunc adapter ------------------------------------------

@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    db = tmp_path_factory.mktemp("textgen") / "mlflow.db"
    return ModelRegistry("textgen-test", f"sqlite:///{db}")


@pytest.fixture(scope="module")
def loaded(registry: ModelRegistry, lm: BigramLM) -> Iterator[dict[str, Any]]:
    grounded = register_textgen(registry, GroundedLM(lm, delay_per_token_s=0.03), "grounded")
    ungrounded = register_textgen(registry, UngroundedLM(lm), "ungrounded")
    with use_tracking_uri(registry.tracking_uri):
        yield {"grounded": mlflow.pyfunc.load_model(grounded.uri),
               "ungrounded": mlflow.pyfunc.load_model(ungrounded.uri),
               "refs": (grounded, ungrounded)}


def test_registered_versions_load_back_and_predict(
        loaded: dict[str, Any], registry: ModelRegistry, lm: BigramLM,
        items: list[dict[str, Any]]) -> None:
    grounded_ref, ungrounded_ref = loaded["refs"]
    assert grounded_ref.uri == f"models:/textgen-test/{grounded_ref.version}"
    assert ungrounded_ref.version != grounded_ref.version
    for ref in (grounded_ref, ungrounded_ref):
        assert registry.get_version_tags(ref.version)[TASK_KEY] == TEXT_GENERATION
    model = loaded["grounded"]
    assert is_text_generation(model)
    rec = _record(items[2], seed=3)
    out = model.predict([rec], params={"delay_per_token_s": 0.0})
    assert out == GroundedLM(lm).predict(None, [rec])
    chunks = list(model.predict_stream(rec, params={"delay_per_token_s": 0.0}))
    assert "".join(c["text"] for c in chunks) == out[0]["text"]


def test_logged_delay_makes_streaming_observable(loaded: dict[str, Any],
                                                 items: list[dict[str, Any]]) -> None:
    rec = _record(items[1], seed=2, max_tokens=10)
    started = time.perf_counter()
    arrivals = [time.perf_counter() - started for _ in loaded["grounded"].predict_stream(rec)]
    assert len(arrivals) >= 3
    assert arrivals[0] < arrivals[-1] - 0.03 * (len(arrivals) - 2)


def _chat_request(item: dict[str, Any], **kw: Any) -> GenerationRequest:
    body = {"model": "m", "seed": 1, "temperature": 0.7, "max_tokens": 12,
            "messages": [{"role": "system", "content": item["knowledge"]},
                         {"role": "user", "content": item["question"]}], **kw}
    return parse_chat(body, 256)


def test_adapter_generate_matches_the_model(loaded: dict[str, Any],
                                            items: list[dict[str, Any]]) -> None:
    gen = PyfuncTextGenerator(loaded["ungrounded"])
    request = _chat_request(items[4])
    result = asyncio.run(gen.generate(request))
    direct = loaded["ungrounded"].predict([request.to_record()])[0]
    assert (result.text, result.finish_reason, result.completion_tokens) == (
        direct["text"], direct["finish_reason"], direct["completion_tokens"])
    assert result.prompt_tokens == len(request.prompt.split())


def test_adapter_streams_before_the_model_has_finished(loaded: dict[str, Any],
                                                       items: list[dict[str, Any]]) -> None:
    gen = PyfuncTextGenerator(loaded["grounded"])  # logged with 30 ms per token

    async def consume() -> tuple[list[float], float, list[Any]]:
        started = time.perf_counter()
        arrivals, chunks = [], []
        async for chunk in gen.stream(_chat_request(items[5], max_tokens=10)):
            arrivals.append(time.perf_counter() - started)
            chunks.append(chunk)
        return arrivals, time.perf_counter() - started, chunks

    arrivals, total, chunks = asyncio.run(consume())
    assert len(chunks) >= 3
    assert arrivals[0] < total / 2  # the first token arrived long before the last
    assert chunks[-1].finish_reason in ("stop", "length")
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert chunks[-1].prompt_tokens is not None


def test_adapter_applies_stop_sequences(loaded: dict[str, Any],
                                        items: list[dict[str, Any]]) -> None:
    gen = PyfuncTextGenerator(loaded["ungrounded"])
    free = asyncio.run(gen.generate(_chat_request(items[6], max_tokens=20)))
    words = free.text.split()
    assert len(words) >= 3, free
    stop = words[2]
    request = _chat_request(items[6], max_tokens=20, stop=[stop])
    cut = asyncio.run(gen.generate(request))
    expected = free.text[:free.text.find(stop)]
    assert cut.text == expected and cut.finish_reason == "stop"

    async def streamed() -> tuple[str, str | None]:
        pieces = [c async for c in gen.stream(request)]
        return "".join(c.text for c in pieces), pieces[-1].finish_reason

    assert asyncio.run(streamed()) == (expected, "stop")


def test_adapter_stops_the_model_when_the_consumer_leaves(loaded: dict[str, Any],
                                                          items: list[dict[str, Any]]) -> None:
    gen = PyfuncTextGenerator(loaded["grounded"])  # 30 ms per token

    async def first_two() -> float:
        stream = gen.stream(parse_completion({"prompt": items[7]["question"],
                                              "context": items[7]["knowledge"],
                                              "max_tokens": 200, "seed": 1}, 256))
        started = time.perf_counter()
        got = [await anext(stream), await anext(stream)]
        await stream.aclose()
        assert len(got) == 2
        return time.perf_counter() - started

    assert asyncio.run(first_two()) < 1.0  # did not wait for 200 tokens
    deadline = time.monotonic() + 2.0  # and the model's thread ended soon after
    while _stream_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _stream_threads()


def _stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("textgen-stream")]


def test_adapter_refuses_a_model_that_is_not_text_generation(registry: ModelRegistry) -> None:
    info = log_linear_model(registry.tracking_uri, 1.0, 0.0)
    with use_tracking_uri(registry.tracking_uri):
        model = mlflow.pyfunc.load_model(info.model_uri)
    assert not is_text_generation(model)
    with pytest.raises(ModelLoadError, match="not a text-generation model"):
        PyfuncTextGenerator(model)
