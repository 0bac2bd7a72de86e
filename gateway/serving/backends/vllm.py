"""Backend that serves one registered LLM version on an NVIDIA GPU with vLLM.

Needs the `vllm` extra (`pip install -e '.[vllm]'`) and a GPU; elsewhere `load` raises a
clear ModelLoadError. vLLM is imported lazily, so this module imports anywhere.

Engine: vLLM's async engine (`vllm.v1.engine.async_llm.AsyncLLM`, which `vllm.AsyncLLMEngine`
aliases since vLLM 0.11), built with `from_engine_args(AsyncEngineArgs(model=<weights dir>))`.
`ray.serve.llm` was considered: its `VLLMEngine` wants its own `LLMConfig`, placement group and
OpenAI app, i.e. it is a whole deployment, while a gateway slot is one deployment that swaps
model versions behind the routing table; so the slot drives vLLM's engine directly. The engine
lives on a private event loop thread owned by the backend: `load` and `health_check` run in a
worker thread (see model_server.load_backend) and the slot's requests arrive on Serve's loop,
so a loop of its own keeps the engine's background tasks on one loop whoever calls.

Model source convention (an MLflow model version is, or points to, a Hugging Face format
weights directory, i.e. one with `config.json`, tokenizer files and weights):
1. the model version tag `weights_uri` (a local path, `file://` URI or any URI MLflow can
   download), else
2. inside the model version's artifacts: a `weights/` directory (also under `artifacts/`, where
   `mlflow.pyfunc.log_model(artifacts={"weights": dir})` puts it), else
3. a `weights_uri` text file there holding the location, else
4. the artifact root itself when it holds `config.json`.
`register_vllm_weights` logs and registers a version following this convention. Weights are
never fetched from a model hub at run time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from core.errors import InputError, ModelLoadError
from core.logs import get_logger
from gateway.serving.backends.base import MemoryProfile, Prediction
from gateway.serving.llm.generation import (
    ChatMessage,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
)
from model_registry.refs import ModelRef

log = get_logger(__name__)

T = TypeVar("T")
WEIGHTS_ARTIFACT = "weights"
WEIGHTS_URI_TAG = "weights_uri"
WEIGHTS_URI_FILE = "weights_uri"
BACKEND_KEY = "gateway_backend"  # MLmodel metadata: which backend serves this version
INSTALL_HINT = "vllm backend needs an NVIDIA GPU and the `vllm` extra: "
_FINISH = {"stop": "stop", "length": "length"}


# ---- model source ------------------------------------------------------------------------

def resolve_weights_dir(ref: ModelRef) -> Path:
    """The local weights directory of `ref`, following the convention in the module doc.

    Uses MLflow's global tracking/registry URI (the slot sets it). Raises ModelLoadError
    naming the version and what was looked for."""
    import mlflow
    from mlflow import MlflowClient

    where = f"model {ref.name} version {ref.version}"
    try:
        tags = dict(MlflowClient().get_model_version(ref.name, ref.version).tags or {})
        if tags.get(WEIGHTS_URI_TAG):
            return _checked(_localize(tags[WEIGHTS_URI_TAG]), where, f"tag {WEIGHTS_URI_TAG}")
        root = Path(mlflow.artifacts.download_artifacts(ref.uri))
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{where}: cannot read its weights location: {exc}") from exc
    logged = _pyfunc_artifacts(root)
    for candidate in (logged.get(WEIGHTS_ARTIFACT), root / WEIGHTS_ARTIFACT,
                      root / "artifacts" / WEIGHTS_ARTIFACT):
        if candidate is not None and (candidate / "config.json").is_file():
            return candidate
    for pointer in (logged.get(WEIGHTS_URI_FILE), root / WEIGHTS_URI_FILE,
                    root / "artifacts" / WEIGHTS_URI_FILE):
        if pointer is not None and pointer.is_file():
            return _checked(_localize(pointer.read_text().strip()), where, str(pointer))
    if (root / "config.json").is_file():
        return root
    raise ModelLoadError(f"{where}: no weights found: set the model version tag "
                         f"{WEIGHTS_URI_TAG!r}, or log a {WEIGHTS_ARTIFACT}/ directory or a "
                         f"{WEIGHTS_URI_FILE} file with the model (looked in {root})")


def _pyfunc_artifacts(root: Path) -> dict[str, Path]:
    """Artifacts logged with `mlflow.pyfunc.log_model(artifacts=...)`, by name (MLflow
    stores each under its source's base name, and records the mapping in MLmodel)."""
    try:
        from mlflow.models import Model

        flavor = Model.load(str(root)).flavors.get("python_function", {})
    except Exception:  # no MLmodel: not logged by MLflow, the directory guesses remain
        return {}
    return {name: root / str(entry["path"])
            for name, entry in (flavor.get("artifacts") or {}).items()
            if isinstance(entry, dict) and entry.get("path")}


def _localize(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" not in uri and ":/" not in uri:
        return Path(uri)
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(uri))


def _checked(path: Path, where: str, source: str) -> Path:
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{where}: {source} points at {path}, which is not a weights "
                             "directory (no config.json)")
    return path


class VllmWeights:
    """Placeholder pyfunc logged with a weights pointer: MLflow needs a model to register,
    but only the vllm backend can serve these weights."""

    # No type hints: MLflow would read them as an input schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("this model version holds LLM weights: serve it with the vllm "
                           "backend")


def register_vllm_weights(registry: Any, weights_dir: Path, description: str, *,
                          copy: bool = False) -> ModelRef:
    """Register a new version of the registry's model whose weights are `weights_dir`.

    `copy=False` (default) records the location (tag `weights_uri` and a `weights_uri` file);
    `copy=True` logs the directory itself as the `weights` artifact."""
    import tempfile

    import mlflow
    import mlflow.pyfunc
    from mlflow.pyfunc import PythonModel

    from model_registry.experiments import ensure_experiment, use_tracking_uri

    weights_dir = Path(weights_dir).resolve()
    if not (weights_dir / "config.json").is_file():
        raise ModelLoadError(f"{weights_dir}: not a weights directory (no config.json)")
    placeholder = type("VllmWeightsModel", (VllmWeights, PythonModel), {})()
    experiment_id = ensure_experiment(registry.tracking_uri, registry.model_name)
    with tempfile.TemporaryDirectory() as tmp:
        pointer = Path(tmp) / WEIGHTS_URI_FILE
        pointer.write_text(str(weights_dir))
        artifacts = {WEIGHTS_ARTIFACT: str(weights_dir)} if copy else {
            WEIGHTS_URI_FILE: str(pointer)}
        with use_tracking_uri(registry.tracking_uri), \
                mlflow.start_run(experiment_id=experiment_id, run_name=description) as run:
            mlflow.log_param("weights", str(weights_dir))
            mlflow.pyfunc.log_model(name="model", python_model=placeholder, artifacts=artifacts,
                                    pip_requirements=[f"mlflow=={mlflow.__version__}"],
                                    metadata={BACKEND_KEY: "vllm"})
    tags = {"description": description, BACKEND_KEY: "vllm"}
    if not copy:
        tags[WEIGHTS_URI_TAG] = str(weights_dir)
    ref: ModelRef = registry.register(f"runs:/{run.info.run_id}/model", tags=tags)
    return ref


# ---- the engine's own event loop -----------------------------------------------------------

_END = object()


class EngineLoop:
    """An asyncio loop on a daemon thread. Coroutines run there via `call` (blocking, for
    sync callers) or `run` (awaitable from another loop); `relay` streams an async iterator
    produced there into the caller's loop, item by item, without buffering. Cancelling the
    caller cancels the producer (vLLM aborts the request)."""

    def __init__(self, name: str = "vllm-engine") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        future = self.submit(coro)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(self.submit(coro))

    async def relay(self, make: Callable[[], AsyncIterator[T]]) -> AsyncGenerator[T, None]:
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()

        def put(item: Any, exc: BaseException | None = None) -> None:
            caller.call_soon_threadsafe(queue.put_nowait, (item, exc))

        async def pump() -> None:
            try:
                async for item in make():
                    put(item)
            except BaseException as exc:  # incl. cancellation: the consumer must wake up
                put(_END, exc)
                raise
            put(_END)

        future = self.submit(pump())
        try:
            while True:
                item, exc = await queue.get()
                if exc is not None:
                    raise exc
                if item is _END:
                    return
                yield item
        finally:
            future.cancel()  # no-op when done; else stops the producer

    def close(self, timeout_s: float = 5.0) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self.loop.close()


# ---- the backend ---------------------------------------------------------------------------

def runtime_problems() -> list[str]:
    """Why vLLM cannot run here (empty when it can)."""
    problems = []
    if importlib.util.find_spec("vllm") is None:
        problems.append("vllm is not installed (pip install -e '.[vllm]')")
    try:
        import torch

        if not torch.cuda.is_available():
            problems.append(f"no usable NVIDIA GPU (torch {torch.__version__}: "
                            "torch.cuda.is_available() is False)")
    except Exception as exc:
        problems.append(f"cannot check for a GPU: {exc}")
    return problems


class VllmBackend:
    """Serves one model version with vLLM: the Backend protocol plus the TextGenerator one
    (`generate`, `stream`). `close` frees the GPU memory; call it before dropping a backend."""

    name = "vllm"

    def __init__(self, *, max_tokens_limit: int = 4096,
                 gpu_memory_utilization: float | None = None,
                 max_model_len: int | None = None, dtype: str = "auto",
                 enforce_eager: bool | None = None, use_chat_template: bool = True,
                 load_timeout_s: float = 900.0, request_timeout_s: float = 300.0,
                 engine_kwargs: dict[str, Any] | None = None) -> None:
        """Engine knobs left unset fall back to the environment (replicas inherit it from
        the process that started Ray), so two slots can share one GPU without a config
        change: GATEWAY_VLLM_GPU_MEMORY_UTILIZATION (default 0.85; the share of the GPU
        this engine may take), GATEWAY_VLLM_MAX_MODEL_LEN, GATEWAY_VLLM_ENFORCE_EAGER."""
        env = _env_engine_args()
        self._max_tokens_limit = max_tokens_limit
        self._engine_args = {
            "gpu_memory_utilization": gpu_memory_utilization
            if gpu_memory_utilization is not None else env.get("gpu_memory_utilization", 0.85),
            "max_model_len": max_model_len or env.get("max_model_len"), "dtype": dtype,
            "enforce_eager": enforce_eager if enforce_eager is not None
            else env.get("enforce_eager", False), **(engine_kwargs or {})}
        self._use_chat_template = use_chat_template
        self._load_timeout_s, self._request_timeout_s = load_timeout_s, request_timeout_s
        self._loop: EngineLoop | None = None
        self._engine: Any = None
        self._tokenizer: Any = None
        self._ref: ModelRef | None = None
        self.weights_dir: Path | None = None
        self._kv_usage = KvUsage()

    # -- Backend protocol --

    def load(self, ref: ModelRef) -> None:
        problems = runtime_problems()
        if problems:
            raise ModelLoadError(f"model {ref.name} version {ref.version}: {INSTALL_HINT}"
                                 + "; ".join(problems))
        weights = resolve_weights_dir(ref)
        loop = EngineLoop(name=f"vllm-{ref.name}-{ref.version}")
        try:
            self._engine = loop.call(self._start_engine(weights, ref), self._load_timeout_s)
            self._tokenizer = self._load_tokenizer(weights)
        except Exception as exc:
            loop.close()
            raise ModelLoadError(f"model {ref.name} version {ref.version}: vLLM could not "
                                 f"start on {weights}: {type(exc).__name__}: {exc}") from exc
        self._loop, self._ref, self.weights_dir = loop, ref, weights
        log.info("vllm serving %s version %s from %s", ref.name, ref.version, weights)

    def health_check(self) -> None:
        loop, ref = self._require()
        probe = GenerationRequest(prompt="Hello", context=None, question=None, max_tokens=4,
                                  temperature=0.0, top_p=1.0, stop=(), stream=False, n=1,
                                  model=None, kind="completion", seed=0)
        try:
            loop.call(self._engine.check_health(), 60.0)
            result = loop.call(self._collect(probe), self._request_timeout_s)
        except Exception as exc:
            raise ModelLoadError(f"model {ref.name} version {ref.version}: health check "
                                 f"inference failed: {type(exc).__name__}: {exc}") from exc
        if result.completion_tokens < 1:
            raise ModelLoadError(f"model {ref.name} version {ref.version}: health check "
                                 "produced no tokens")

    def predict(self, inputs: Any) -> Prediction:
        """JSON predict: one record or a list of `{prompt, max_tokens?, temperature?, top_p?,
        seed?, stop?}`; returns one `{text, finish_reason, prompt_tokens, completion_tokens}`
        per record."""
        loop, _ = self._require()
        requests = [self._record_request(r, f"inputs[{i}]")
                    for i, r in enumerate(_as_records(inputs))]

        async def run_all() -> list[GenerationResult]:
            return list(await asyncio.gather(*(self._collect(r) for r in requests)))

        results = loop.call(run_all(), self._request_timeout_s)
        outputs = [{"text": r.text, "finish_reason": r.finish_reason,
                    "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens}
                   for r in results]
        return Prediction(outputs=outputs, tokens_in=sum(r.prompt_tokens for r in results),
                          tokens_out=sum(r.completion_tokens for r in results))

    # -- TextGenerator --

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        loop, _ = self._require()
        return await loop.run(self._collect(request))

    async def stream(self, request: GenerationRequest
                     ) -> AsyncGenerator[GenerationChunk, None]:
        loop, _ = self._require()
        async for chunk in loop.relay(lambda: self._chunks(request)):
            yield chunk

    def memory_profile(self) -> MemoryProfile:
        """vLLM preallocates `gpu_memory_utilization` of the device (weights, activations,
        KV-cache pool) by design; its own saturation signal is the KV-cache usage."""
        return MemoryProfile(float(self._engine_args["gpu_memory_utilization"]),
                             self._kv_usage.value, live=True)

    def close(self) -> None:
        engine, loop = self._engine, self._loop
        self._engine, self._loop = None, None
        if engine is not None:
            try:
                engine.shutdown()
            except Exception as exc:
                log.warning("vllm shutdown failed: %s", exc)
        if loop is not None:
            loop.close()

    # -- internals (run on the engine loop) --

    async def _start_engine(self, weights: Path, ref: ModelRef) -> Any:
        from vllm import AsyncEngineArgs

        args = AsyncEngineArgs(model=str(weights), tokenizer=str(weights),
                               served_model_name=[f"{ref.name}/{ref.version}"],
                               **{k: v for k, v in self._engine_args.items() if v is not None})
        engine_class = _engine_class()
        factory = self._kv_usage.logger_factory()
        if factory is not None:
            try:
                return engine_class.from_engine_args(args, stat_loggers=[factory])
            except TypeError:  # an engine without custom stat loggers: no KV-cache signal
                log.info("vLLM engine takes no stat loggers; no KV-cache usage signal")
        return engine_class.from_engine_args(args)

    def _load_tokenizer(self, weights: Path) -> Any:
        if not self._use_chat_template:
            return None
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(weights))
        except Exception as exc:  # the plain template still works
            log.warning("no tokenizer for chat templates in %s: %s", weights, exc)
            return None
        return tokenizer if getattr(tokenizer, "chat_template", None) else None

    async def _chunks(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        from vllm import SamplingParams

        sampling = self._sampling(request)
        params = SamplingParams(**sampling)
        cumulative = "output_kind" not in sampling
        seen_text, seen_tokens = 0, 0
        async for out in self._engine.generate(self._prompt(request), params,
                                               f"gw-{uuid.uuid4().hex}"):
            comp = out.outputs[0]
            text, tokens = comp.text, len(comp.token_ids)
            if cumulative:  # older vLLM: outputs repeat everything so far
                text, tokens = text[seen_text:], tokens - seen_tokens
                seen_text, seen_tokens = len(comp.text), len(comp.token_ids)
            reason = None
            if out.finished:
                if comp.finish_reason not in _FINISH:
                    raise RuntimeError(f"vLLM ended the request: {comp.finish_reason}")
                reason = _FINISH[comp.finish_reason]
            yield GenerationChunk(text, reason, tokens,
                                  len(out.prompt_token_ids or []) if out.finished else None)

    async def _collect(self, request: GenerationRequest) -> GenerationResult:
        parts, tokens, finish, prompt_tokens = [], 0, "stop", 0
        async for chunk in self._chunks(request):
            parts.append(chunk.text)
            tokens += chunk.tokens
            finish = chunk.finish_reason or finish
            prompt_tokens = chunk.prompt_tokens or prompt_tokens
        return GenerationResult("".join(parts), finish, prompt_tokens, tokens)

    def _sampling(self, request: GenerationRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "n": 1, "max_tokens": request.max_tokens, "temperature": request.temperature,
            # vLLM wants top_p in (0, 1]; OpenAI's 0 means "only the likeliest token".
            "top_p": max(request.top_p, 1e-6), "stop": list(request.stop) or None,
            "seed": None if request.seed is None else request.seed & (2**63 - 1)}
        try:
            from vllm.sampling_params import RequestOutputKind

            params["output_kind"] = RequestOutputKind.DELTA
        except ImportError:
            pass
        return params

    def _prompt(self, request: GenerationRequest) -> str:
        if request.kind != "chat" or self._tokenizer is None or not request.messages:
            return request.prompt
        messages = _template_messages(request.messages, request.context)
        try:
            return str(self._tokenizer.apply_chat_template(messages, tokenize=False,
                                                           add_generation_prompt=True))
        except Exception as exc:  # a template that rejects these roles: use the plain one
            log.debug("chat template failed (%s); using the plain template", exc)
            return request.prompt

    def _record_request(self, record: Any, path: str) -> GenerationRequest:
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise InputError(f"{path}.prompt: expected a record with a string prompt",
                             field=path)
        from gateway.serving.llm.openai_parse import parse_completion

        body = {k: v for k, v in record.items()
                if k in ("prompt", "max_tokens", "temperature", "top_p", "seed", "stop")}
        try:
            return parse_completion(body, self._max_tokens_limit)
        except InputError as exc:
            raise InputError(f"{path}.{exc}", exc.status,
                             f"{path}.{exc.field}" if exc.field else path) from None

    def _require(self) -> tuple[EngineLoop, ModelRef]:
        if self._engine is None or self._loop is None or self._ref is None:
            raise ModelLoadError("no model loaded")
        return self._loop, self._ref


class KvUsage:
    """The engine's latest KV-cache usage in [0, 1], captured by a vLLM stat logger.

    vLLM (v1 engine) calls `record(scheduler_stats, iteration_stats, ...)` on each custom
    stat logger every engine step; `SchedulerStats.kv_cache_usage` (`gpu_cache_usage`
    before 0.11) is the share of KV-cache blocks in use.
    """

    def __init__(self) -> None:
        self.value: float | None = None

    def observe(self, scheduler_stats: Any) -> None:
        for name in ("kv_cache_usage", "gpu_cache_usage"):
            usage = getattr(scheduler_stats, name, None)
            if isinstance(usage, int | float):
                self.value = min(max(float(usage), 0.0), 1.0)
                return

    def logger_factory(self) -> Callable[..., Any] | None:
        try:
            from vllm.v1.metrics.loggers import StatLoggerBase
        except ImportError:
            return None
        usage = self

        class _KvUsageLogger(StatLoggerBase):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                pass

            def record(self, scheduler_stats: Any = None, *args: Any, **kwargs: Any) -> None:
                if scheduler_stats is not None:
                    usage.observe(scheduler_stats)

            def log_engine_initialized(self) -> None:
                pass

            def log(self) -> None:
                pass

        return lambda *args, **kwargs: _KvUsageLogger()


def _env_engine_args() -> dict[str, Any]:
    import os

    converters: dict[str, Callable[[str], Any]] = {
        "gpu_memory_utilization": float, "max_model_len": int,
        "enforce_eager": lambda v: v.strip().lower() in ("1", "true", "yes")}
    out: dict[str, Any] = {}
    for key, convert in converters.items():
        name = f"GATEWAY_VLLM_{key.upper()}"
        value = os.environ.get(name, "").strip()
        if value:
            try:
                out[key] = convert(value)
            except ValueError:
                raise ModelLoadError(f"{name}: invalid value {value!r}") from None
    return out


def _engine_class() -> Any:
    try:
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM
    except ImportError:  # before the v1 engine: the classic async engine
        from vllm import AsyncLLMEngine

        return AsyncLLMEngine


def _template_messages(messages: tuple[ChatMessage, ...],
                       context: str | None) -> list[dict[str, str]]:
    out = [{"role": "system" if m.role == "developer" else m.role, "content": m.content}
           for m in messages]
    system_text = "\n".join(m.content for m in messages if m.role in ("system", "developer"))
    if context and context != system_text:  # the `context` extension field was given
        out.insert(0, {"role": "system", "content": f"context: {context}"})
    return out


def _as_records(inputs: Any) -> list[Any]:
    records = [inputs] if isinstance(inputs, dict) else inputs
    if not isinstance(records, list) or not records:
        raise InputError("inputs: expected a record {prompt, ...} or a non-empty list of them",
                         field="inputs")
    return records
