"""Fixtures for the demo (`gateway demo`), the tests and the benchmarks; never imported by
production code.

- `models`: a small torch MLP and a fault-injecting linear pyfunc model.
- `textgen`: a small CPU text-generation pyfunc model (bigram LM) and its registration.
- `hf_tiny`: a tiny Llama checkpoint built on disk, for the GPU checks.
- `traffic`: the one bounded load generator (open or closed loop, answers recorded).
- `live`: the demo's live traffic with a one-line rollout view.
- `run`: the demo itself.

An entry point: it may import any package of the project. Submodules are imported on demand
(they pull in MLflow, torch or httpx).
"""

__all__ = ["hf_tiny", "live", "models", "run", "textgen", "traffic"]
