"""stamen.simulation: a federation on one machine, from the deployment's own parts.

    from stamen.simulation import run_simulation
    history = run_simulation(server_app=app, client_app=client_app, num_supernodes=10)

The names below load on first use: worker processes import this package for their
own modules and must not pay for the SuperLink, the agents and the runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stamen.common.lazy import lazy_attributes

if TYPE_CHECKING:
    from .config import BackendConfig, ClientResources
    from .engine import run_simulation, run_simulation_async

__all__ = ["BackendConfig", "ClientResources", "run_simulation", "run_simulation_async"]

_HOMES = {
    "BackendConfig": ".config",
    "ClientResources": ".config",
    "run_simulation": ".engine",
    "run_simulation_async": ".engine",
}

__getattr__ = lazy_attributes(__name__, _HOMES)
