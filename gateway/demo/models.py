"""Small real models for the demo and the tests: a torch MLP and a fault-injecting pyfunc.

The fault knobs reproduce what breaks challengers in production (exceptions, slowness,
shifted outputs) so rollbacks can be shown and tested end to end on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel

N_FEATURES = 8


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Generated regression data: a smooth nonlinear target with noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    w = np.linspace(-1.0, 1.0, N_FEATURES, dtype=np.float32)
    y = x @ w + 0.5 * np.sin(x[:, 0] * 2.0) + rng.normal(scale=0.1, size=n).astype(np.float32)
    return x, y.reshape(-1, 1).astype(np.float32)


def train_mlp(epochs: int = 60, hidden: int = 32, seed: int = 0) -> Any:
    """Train a small torch MLP on generated data in a second or two on a CPU."""
    import torch

    torch.manual_seed(seed)
    x, y = make_data(2048, seed)
    model = torch.nn.Sequential(torch.nn.Linear(N_FEATURES, hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for i in range(0, len(xt), 256):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xt[i:i + 256]), yt[i:i + 256])
            loss.backward()
            opt.step()
    return model.eval()


def tensor_signature() -> Any:
    """(-1, 8) float32 in, (-1, 1) float32 out: the batch dimension stays dynamic."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, N_FEATURES))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1))]))


@dataclass(frozen=True)
class Faults:
    """Fault knobs. `fail_after` calls pass first (the pre-traffic health check is one)."""

    error_rate: float = 0.0
    fail_after: int = 1
    delay_s: float = 0.0
    output_shift: float = 0.0
    output_scale: float = 1.0


class LinearModel(PythonModel):
    """y = x @ w + b, with optional injected faults. Logged with mlflow.pyfunc."""

    def __init__(self, weights: list[float], bias: float = 0.0,
                 faults: Faults | None = None, seed: int = 0) -> None:
        self.weights = np.asarray(weights, dtype=np.float32).reshape(-1, 1)
        self.bias = float(bias)
        self.faults = faults or Faults()
        self.seed = seed
        self._calls = 0
        self._rng: np.random.Generator | None = None

    # No type hints here: MLflow would read them as an input schema and validate against it.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        import time

        self._calls += 1
        f = self.faults
        if f.delay_s > 0:
            time.sleep(f.delay_s)
        if self._calls > f.fail_after and f.error_rate > 0:
            if self._rng is None:
                self._rng = np.random.default_rng(self.seed)
            if f.error_rate >= 1.0 or self._rng.random() < f.error_rate:
                raise RuntimeError("injected model failure")
        x = np.asarray(model_input, dtype=np.float32)
        return (x @ self.weights + self.bias) * f.output_scale + f.output_shift


def demo_weights() -> list[float]:
    return [float(v) for v in np.linspace(-1.0, 1.0, N_FEATURES)]
