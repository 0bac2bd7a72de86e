"""Serve a text-generation MLflow pyfunc model through the `TextGenerator` interface.

A text-generation pyfunc model (MLmodel metadata `gateway_task: text-generation`, e.g. the
demo models of gateway.demo.textgen) takes `GenerationRequest.to_record()` records; `predict`
returns `{text, finish_reason, prompt_tokens, completion_tokens}` per record and
`predict_stream` yields `{text, finish_reason, tokens[, prompt_tokens]}` chunks.

MLflow's pyfunc calls are synchronous: each runs in a worker thread so the replica's event
loop stays free, and each stream pulls chunk by chunk from its own single thread, so every
chunk reaches the caller as soon as the model yields it and a cancelled stream stops the
model after at most one more token. Stop sequences are applied here (`StopFilter`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.errors import ModelLoadError
from gateway.serving.backends.common import load_pyfunc
from gateway.serving.llm.generation import GenerationChunk, GenerationRequest, GenerationResult
from gateway.serving.llm.streaming import StopFilter
from model_registry.refs import ModelRef

TASK_KEY = "gateway_task"  # MLmodel metadata key marking a text-generation pyfunc model
TEXT_GENERATION = "text-generation"
_END = object()


def is_text_generation(model: Any) -> bool:
    """Whether a loaded PyFuncModel declares itself a text-generation model."""
    meta = getattr(getattr(model, "metadata", None), "metadata", None) or {}
    return meta.get(TASK_KEY) == TEXT_GENERATION


class PyfuncTextGenerator:
    """`TextGenerator` over a loaded text-generation PyFuncModel."""

    def __init__(self, model: Any) -> None:
        if not is_text_generation(model):
            raise ModelLoadError(f"not a text-generation model: its MLmodel metadata lacks "
                                 f"{TASK_KEY}: {TEXT_GENERATION}")
        self._model = model

    @classmethod
    def load(cls, ref: ModelRef) -> PyfuncTextGenerator:
        model = load_pyfunc(ref)
        try:
            return cls(model)
        except ModelLoadError as exc:
            raise ModelLoadError(f"model {ref.name} version {ref.version}: {exc}") from None

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        outputs = await asyncio.to_thread(self._model.predict, [request.to_record()])
        row = _first_row(outputs)
        text, finish = str(row["text"]), str(row["finish_reason"])
        if request.stop:
            stops = StopFilter(request.stop)
            text = stops.feed(text) + stops.flush()
            finish = "stop" if stops.stopped else finish
        return GenerationResult(text=text, finish_reason=finish,
                                prompt_tokens=int(row["prompt_tokens"]),
                                completion_tokens=int(row["completion_tokens"]))

    async def stream(self, request: GenerationRequest
                     ) -> AsyncGenerator[GenerationChunk, None]:
        loop = asyncio.get_running_loop()
        # One thread per stream: `next` calls and the final `close` run in order on it, so
        # the generator is never touched by two threads at once.
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="textgen-stream")
        chunks: Iterator[Any] | None = None
        try:
            chunks = it = await loop.run_in_executor(
                worker, self._model.predict_stream, request.to_record())
            stops = StopFilter(request.stop)
            finished = False
            while not finished:
                raw = await loop.run_in_executor(worker, _next, it)
                if raw is _END:
                    break
                chunk = _to_chunk(raw)
                text = stops.feed(chunk.text)
                if stops.stopped:
                    chunk = GenerationChunk(text, "stop", chunk.tokens, chunk.prompt_tokens)
                elif chunk.finish_reason is not None:
                    text += stops.flush()
                finished = chunk.finish_reason is not None
                yield GenerationChunk(text, chunk.finish_reason, chunk.tokens,
                                      chunk.prompt_tokens)
            if not finished:  # a model that ended without saying why
                yield GenerationChunk(stops.flush(), "stop", 0)
        finally:
            if chunks is not None:
                worker.submit(_close, chunks)
            worker.shutdown(wait=False)


# The health check of a text-generation model logged without a signature or input example:
# the gateway knows its input format (`GenerationRequest.to_record`), so a short greedy
# generation is a real call in the exact form the OpenAI endpoints make.
HEALTH_PROBE = GenerationRequest(prompt="Hello", context=None, question=None, max_tokens=4,
                                 temperature=0.0, top_p=1.0, stop=(), stream=False, n=1,
                                 model=None, kind="completion", seed=0)


def check_generates(model: Any) -> None:
    """Generate from `HEALTH_PROBE` through `predict`, as `generate` does; raises (TypeError,
    ValueError or the model's own error) unless the answer is one well-formed record with at
    least one token."""
    row = _first_row(model.predict([HEALTH_PROBE.to_record()]))
    if int(row["completion_tokens"]) < 1:
        raise ValueError("text-generation model generated no tokens for a short prompt")


def _next(chunks: Iterator[Any]) -> Any:
    return next(chunks, _END)


def _close(chunks: Iterator[Any]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


def _first_row(outputs: Any) -> dict[str, Any]:
    if hasattr(outputs, "to_dict") and hasattr(outputs, "columns"):
        outputs = outputs.to_dict(orient="records")
    if not isinstance(outputs, list) or len(outputs) != 1 or not isinstance(outputs[0], dict):
        raise TypeError(f"text-generation model returned {type(outputs).__name__}, expected "
                        "one record {text, finish_reason, prompt_tokens, completion_tokens}")
    row: dict[str, Any] = outputs[0]
    missing = {"text", "finish_reason", "prompt_tokens", "completion_tokens"} - set(row)
    if missing:
        raise TypeError(f"text-generation model output lacks {sorted(missing)}")
    return row


def _to_chunk(raw: Any) -> GenerationChunk:
    if isinstance(raw, str):
        return GenerationChunk(raw, None, 1)
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
        raise TypeError(f"text-generation model streamed {type(raw).__name__}, expected "
                        "{text, finish_reason, tokens}")
    reason = raw.get("finish_reason")
    prompt_tokens = raw.get("prompt_tokens")
    return GenerationChunk(raw["text"], None if reason is None else str(reason),
                           int(raw.get("tokens", 1)),
                           None if prompt_tokens is None else int(prompt_tokens))
