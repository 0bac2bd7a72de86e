"""A small real text-generating model for the CPU path: a word-level bigram language model
with Kneser-Ney smoothing, trained in well under a second on HaluEval contexts, served as
MLflow pyfunc models. A fixture for the demo, the tests and the benchmarks: the serving path
only knows the text-generation protocol (gateway.serving.llm.pyfunc_textgen).

- `GroundedLM` answers from the request's context: it picks the context sentence most
  relevant to the question and samples from the LM restricted to context words, with a copy
  bias towards the word that follows in the context (a pointer-style mixture). Its answers
  are grounded in the context.
- `UngroundedLM` is the same LM ignoring the context: it samples freely from its whole
  vocabulary, so its answers are fluent-looking but unsupported by the context.

Both are real sampling models (temperature, top-p, seed), not reply tables. Input: records
`{prompt, context, question, max_tokens, temperature, top_p, seed}` (see
`GenerationRequest.to_record`); `predict` returns one `{text, finish_reason, prompt_tokens,
completion_tokens}` per record and `predict_stream` yields `{text, finish_reason, tokens}`
one word at a time (the last chunk also carries `prompt_tokens`).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel

from core.errors import ConfigError
from gateway.serving.llm.pyfunc_textgen import TASK_KEY, TEXT_GENERATION
from guards.scorers.text import content_keys, tokenise
from model_registry.refs import ModelRef

DEFAULT_MAX_TOKENS = 64
_REPO = Path(__file__).resolve().parents[2]
CORPUS_FILES = (_REPO / "tests" / "data" / "halueval_qa_slice.jsonl",
                _REPO.parent / "shared" / "data" / "halueval_qa_300.jsonl",
                _REPO / "shared" / "data" / "halueval_qa_300.jsonl")


def _ends_sentence(token: str) -> bool:
    # "St." or "Jr." end no sentence: short capitalised tokens are taken as abbreviations.
    return token.endswith((".", "?", "!")) and not (len(token) <= 4 and token[:1].isupper())


@dataclass(frozen=True)
class BigramLM:
    """Interpolated Kneser-Ney bigram model over whitespace tokens (punctuation attached)."""

    vocab: tuple[str, ...]
    continuation: np.ndarray[Any, Any]  # P_cont(w): share of distinct predecessors
    successors: dict[int, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]
    starts: np.ndarray[Any, Any]  # P(first word of a sentence)
    discount: float = 0.75

    @property
    def index(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_index")
        if cached is None:
            cached = {w: i for i, w in enumerate(self.vocab)}
            object.__setattr__(self, "_index", cached)
        return cached

    def next_probs(self, prev: int | None) -> np.ndarray[Any, Any]:
        """P(w | prev) for every vocabulary word (P_cont when prev is unknown)."""
        if prev is None or prev not in self.successors:
            return self.continuation
        ids, counts = self.successors[prev]
        total = float(counts.sum())
        probs = self.continuation * (self.discount * len(ids) / total)
        probs[ids] += (counts - self.discount) / total
        return probs


def train_lm(texts: Iterable[str], discount: float = 0.75) -> BigramLM:
    """Count bigrams over `texts` (one document each) and smooth them (Kneser-Ney)."""
    pair_counts: dict[str, Counter[str]] = defaultdict(Counter)
    start_counts: Counter[str] = Counter()
    for text in texts:
        tokens = text.split()
        at_start = True
        for i, token in enumerate(tokens):
            if at_start:
                start_counts[token] += 1
            at_start = _ends_sentence(token)
            if i + 1 < len(tokens) and not at_start:
                pair_counts[token][tokens[i + 1]] += 1
    vocab = tuple(sorted(set(start_counts) | set(pair_counts)
                         | {w for c in pair_counts.values() for w in c}))
    if not vocab:
        raise ConfigError("textgen: empty training corpus")
    index = {w: i for i, w in enumerate(vocab)}
    predecessors = np.zeros(len(vocab))
    successors = {}
    for prev, nexts in pair_counts.items():
        ids = np.fromiter((index[w] for w in nexts), dtype=np.int64, count=len(nexts))
        successors[index[prev]] = (ids, np.fromiter(nexts.values(), dtype=np.float64,
                                                     count=len(nexts)))
        predecessors[ids] += 1
    continuation = (predecessors + 0.1) / (predecessors + 0.1).sum()
    starts = np.zeros(len(vocab))
    for token, count in start_counts.items():
        starts[index[token]] = count
    return BigramLM(vocab, continuation, successors, starts / starts.sum(), discount)


def load_corpus(paths: Iterable[Path] = CORPUS_FILES) -> list[str]:
    """HaluEval knowledge passages and right answers from the existing `paths`, deduplicated."""
    seen: dict[str, None] = {}
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                seen.setdefault(str(item["knowledge"]).strip(), None)
                seen.setdefault(str(item["right_answer"]).strip(), None)
    if not seen:
        raise ConfigError(f"textgen: no training corpus found (looked for "
                          f"{', '.join(str(p) for p in paths)})")
    return list(seen)


# ---- sampling ----------------------------------------------------------------------------

def sample_index(rng: np.random.Generator, weights: np.ndarray[Any, Any],
                 temperature: float, top_p: float) -> int:
    """Sample from `weights` (non-negative) with temperature and nucleus (top-p) filtering;
    temperature 0 is greedy."""
    if temperature <= 0.0 or top_p <= 0.0:
        return int(np.argmax(weights))
    logits = np.log(np.maximum(weights, 1e-300)) / temperature
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cut = int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1
        nucleus = np.zeros_like(probs)
        nucleus[order[:cut]] = probs[order[:cut]]
        probs = nucleus / nucleus.sum()
    return int(rng.choice(len(probs), p=probs))


@dataclass(frozen=True)
class Record:
    prompt: str
    context: str
    question: str
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None

    @classmethod
    def parse(cls, raw: Any) -> Record:
        if not isinstance(raw, dict):
            raise TypeError(f"expected a record (dict), got {type(raw).__name__}")

        def text(key: str) -> str:
            value = raw.get(key)
            return value if isinstance(value, str) else ""

        def number(key: str, default: float) -> float:
            value = raw.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return default
            return float(value)

        seed = number("seed", -1.0)
        return cls(prompt=text("prompt"), context=text("context"), question=text("question"),
                   max_tokens=max(0, int(number("max_tokens", DEFAULT_MAX_TOKENS))),
                   temperature=number("temperature", 1.0), top_p=number("top_p", 1.0),
                   seed=None if seed < 0 else int(seed))


def records_of(model_input: Any) -> list[dict[str, Any]]:
    """A DataFrame, a list of records or one record -> a list of plain dicts."""
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):
        return [dict(r) for r in model_input.to_dict(orient="records")]
    if isinstance(model_input, dict):
        return [model_input]
    if isinstance(model_input, list):
        return list(model_input)
    raise TypeError(f"expected records, got {type(model_input).__name__}")


# ---- the models --------------------------------------------------------------------------

class TextGenModel(PythonModel):
    """Shared predict/predict_stream; subclasses choose the candidate words at each step."""

    grounded = False

    def __init__(self, lm: BigramLM, delay_per_token_s: float = 0.0,
                 copy_weight: float = 4.0) -> None:
        self.lm = lm
        self.delay_per_token_s = float(delay_per_token_s)
        self.copy_weight = float(copy_weight)

    # No type hints on predict/predict_stream: MLflow would read them as an input schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        delay = self._delay(params)
        out = []
        for raw in records_of(model_input):
            rec = Record.parse(raw)
            words, finish = [], "length"
            for word, reason in self.generate_words(rec, delay):
                words.append(word)
                finish = reason or finish
            out.append({"text": " ".join(words), "finish_reason": finish,
                        "prompt_tokens": len(rec.prompt.split()),
                        "completion_tokens": len(words)})
        return out

    def predict_stream(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        rows = records_of(model_input)
        if len(rows) != 1:
            raise ValueError(f"predict_stream takes one record, got {len(rows)}")
        rec = Record.parse(rows[0])
        prompt_tokens = len(rec.prompt.split())
        emitted = 0
        for word, reason in self.generate_words(rec, self._delay(params)):
            chunk: dict[str, Any] = {"text": (" " if emitted else "") + word,
                                     "finish_reason": reason, "tokens": 1}
            emitted += 1
            if reason is not None:
                chunk["prompt_tokens"] = prompt_tokens
            yield chunk
        if emitted == 0:  # max_tokens 0
            yield {"text": "", "finish_reason": "length", "tokens": 0,
                   "prompt_tokens": prompt_tokens}

    def _delay(self, params: dict[str, Any] | None) -> float:
        value = (params or {}).get("delay_per_token_s")
        return self.delay_per_token_s if value is None else max(0.0, float(value))

    def generate_words(self, rec: Record, delay_s: float = 0.0
                       ) -> Iterator[tuple[str, str | None]]:
        """Yield (word, finish reason or None) one word at a time, as it is sampled."""
        rng = np.random.default_rng(rec.seed)
        step = self._stepper(rec, rng)
        for i in range(rec.max_tokens):
            if delay_s > 0:
                time.sleep(delay_s)  # stands in for a decode step, so streaming is observable
            word = step()
            if _ends_sentence(word):
                yield word, "stop"
                return
            yield word, "length" if i == rec.max_tokens - 1 else None

    def _stepper(self, rec: Record, rng: np.random.Generator) -> Any:
        return _FreeSampler(self.lm, rec, rng)


class UngroundedLM(TextGenModel):
    """Ignores the context: samples freely from the whole vocabulary of its LM."""


class GroundedLM(TextGenModel):
    """Answers from the context: starts at the sentence most relevant to the question and
    samples only context words, biased to follow the context (falls back to free sampling
    when a request has no context)."""

    grounded = True

    def _stepper(self, rec: Record, rng: np.random.Generator) -> Any:
        if not rec.context.split():
            return _FreeSampler(self.lm, rec, rng)
        return _ContextSampler(self.lm, rec, rng, self.copy_weight)


class _FreeSampler:
    def __init__(self, lm: BigramLM, rec: Record, rng: np.random.Generator) -> None:
        self._lm, self._rec, self._rng = lm, rec, rng
        self._prev: int | None = None

    def __call__(self) -> str:
        weights = self._lm.starts if self._prev is None else self._lm.next_probs(self._prev)
        self._prev = sample_index(self._rng, weights, self._rec.temperature, self._rec.top_p)
        return self._lm.vocab[self._prev]


class _ContextSampler:
    """LM probabilities restricted to the context's words, mixed with a copy distribution
    (which word follows the previous one in the context, the chosen sentence counting more)."""

    def __init__(self, lm: BigramLM, rec: Record, rng: np.random.Generator,
                 copy_weight: float) -> None:
        self._lm, self._rec, self._rng, self._copy_weight = lm, rec, rng, copy_weight
        tokens = rec.context.split()
        self._words = tuple(dict.fromkeys(tokens))
        position = {w: i for i, w in enumerate(self._words)}
        self._ids = np.array([lm.index.get(w, -1) for w in self._words])
        focus = _focus_sentence(tokens, rec.question or rec.prompt)
        self._copies: dict[str, Counter[int]] = defaultdict(Counter)
        for a, b in itertools.pairwise(tokens):
            self._copies[a][position[b]] += 1
        for a, b in itertools.pairwise(focus):
            self._copies[a][position[b]] += 2  # the relevant sentence weighs three times
        self._start = focus[0]
        self._prev: str | None = None

    def __call__(self) -> str:
        if self._prev is None:
            self._prev = self._start
            return self._start
        probs = self._lm.next_probs(self._lm.index.get(self._prev))
        weights = np.where(self._ids >= 0, probs[np.maximum(self._ids, 0)], 0.0) + 1e-6
        weights /= weights.sum()
        copies = self._copies.get(self._prev)
        if copies:
            total = sum(copies.values())
            for pos, count in copies.items():
                weights[pos] += self._copy_weight * count / total
        self._prev = self._words[sample_index(self._rng, weights, self._rec.temperature,
                                              self._rec.top_p)]
        return self._prev


def _focus_sentence(tokens: list[str], query: str) -> list[str]:
    sentences: list[list[str]] = [[]]
    for token in tokens:
        sentences[-1].append(token)
        if _ends_sentence(token):
            sentences.append([])
    sentences = [s for s in sentences if s]
    wanted = set(content_keys(tokenise(query)))
    overlap = [len(wanted & set(content_keys(tokenise(" ".join(s))))) for s in sentences]
    return sentences[int(np.argmax(overlap))]


# ---- MLflow logging ------------------------------------------------------------------------

def textgen_signature(delay_per_token_s: float = 0.0) -> Any:
    """Column signature of the records, the output columns, and the `delay_per_token_s`
    inference parameter (defaulting to the model's own delay)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("string", "prompt"),
                     ColSpec("string", "context", required=False),
                     ColSpec("string", "question", required=False),
                     ColSpec("long", "max_tokens", required=False),
                     ColSpec("double", "temperature", required=False),
                     ColSpec("double", "top_p", required=False),
                     ColSpec("long", "seed", required=False)])
    outputs = Schema([ColSpec("string", "text"), ColSpec("string", "finish_reason"),
                      ColSpec("long", "prompt_tokens"), ColSpec("long", "completion_tokens")])
    params = ParamSchema([ParamSpec("delay_per_token_s", "double", float(delay_per_token_s))])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def register_textgen(registry: Any, model: TextGenModel, description: str) -> ModelRef:
    """Log `model` as a streamable pyfunc model under the registry's tracking URI (MLflow's
    global URI is restored afterwards) and register it as a new version of the registry's
    model. The MLmodel metadata marks it `gateway_task: text-generation`."""
    import mlflow
    import mlflow.pyfunc

    from model_registry.experiments import ensure_experiment, use_tracking_uri

    experiment_id = ensure_experiment(registry.tracking_uri, registry.model_name)
    with use_tracking_uri(registry.tracking_uri), \
            mlflow.start_run(experiment_id=experiment_id, run_name=description) as run:
        mlflow.log_params({"description": description, "kind": type(model).__name__,
                           "vocab": len(model.lm.vocab)})
        # Explicit requirements: inferring them would spawn a subprocess and take seconds.
        mlflow.pyfunc.log_model(
            name="model", python_model=model,
            signature=textgen_signature(model.delay_per_token_s),
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"],
            metadata={TASK_KEY: TEXT_GENERATION})
    ref: ModelRef = registry.register(f"runs:/{run.info.run_id}/model",
                                      tags={"description": description,
                                            TASK_KEY: TEXT_GENERATION})
    return ref
