"""What the two planes share: the contracts that cross between serving and control.

`gateway.wire` holds the routing table and the arm choice (`routing`), the typed replies a
model slot sends the ingress (`replies`), and the supervisor actor's interface as the
serving plane calls it (`handles`). It may import `core`, the libraries (`guards`,
`model_registry`, `gpu_monitor`), the shared roots `gateway.config` and `gateway.metrics`,
and itself; never `gateway.serving` or `gateway.control`, which both import it.
"""

from gateway.wire.handles import RemoteMethod, SupervisorHandle, get_supervisor
from gateway.wire.replies import (
    CallOutcome,
    ServedModel,
    SlotAnswer,
    SlotError,
    SlotReply,
    StreamChunk,
    StreamChunks,
    StreamItem,
    StreamStart,
)
from gateway.wire.routing import (
    SLOTS,
    Arm,
    Mode,
    RoutingTable,
    choose_arm,
    parse_weight_update,
    sticky_bucket,
)

__all__ = [
    "SLOTS",
    "Arm",
    "CallOutcome",
    "Mode",
    "RemoteMethod",
    "RoutingTable",
    "ServedModel",
    "SlotAnswer",
    "SlotError",
    "SlotReply",
    "StreamChunk",
    "StreamChunks",
    "StreamItem",
    "StreamStart",
    "SupervisorHandle",
    "choose_arm",
    "get_supervisor",
    "parse_weight_update",
    "sticky_bucket",
]
