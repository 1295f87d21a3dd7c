"""ServerConfig and ServerAppComponents: what the default round loop runs with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stamen.common.errors import ConfigError

if TYPE_CHECKING:
    from .client_manager import ClientManager
    from .strategy.strategy import Strategy

__all__ = ["ServerAppComponents", "ServerConfig", "reject_server"]


@dataclass(slots=True)
class ServerConfig:
    """How many rounds to run, and how long a round waits for its replies (None: no bound
    beyond the nodes' liveness, which turns a lost node into an error reply)."""

    num_rounds: int = 1
    round_timeout: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_rounds, bool) or not isinstance(self.num_rounds, int):
            raise ConfigError(f"ServerConfig.num_rounds must be an int, got {self.num_rounds!r}")
        if self.num_rounds < 0:
            raise ConfigError(f"ServerConfig.num_rounds must be >= 0, got {self.num_rounds}")
        if self.round_timeout is not None and not self.round_timeout > 0:
            raise ConfigError(
                f"ServerConfig.round_timeout must be > 0 seconds or None, got {self.round_timeout}"
            )


@dataclass(slots=True)
class ServerAppComponents:
    """What a `server_fn(context)` returns; a None field takes the default
    (FedAvg, one round, a client manager over the grid's nodes). `server` is Flower's
    custom legacy Server, which Stamen does not support: leave it None."""

    server: object = None
    config: ServerConfig | None = None
    strategy: Strategy | None = None
    client_manager: ClientManager | None = None

    def __post_init__(self) -> None:
        reject_server(self.server)


def reject_server(server: object) -> None:
    """One clear error for Flower's `server=` argument (a custom legacy Server)."""
    if server is not None:
        raise ConfigError(
            "a custom Server (server=...) is not supported by Stamen: give the strategy, "
            "config and client_manager to ServerApp or ServerAppComponents instead"
        )
