"""The control plane: the supervisor actor that runs each rollout (`supervisor`), its pure
state machine (`rollout`), the routing-table long-poll it hosts (`longpoll`), the evidence
and feedback it keeps (`evidence`, `feedback`), what it persists in the registry (`store`),
what it senses (`sensors`) and how it acts (`effects`: registry tags, the audit log in
`audit`, the MLflow run in `rollout_run`, alerts in `alerts` and `notifiers`, champion
scaling in `scaling`). It may import `core`, the libraries (`guards`, `model_registry`,
`gpu_monitor`), `gateway.wire`, `gateway.config` and `gateway.metrics`, never the data plane
(`gateway.serving`), which talks to it only through the supervisor's Ray actor methods.
Submodules are imported on demand (the supervisor pulls in Ray and MLflow clients).
"""

__all__ = [
    "alerts",
    "audit",
    "clock",
    "effects",
    "evidence",
    "feedback",
    "longpoll",
    "notifiers",
    "ports",
    "rollout",
    "rollout_run",
    "scaling",
    "sensors",
    "store",
    "supervisor",
]
