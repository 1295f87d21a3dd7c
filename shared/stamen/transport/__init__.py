"""The three SuperLink APIs as typed interfaces, and the transports that carry them."""

from .api import ControlApi, FleetApi, ServerAppIoApi
from .types import NodeRegistration

__all__ = [
    "ControlApi",
    "FleetApi",
    "NodeRegistration",
    "ServerAppIoApi",
]
