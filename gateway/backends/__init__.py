"""Model backends: one file per backend, one factory (`make_backend`)."""

from gateway.backends.base import Backend, Prediction, make_backend

__all__ = ["Backend", "Prediction", "make_backend"]
