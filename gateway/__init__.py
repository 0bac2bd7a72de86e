"""champion-gateway: champion/challenger model serving on Ray Serve with guarded rollouts.

Layers, bottom up: `gateway.wire` and the shared roots `gateway.config` and
`gateway.metrics` (they may import `core` and the libraries `guards`, `model_registry`,
`gpu_monitor`); the data plane `gateway.serving` and the control plane `gateway.control`
(each may import those, never the other); the entry points `gateway.app`, `gateway.cli`,
`gateway.runtime`, `gateway.admin_client` and the demo and test fixtures `gateway.demo`
(which may import anything; production code, the CLI's `demo` command aside, never
imports `gateway.demo`). See docs/architecture.md. Every replica imports this package, so
it imports nothing.
"""

__all__ = [
    "admin_client",
    "app",
    "cli",
    "config",
    "control",
    "demo",
    "metrics",
    "runtime",
    "serving",
    "wire",
]
