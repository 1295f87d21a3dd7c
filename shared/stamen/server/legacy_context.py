"""LegacyContext: a Context that also carries the legacy loop's config, strategy, client
manager and History, as Flower's `DefaultWorkflow` expects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stamen.common.context import Context

from .client_manager import ClientManager
from .config import ServerConfig
from .history import History

if TYPE_CHECKING:
    from .strategy.strategy import Strategy

__all__ = ["LegacyContext"]


class LegacyContext(Context):
    """`context` plus what the legacy round loop runs with (defaults: one round of FedAvg
    over every node the grid reports)."""

    __slots__ = ("client_manager", "config", "history", "strategy")

    def __init__(
        self,
        context: Context,
        config: ServerConfig | None = None,
        strategy: Strategy | None = None,
        client_manager: ClientManager | None = None,
    ) -> None:
        super().__init__(
            run_id=context.run_id,
            node_id=context.node_id,
            node_config=context.node_config,
            state=context.state,
            run_config=context.run_config,
        )
        if strategy is None:
            from .strategy.fedavg import FedAvg

            strategy = FedAvg()
        self.config = config if config is not None else ServerConfig()
        self.strategy = strategy
        self.client_manager = client_manager if client_manager is not None else ClientManager()
        self.history = History()
