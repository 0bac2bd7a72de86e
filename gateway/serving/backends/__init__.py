"""Model backends: one file per backend, one factory (`make_backend`)."""

from gateway.serving.backends.base import (
    Backend,
    MemoryProfile,
    NothingToCheck,
    Prediction,
    memory_profile,
)
from gateway.serving.backends.factory import make_backend

__all__ = ["Backend", "MemoryProfile", "NothingToCheck", "Prediction", "make_backend",
           "memory_profile"]
