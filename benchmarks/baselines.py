"""The two hand-written baselines the overhead benchmark compares the gateway with, and that
its in-process hot-path timing (benchmarks.hotpath) measures: a model deployment alone, and
a minimal ingress in front of it. Plain classes; benchmarks.overhead makes them Serve
deployments (replicas import this module by path)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response


class PlainModel:
    """The model alone: load the MLflow pyfunc, answer JSON `{"inputs": rows}`."""

    def __init__(self, tracking_uri: str, model_uri: str) -> None:
        import mlflow
        import mlflow.pyfunc

        mlflow.set_tracking_uri(tracking_uri)
        self._model = mlflow.pyfunc.load_model(model_uri)

    def predict(self, inputs: Any) -> dict[str, Any]:
        import numpy as np

        out = self._model.predict(np.asarray(inputs, dtype=np.float32))
        return {"outputs": np.asarray(out).tolist()}

    async def __call__(self, request: Request) -> Response:
        body = json.loads(await request.body())
        return bare_json_response(self.predict(body["inputs"]))


class BareIngress:
    """A minimal ingress: parse, call the model deployment through its handle, answer."""

    def __init__(self, model: Any) -> None:
        self._model = model.options(method_name="predict")

    async def __call__(self, request: Request) -> Response:
        body = json.loads(await request.body())
        return bare_json_response(await self._model.remote(body["inputs"]))


def bare_json_response(payload: Any) -> Response:
    """What a hand-written deployment answers with: compact JSON."""
    return Response(json.dumps(payload, separators=(",", ":")).encode(),
                    media_type="application/json")
