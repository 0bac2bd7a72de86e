"""The guards: the statistics that judge a challenger against the champion from their
request windows (`window`), each guard one module (`error_rate`, `latency`, `throughput`,
`drift`, `memory`, `cost`, `kpi`, `hallucination_guard`, ...), their combined verdict
(`verdict`, `registry`) and the hallucination scorers (`scorers`, `hallucination`).

A library: it may import `core` and nothing else of the project (no Ray, no gateway), so the
judge runs the same in the supervisor, the tests and the simulations. The ingress records
into `guards.window` on every request, so this package imports none of its submodules.
"""

__all__ = [
    "base",
    "clustering",
    "context",
    "cost",
    "drift",
    "drift_report",
    "error_budget",
    "error_rate",
    "hallucination",
    "hallucination_guard",
    "incident",
    "kpi",
    "latency",
    "look",
    "matched",
    "memory",
    "registry",
    "results",
    "scorers",
    "stats",
    "throughput",
    "verdict",
    "window",
]
