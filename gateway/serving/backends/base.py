"""The Backend protocol, its prediction value and memory profile (the factory is `factory.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import ModelLoadError
from model_registry.refs import ModelRef


class NothingToCheck(ModelLoadError):
    """`health_check` has no input to call the model with: the version has no signature, no
    input example, and no input format the gateway knows. The slot refuses it traffic unless
    the config says `slots.health_check: allow_unchecked` (see model_server.load_backend)."""


@dataclass(frozen=True)
class Prediction:
    """What a backend returns for one request: JSON-ready outputs and a drift summary."""

    outputs: Any
    # A scalar summary of the outputs (their mean), fed to the output-drift guard.
    output_summary: float | None = None
    # A scalar summary of the inputs (their mean), fed to the input-drift guard.
    input_summary: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0


@dataclass(frozen=True)
class MemoryProfile:
    """What a serving engine says about its own memory, for the memory guard.

    `reserved_fraction`: the share of the device the engine preallocates by design (vLLM's
    `gpu_memory_utilization`); memory up to it is not saturation. `engine_usage`: the
    engine's own saturation signal in [0, 1] (vLLM's KV-cache usage), None where it has none.
    """

    reserved_fraction: float = 0.0
    engine_usage: float | None = None
    live: bool = False  # the signal changes while serving: the slot reports it periodically


def memory_profile(backend: object) -> MemoryProfile:
    """The backend's `memory_profile()` if it has one (optional), else no reservation."""
    get = getattr(backend, "memory_profile", None)
    return get() if callable(get) else MemoryProfile()


class Backend(Protocol):
    """Serves one immutable model version inside a model-slot replica.

    Contract:
    - `load` loads `ref.uri` (`models:/name/version`, never an alias) and raises
      `ModelLoadError` naming the version if it cannot.
    - `health_check` runs a real inference and raises `ModelLoadError` if the model cannot
      answer it; a slot gets no traffic before it passes. Its input: one made from the
      signature, else the input example logged with the model, else (text generation) a
      short prompt; with none of them it raises `NothingToCheck`.
    - `predict` raises `InputError` (a client error, never counted against the model) when
      the inputs do not fit the model's signature, and any other exception when the model
      itself fails.
    - Optional: `memory_profile() -> MemoryProfile` for engines that preallocate device
      memory or expose a saturation signal.
    """

    name: str

    def load(self, ref: ModelRef) -> None: ...

    def health_check(self) -> None: ...

    def predict(self, inputs: Any) -> Prediction: ...
