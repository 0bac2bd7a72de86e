"""A model slot: a Ray Serve deployment that serves one immutable model version.

The slot loads the version the RoutingTable assigns to it (`models:/name/<version>`, never an
alias), health-checks it before reporting ready, and swaps to a new assignment in the
background when the table changes, so moving an MLflow alias never changes what a running
slot serves.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import asdict, dataclass
from typing import Any

from ray import serve

from core.errors import InputError
from core.logs import get_logger
from gateway.config import GatewayConfig, parse_config
from gateway.serving.backends import Backend, NothingToCheck, make_backend, memory_profile
from gateway.serving.backends.batching import Batcher, BatchingBackend, Prepared, Result
from gateway.serving.backends.common import flavors, model_metadata
from gateway.serving.batchqueue import BatchQueue
from gateway.serving.llm.coalesce import STREAM_AHEAD, chunk_dict, close_source, coalesce
from gateway.serving.llm.generation import GenerationRequest
from gateway.serving.tablewatch import TableWatcher
from gateway.wire.handles import get_supervisor
from gateway.wire.replies import (
    CallOutcome,
    ServedModel,
    SlotAnswer,
    SlotError,
    SlotReply,
    StreamChunks,
    StreamItem,
    StreamStart,
)
from gateway.wire.routing import RoutingTable
from model_registry.refs import ModelRef

log = get_logger(__name__)


def choose_backend_name(configured: str, ref: ModelRef) -> str:
    """`auto`: versions marked for vLLM (MLmodel metadata `gateway_backend: vllm`) go to
    vLLM, models logged with mlflow.pytorch to torch, the rest through pyfunc."""
    if configured != "auto":
        return configured
    if model_metadata(ref).get("gateway_backend") == "vllm":
        return "vllm"
    return "torch" if "pytorch" in flavors(ref) else "pyfunc"


def load_backend(cfg: GatewayConfig, ref: ModelRef) -> Backend:
    """Load and health-check `ref`; raises ModelLoadError naming the version on failure.

    The health check always calls the model. A version with nothing to call it with (no
    signature, no input example) is refused unless `slots.health_check: allow_unchecked`:
    serving it unchecked would give a challenger that fails every call live traffic."""
    device = "cuda" if cfg.slots.num_gpus > 0 else "cpu"
    backend = make_backend(choose_backend_name(cfg.model.backend, ref), device=device,
                           max_batch=cfg.http.max_batch,
                           max_tokens_limit=cfg.llm.max_tokens_limit)
    backend.load(ref)
    try:
        backend.health_check()
    except NothingToCheck:
        if cfg.slots.health_check != "allow_unchecked":
            _close(backend)
            raise
        log.warning("model %s version %s has neither a signature nor an input example: "
                    "serving it unchecked (slots.health_check: allow_unchecked)",
                    ref.name, ref.version)
    except BaseException:
        _close(backend)  # an engine that failed its check must not keep its (GPU) memory
        raise
    return backend


def _close(backend: Backend) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        try:
            close()
        except Exception as exc:
            log.warning("closing a model that failed its health check: %s", exc)


class ModelServer:
    """One model slot (`a` or `b`). Replies are `SlotReply`s (`gateway.wire.replies`), never
    exceptions, for bad input or a failed model."""

    async def __init__(  # type: ignore[misc]  # Serve supports async constructors
            self, slot: str, config: dict[str, Any], tracking_uri: str,
            initial_table: dict[str, Any]) -> None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        self._slot = slot
        self._cfg = parse_config(config)
        self._replica_id = _replica_id()
        self._ref: ModelRef | None = None
        self._backend: Backend | None = None
        self._textgen: Any = None
        self._error: str | None = None
        self._usage_task: asyncio.Future[None] | None = None
        self._batcher: Batcher | None = None
        self._batches: Counter[int] = Counter()  # requests answered, by their batch's size
        batching = self._cfg.slots.batching
        self._queue: BatchQueue[_Call, SlotReply] | None = None if batching is None else \
            BatchQueue(self._run_batch, batching.max_batch_size, batching.batch_wait_timeout_s)
        table = RoutingTable.from_dict(initial_table)
        self._sup = get_supervisor(self._cfg.control.supervisor_name, self._cfg.control.namespace)
        self._watcher = TableWatcher(self._sup, table,
                                     poll_timeout_s=self._cfg.control.long_poll_timeout_s,
                                     on_change=self._on_table)
        await self._assign(table.slot_models.get(slot), required=slot == table.champion_slot)
        self._watcher.start()

    async def _on_table(self, table: RoutingTable) -> None:
        ref = table.slot_models.get(self._slot)
        if ref != self._ref:
            await self._assign(ref, required=False)

    async def _assign(self, ref: ModelRef | None, *, required: bool) -> None:
        await self._release()
        if ref is None:
            self._ref, self._error = None, None
            await self._report(healthy=True)
            return
        try:
            backend = await asyncio.to_thread(load_backend, self._cfg, ref)
        except Exception as exc:
            if required:  # the champion must load, or the app must not start
                raise
            log.error("slot %s: %s", self._slot, exc)
            self._ref, self._backend, self._error, self._textgen = ref, None, str(exc), None
            await self._report(healthy=False)
            return
        self._ref, self._backend, self._error = ref, backend, None
        self._textgen = text_generator(backend)
        log.info("slot %s serving %s version %s", self._slot, ref.name, ref.version)
        await self._report(healthy=True)
        if memory_profile(backend).live:
            self._usage_task = asyncio.ensure_future(self._report_usage(backend))

    async def _report_usage(self, backend: Backend) -> None:
        """Engines with their own saturation signal (vLLM's KV-cache usage) report it every
        resource interval, for the memory guard; stops when the slot changes model."""
        while self._backend is backend:
            await asyncio.sleep(self._cfg.supervisor.resource_interval_s)
            if self._backend is backend:
                await self._report(healthy=True)

    async def _release(self) -> None:
        """Unload the current model first (a slot changes model only while it gets no
        traffic), so two models never hold the GPU memory of one slot at once."""
        backend, self._backend, self._textgen = self._backend, None, None
        close = getattr(backend, "close", None)
        if close is not None:
            try:
                await asyncio.to_thread(close)
            except Exception as exc:
                log.warning("slot %s: releasing the previous model failed: %s", self._slot, exc)

    async def _report(self, *, healthy: bool) -> None:
        profile = memory_profile(self._backend) if self._backend is not None else None
        report = {"healthy": healthy, "model": self._ref.to_dict() if self._ref else None,
                  "error": self._error, "time": time.time(), "pid": os.getpid(),
                  "memory": asdict(profile) if profile else None,
                  # so the supervisor notices at once when this replica dies (node lost,
                  # killed), even with no request on it
                  "actor": _own_actor()}
        try:
            await self._sup.report_slot.remote(self._slot, self._replica_id, report)
        except Exception as exc:  # the supervisor may be restarting; it re-learns on next load
            log.warning("slot %s: could not report to supervisor: %s", self._slot, exc)

    def predict(self, inputs: Any) -> SlotReply:
        backend, ref = self._backend, self._ref
        if backend is None or ref is None:
            return SlotError(CallOutcome.UNAVAILABLE, 503,
                             f"slot {self._slot} has no healthy model"
                             + (f": {self._error}" if self._error else ""))
        start = time.perf_counter()
        try:
            pred = backend.predict(inputs)
        except InputError as exc:
            return _client_error(exc)
        except Exception as exc:
            return _model_failed(ref, exc)
        return SlotAnswer(pred.outputs, _served(ref), output_summary=pred.output_summary,
                          input_summary=pred.input_summary, tokens_in=pred.tokens_in,
                          tokens_out=pred.tokens_out, busy_s=time.perf_counter() - start)

    async def predict_batched(self, inputs: Any) -> SlotReply:
        """`predict` with dynamic batching (`slots.batching`; the ingress calls this method
        instead when it is configured): the request is checked on its own (bad input is its
        own 4xx), then waits up to the batch timeout for others to share one model call."""
        backend, ref = self._backend, self._ref
        if backend is None or ref is None or not isinstance(backend, BatchingBackend):
            return self.predict(inputs)  # nothing to run, or an engine that batches itself
        try:
            item = backend.prepare(inputs)
        except InputError as exc:
            return _client_error(exc)
        except Exception as exc:
            return _model_failed(ref, exc)
        if self._queue is None:  # called directly, without slots.batching: a batch of one
            self._queue = BatchQueue(self._run_batch, 1, 0.0)
        return await self._queue.submit(_Call(self._batcher_for(backend), ref, item))

    async def _run_batch(self, calls: list[_Call]) -> list[SlotReply]:
        # The model runs off the event loop, which meanwhile queues the next batch.
        replies = await asyncio.to_thread(run_calls, calls)
        self._batches.update(r.batch_size for r in replies if isinstance(r, SlotAnswer))
        return replies

    def _batcher_for(self, backend: BatchingBackend) -> Batcher:
        if self._batcher is None or self._batcher.backend is not backend:
            self._batcher = Batcher(backend)
        return self._batcher

    async def generate(self, req: GenerationRequest) -> SlotReply:
        """One whole text generation (OpenAI endpoints without `stream`)."""
        gen, ref = self._textgen, self._ref
        if gen is None or ref is None:
            return self._not_text()
        start = time.perf_counter()
        try:
            result = await gen.generate(req)
        except InputError as exc:
            return _client_error(exc)
        except Exception as exc:
            return _model_failed(ref, exc)
        return SlotAnswer(asdict(result), _served(ref), tokens_in=result.prompt_tokens,
                          tokens_out=result.completion_tokens,
                          busy_s=time.perf_counter() - start)

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamItem]:
        """Chunks as they are generated. The first item carries the model and the first
        chunk together (`StreamStart`), so a failure before the first token raises to the
        caller (which then fails over); a client error is the first and only item.

        Later chunks go as `StreamChunks`: each time Ray asks for the next item, all the
        chunks generated since (at least one: it waits only when none is) go as one Ray
        object, so a backlog costs one message, not one per chunk, and no chunk waits for
        company. The model runs at most `STREAM_AHEAD` chunks ahead of a slow reader; a
        failure after the first token raises after the chunks before it; the caller going
        away closes the model's stream."""
        gen, ref = self._textgen, self._ref
        if gen is None or ref is None:
            yield self._not_text()
            return
        chunks = gen.stream(req)
        try:
            try:
                first = await chunks.__anext__()
            except InputError as exc:
                yield _client_error(exc)
                return
            yield StreamStart(_served(ref), chunk_dict(first))
            async with aclosing(coalesce(chunks, STREAM_AHEAD)) as batches:
                async for batch in batches:
                    yield StreamChunks(tuple(map(chunk_dict, batch)))
        finally:  # also when closed at the first item, before `coalesce` owns the stream
            await close_source(chunks)

    def _not_text(self) -> SlotError:
        what = f"model {self._ref.name} version {self._ref.version}" if self._ref else \
            f"slot {self._slot}"
        return SlotError(CallOutcome.CLIENT_ERROR, 400,
                         f"{what} does not generate text; use /v1/predict")

    def describe(self) -> dict[str, Any]:
        return {"slot": self._slot, "replica": self._replica_id, "pid": os.getpid(),
                "model": self._ref.to_dict() if self._ref else None,
                "healthy": self._backend is not None, "error": self._error,
                "batch_sizes": {str(k): n for k, n in sorted(self._batches.items())}}


@dataclass(frozen=True)
class _Call:
    """One request waiting for a batch: the batcher of the model it was checked against."""

    batcher: Batcher
    ref: ModelRef
    item: Prepared


def run_calls(calls: list[_Call]) -> list[SlotReply]:
    """Run a gathered batch; each request gets its own reply. The calls of one batch share a
    model unless the slot changed model while they waited (then one run per model)."""
    replies: list[SlotReply | None] = [None] * len(calls)
    by_model: dict[int, list[int]] = {}
    for i, call in enumerate(calls):
        by_model.setdefault(id(call.batcher), []).append(i)
    for idx in by_model.values():
        first = calls[idx[0]]
        results = first.batcher.run([calls[i].item for i in idx])
        for i, res in zip(idx, results, strict=True):
            replies[i] = _reply(calls[i].ref, res)
    return [r for r in replies if r is not None]


def _reply(ref: ModelRef, res: Result) -> SlotReply:
    if res.prediction is None:
        if isinstance(res.error, InputError):
            return _client_error(res.error)
        return _model_failed(ref, res.error if isinstance(res.error, Exception)
                             else RuntimeError(str(res.error)))
    pred = res.prediction
    return SlotAnswer(pred.outputs, _served(ref), output_summary=pred.output_summary,
                      input_summary=pred.input_summary, tokens_in=pred.tokens_in,
                      tokens_out=pred.tokens_out, busy_s=res.busy_s, batch_size=res.batch_size)


def _served(ref: ModelRef) -> ServedModel:
    return ServedModel(ref.name, ref.version)


def _client_error(exc: InputError) -> SlotError:
    return SlotError(CallOutcome.CLIENT_ERROR, exc.status, str(exc), exc.field)


def _model_failed(ref: ModelRef, exc: Exception) -> SlotError:
    return SlotError(CallOutcome.SERVER_ERROR, 500, f"model {ref.name} version {ref.version} "
                     f"failed: {type(exc).__name__}: {exc}")


def text_generator(backend: Backend) -> Any:
    """The backend's streaming text interface, if the model generates text (else None)."""
    if hasattr(backend, "generate") and hasattr(backend, "stream"):
        return backend  # e.g. the vLLM backend
    from gateway.serving.llm.pyfunc_textgen import PyfuncTextGenerator, is_text_generation

    model = getattr(backend, "model", None)
    return PyfuncTextGenerator(model) if model is not None and is_text_generation(model) \
        else None


def _replica_id() -> str:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:
        return f"pid-{os.getpid()}"


def _own_actor() -> Any:
    """This replica's Ray actor handle (None outside an actor, e.g. in unit tests)."""
    import ray

    try:
        return ray.get_runtime_context().current_actor
    except Exception:  # not in an actor
        return None
