"""The ServerApp API under Flower's module name (`flwr.serverapp`).

`ServerApp` and `Grid` have their homes in `stamen.server`; the Message-API strategies
live in `stamen.serverapp.strategy`, imported on first use; privacy accounting for the DP
strategies in `stamen.serverapp.privacy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stamen.common.lazy import lazy_attributes
from stamen.server.grid import Grid
from stamen.server.server_app import ServerApp

from .privacy import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyAccountant,
    PrivacyConfig,
    PrivacySpent,
    RdpAccountant,
    SamplingMethod,
)

if TYPE_CHECKING:
    from . import strategy

__all__ = [
    "GaussianPrivacyEvent",
    "Grid",
    "NeighboringRelation",
    "PrivacyAccountant",
    "PrivacyConfig",
    "PrivacySpent",
    "RdpAccountant",
    "SamplingMethod",
    "ServerApp",
    "strategy",
]

__getattr__ = lazy_attributes(__name__, {"strategy": ""})
