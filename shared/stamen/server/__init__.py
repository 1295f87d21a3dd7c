"""The server SDK: ServerApp, its config, the Grid it talks through, and strategies."""

from .client_manager import ClientManager, Criterion, SimpleClientManager
from .client_proxy import ClientProxy
from .config import ServerAppComponents, ServerConfig
from .grid import Grid
from .history import History
from .server_app import ServerApp

__all__ = [
    "ClientManager",
    "ClientProxy",
    "Criterion",
    "Grid",
    "History",
    "ServerApp",
    "ServerAppComponents",
    "ServerConfig",
    "SimpleClientManager",
]
