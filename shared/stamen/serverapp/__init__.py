"""The ServerApp API under Flower's module name (`flwr.serverapp`).

`ServerApp` and `Grid` have their homes in `stamen.server`; the Message-API strategies
live in `stamen.serverapp.strategy`, imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stamen.common.lazy import lazy_attributes
from stamen.server.grid import Grid
from stamen.server.server_app import ServerApp

if TYPE_CHECKING:
    from . import strategy

__all__ = ["Grid", "ServerApp", "strategy"]

__getattr__ = lazy_attributes(__name__, {"strategy": ""})
