"""The legacy server API (`flwr.server`): ServerApp with a strategy and config, the Grid
it talks through, the legacy strategies, and the workflows of the default loop."""

from stamen.compat.unsupported import unsupported_attributes

from . import strategy, workflow
from .client_manager import ClientManager, Criterion, SimpleClientManager
from .client_proxy import ClientProxy
from .config import ServerAppComponents, ServerConfig
from .grid import Grid
from .history import History
from .legacy_context import LegacyContext
from .server_app import ServerApp

Driver = Grid
"""Flower's deprecated name for the Grid."""

__all__ = [
    "ClientManager",
    "ClientProxy",
    "Criterion",
    "Driver",
    "Grid",
    "History",
    "LegacyContext",
    "ServerApp",
    "ServerAppComponents",
    "ServerConfig",
    "SimpleClientManager",
    "strategy",
    "workflow",
]

__getattr__ = unsupported_attributes(__name__)
