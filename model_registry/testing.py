"""Log small real MLflow models, for tests and the demo (not used by the gateway itself).

`mlflow.pyfunc.log_model` only works through MLflow's global tracking URI and active run, so
`log_linear_model` switches the global URI for the duration of the call and puts it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.pyfunc import PythonModel

from model_registry.experiments import DEFAULT_EXPERIMENT, ensure_experiment, use_tracking_uri


class LinearModel(PythonModel):
    """y = a * x + b, elementwise, as float64. Importable, so any process can unpickle it."""

    def __init__(self, a: float, b: float) -> None:
        self.a = float(a)
        self.b = float(b)

    # Unannotated on purpose: MLflow reads type hints on `predict` as an input schema and
    # converts inputs to match (it warns about their absence; the warning is harmless).
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        values = np.asarray(model_input, dtype=np.float64)
        return values * self.a + self.b


class FailingModel(PythonModel):
    """Raises on every call: a challenger that could never answer a request."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("injected model failure")


class PoisonRowModel(PythonModel):
    """One output per row (the row's sum times `a`), at a cost per call rather than per row
    (`delay_s` each call, as a GPU's forward pass), and raising when any row starts with
    `poison`: the model of a batch that one bad row breaks."""

    def __init__(self, a: float = 1.0, poison: float = 13.0, delay_s: float = 0.0) -> None:
        self.a, self.poison, self.delay_s = float(a), float(poison), float(delay_s)

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        import time

        if self.delay_s > 0:
            time.sleep(self.delay_s)
        values = np.asarray(model_input, dtype=np.float64)
        if (values[:, 0] == self.poison).any():
            raise ValueError(f"poisoned row (first value {self.poison})")
        return values.sum(axis=1) * self.a


@dataclass(frozen=True)
class LoggedModelInfo:
    model_uri: str  # models:/<model_id>
    run_id: str
    runs_uri: str  # runs:/<run_id>/<name>


def log_linear_model(
    tracking_uri: str,
    a: float,
    b: float,
    *,
    name: str = "model",
    experiment: str = DEFAULT_EXPERIMENT,
) -> LoggedModelInfo:
    """Log `LinearModel(a, b)` as a pyfunc model under a new run; register it with
    `ModelRegistry.register(info.model_uri)` (or `info.runs_uri`)."""
    return log_pyfunc_model(tracking_uri, LinearModel(a, b), name=name, experiment=experiment,
                            params={"a": a, "b": b})


def log_pyfunc_model(
    tracking_uri: str,
    python_model: PythonModel,
    *,
    signature: Any = None,
    input_example: Any = None,
    metadata: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    name: str = "model",
    experiment: str = DEFAULT_EXPERIMENT,
) -> LoggedModelInfo:
    """Log any PythonModel under a new run. `signature=None` with an `input_example` lets
    MLflow infer the signature by calling the model on it (and log none when that call
    raises); `signature=False` logs none without calling it."""
    experiment_id = ensure_experiment(tracking_uri, experiment)
    with use_tracking_uri(tracking_uri), mlflow.start_run(experiment_id=experiment_id) as run:
        if params:
            mlflow.log_params(params)
        # Explicit requirements: inferring them would spawn a subprocess and take seconds.
        info = mlflow.pyfunc.log_model(name=name, python_model=python_model,
                                       signature=signature, input_example=input_example,
                                       metadata=metadata,
                                       pip_requirements=[f"mlflow=={mlflow.__version__}"])
    run_id = run.info.run_id
    return LoggedModelInfo(model_uri=info.model_uri, run_id=run_id,
                           runs_uri=f"runs:/{run_id}/{name}")
