"""ClientManager: which nodes are available, and deterministic sampling among them.

Bound to a Grid (the default round loop binds it), the available nodes are the grid's
online nodes, re-read each round and while waiting. Sampling sorts them by
(partition id, node id) and draws with `random.Random(seed)`, so the same run config
samples the same partitions in simulation and in deployment.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Protocol

from stamen.common.errors import ConfigError, NotEnoughNodesError
from stamen.common.records import UserConfig

from .client_proxy import ClientProxy
from .grid import Grid

__all__ = ["ClientManager", "Criterion", "SimpleClientManager"]

logger = logging.getLogger(__name__)

DEFAULT_WAIT_TIMEOUT = 300.0
"""Seconds `sample` waits for enough nodes before it gives up (run config
'min-available-timeout' overrides it)."""


def wait_timeout(run_config: UserConfig) -> float:
    """Seconds to wait for enough nodes: the run config's 'min-available-timeout'
    (stamen-serverapp --node-wait-timeout sets it), else DEFAULT_WAIT_TIMEOUT."""
    raw = run_config.get("min-available-timeout", DEFAULT_WAIT_TIMEOUT)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"run config 'min-available-timeout' must be seconds >= 0, got {raw!r}")
    return value


def where_nodes_connect(grid: Grid | None) -> str:
    """The hint that a wait-for-nodes line ends with: the Fleet address SuperNodes should
    use, when the grid knows it (a deployment's `fleet_address`), else nothing."""
    address = getattr(grid, "fleet_address", None)
    if not address:
        return ""
    return f" (start SuperNodes with --superlink {address}, the Fleet API)"


class Criterion(Protocol):
    """Flower's sampling filter: only proxies it selects are sampled."""

    def select(self, client: ClientProxy) -> bool: ...


class ClientManager:
    """The available nodes as ClientProxies, keyed by node id.

    Used from one thread (the ServerApp's); `register`/`unregister` may come from others
    and wake a `wait_for` that has no grid to poll.
    """

    poll_interval = 0.2
    """Seconds between two reads of the grid's nodes while waiting."""
    log_interval = 5.0
    """Seconds between two "waiting for nodes" progress lines."""

    def __init__(self) -> None:
        self._proxies: dict[int, ClientProxy] = {}
        self._changed = threading.Condition()
        self._grid: Grid | None = None
        self._rng = random.Random(0)
        self.wait_timeout = DEFAULT_WAIT_TIMEOUT

    def bind(self, grid: Grid, *, seed: int = 0, wait_timeout: float | None = None) -> None:
        """Take the available nodes from `grid` from now on, and sample with `seed`."""
        self._grid = grid
        self._rng = random.Random(seed)
        if wait_timeout is not None:
            self.wait_timeout = wait_timeout
        self.refresh()

    def sampling_state(self) -> object:
        """The sampler's state, for a checkpoint: a resumed run samples as the
        uninterrupted one would."""
        return self._rng.getstate()

    def restore_sampling_state(self, state: object) -> None:
        self._rng.setstate(state)  # type: ignore[arg-type]

    def refresh(self) -> None:
        """Re-read the grid's online nodes: register new ones, unregister gone ones."""
        if self._grid is None:
            return
        grid = self._grid
        online = {node.node_id: node for node in grid.get_nodes() if node.online}
        with self._changed:
            for node_id in [n for n in self._proxies if n not in online]:
                del self._proxies[node_id]
            for node_id, node in online.items():
                if node_id not in self._proxies:
                    self._proxies[node_id] = ClientProxy(node_id, node.node_config, grid)
            self._changed.notify_all()

    def num_available(self) -> int:
        return len(self._proxies)

    def register(self, client: ClientProxy) -> bool:
        """Add `client`; False if a proxy for its node is there already."""
        with self._changed:
            if client.node_id in self._proxies:
                return False
            self._proxies[client.node_id] = client
            self._changed.notify_all()
            return True

    def unregister(self, client: ClientProxy) -> None:
        with self._changed:
            self._proxies.pop(client.node_id, None)
            self._changed.notify_all()

    def all(self) -> dict[str, ClientProxy]:
        """The available proxies by cid, in sampling order."""
        return {proxy.cid: proxy for proxy in self._ordered()}

    def wait_for(self, num_clients: int, timeout: float | None = None) -> bool:
        """Wait until `num_clients` nodes are available; False after `timeout` seconds
        (default: `wait_timeout`). Logs progress at INFO every `log_interval` seconds,
        naming the Fleet address the nodes should use when the grid knows it (a
        deployment's `fleet_address`)."""
        bound = self.wait_timeout if timeout is None else timeout
        deadline = time.monotonic() + bound
        next_log = 0.0
        while True:
            self.refresh()
            available = self.num_available()
            if available >= num_clients:
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            if now >= next_log:
                logger.info(
                    "waiting for nodes: %d of %d online%s; giving up in %.0fs",
                    available,
                    num_clients,
                    where_nodes_connect(self._grid),
                    deadline - now,
                )
                next_log = now + self.log_interval
            with self._changed:
                if self.num_available() < num_clients:
                    self._changed.wait(min(self.poll_interval, deadline - now))

    def sample(
        self,
        num_clients: int,
        min_num_clients: int | None = None,
        criterion: Criterion | None = None,
    ) -> list[ClientProxy]:
        """`num_clients` proxies drawn without replacement, after waiting for
        `min_num_clients` (default `num_clients`) to be available; [] if fewer than
        `num_clients` remain (Flower's behaviour)."""
        needed = num_clients if min_num_clients is None else min_num_clients
        if not self.wait_for(needed):
            raise NotEnoughNodesError(needed, self.num_available(), self.wait_timeout)
        available = self._ordered()
        if criterion is not None:
            available = [proxy for proxy in available if criterion.select(proxy)]
        if num_clients > len(available):
            logger.info(
                "Sampling failed: number of available clients (%d) is less than number of "
                "requested clients (%d).",
                len(available),
                num_clients,
            )
            return []
        return self._rng.sample(available, num_clients)

    def _ordered(self) -> list[ClientProxy]:
        with self._changed:
            proxies = list(self._proxies.values())
        return sorted(proxies, key=lambda proxy: proxy.order_key)


SimpleClientManager = ClientManager
"""Flower's name for the default client manager."""
