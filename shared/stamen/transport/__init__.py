"""The three SuperLink APIs as typed interfaces, and the transports that carry them."""

from .api import ControlApi, FleetApi, ServerAppIoApi
from .types import Node, NodeRegistration, PushResult, Run, RunStatus

__all__ = [
    "ControlApi",
    "FleetApi",
    "Node",
    "NodeRegistration",
    "PushResult",
    "Run",
    "RunStatus",
    "ServerAppIoApi",
]
