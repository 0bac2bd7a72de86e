"""Model backends: one file per backend, one factory (`make_backend`)."""

from gateway.backends.base import Backend, MemoryProfile, Prediction, make_backend, memory_profile

__all__ = ["Backend", "MemoryProfile", "Prediction", "make_backend", "memory_profile"]
