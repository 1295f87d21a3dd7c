"""The ServerApp side of the Message API: `ServerApp`, the `Grid` it talks through, and
`strategy`."""

from stamen.server.grid import Grid
from stamen.server.server_app import ServerApp

__all__ = ["Grid", "ServerApp"]
