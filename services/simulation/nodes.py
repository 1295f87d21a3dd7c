"""VirtualNodes: a simulation's SuperNodes, all registered at once, each agent started
only when its node is first sent an instruction.

A node that was never sampled is its registration (a Node in the SuperLink's state) and
an entry here: a few hundred bytes, so 100,000 nodes fit in tens of MB. Its agent (the
deployment's `SuperNodeAgent`: coroutines, a Context, timers) starts when the ServerApp
first pushes an instruction to it (`wake`), and then serves as any node does, long-poll
included, until the simulation ends. Until then the SuperLink hears from a dormant node
what it would hear from a deployed one waiting for work: a heartbeat every interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from stamen.codec.cache import ObjectCache
from stamen.common.errors import StamenError
from stamen.common.records import UserConfig
from stamen.supernode import SuperNodeAgent
from stamen.transport.api import FleetApi
from stamen.transport.types import NodeRegistration
from stamen.workers import WorkerPool

__all__ = ["VirtualNodes"]


class VirtualNodes:
    """`count` virtual nodes over `fleet`, their agents run in `tasks` on `pool`."""

    def __init__(
        self, fleet: FleetApi, pool: WorkerPool, count: int, tasks: asyncio.TaskGroup
    ) -> None:
        self._fleet = fleet
        self._pool = pool
        self._count = count
        self._tasks = tasks
        # One cache for all nodes: objects are immutable and named by their hash, so the
        # round's model is fetched (copied, verified) once, not once per node.
        self._cache = ObjectCache()
        self._dormant: dict[int, int] = {}  # node id -> partition id, agent not started
        self._agents: list[SuperNodeAgent] = []
        self._interval = 0.0
        self._keeping: asyncio.Task[None] | None = None

    @property
    def started(self) -> int:
        """How many nodes' agents have started."""
        return len(self._agents)

    async def register(self) -> None:
        """Register every node with the SuperLink; no agent starts yet."""
        for partition in range(self._count):
            registration = await self._fleet.register_node(self._config(partition))
            self._dormant[registration.node_id] = partition
            self._interval = registration.heartbeat_interval
        self._keeping = self._tasks.create_task(self._keep_alive(), name="stamen-dormant-nodes")

    def wake(self, node_ids: Iterable[int]) -> None:
        """Start the agents of these nodes unless they run already (instructions were
        pushed to them: the agent's first long poll takes them)."""
        for node_id in node_ids:
            partition = self._dormant.pop(node_id, None)
            if partition is None:
                continue  # started already, or no node of this simulation
            agent = SuperNodeAgent(
                self._fleet,
                self._pool.executor(),
                self._config(partition),
                object_cache=self._cache,
                registration=NodeRegistration(node_id, self._interval),
            )
            self._agents.append(agent)
            self._tasks.create_task(agent.run())

    def stop(self) -> None:
        """Stop the running agents (each unregisters its node) and the heartbeats."""
        if self._keeping is not None:
            self._keeping.cancel()
        for agent in self._agents:
            agent.stop()

    def _config(self, partition: int) -> UserConfig:
        return {"partition-id": partition, "num-partitions": self._count}

    async def _keep_alive(self) -> None:
        """A heartbeat every interval for each dormant node, as a waiting node sends."""
        while True:
            await asyncio.sleep(self._interval)
            for node_id in list(self._dormant):
                if node_id in self._dormant:  # not woken meanwhile
                    with contextlib.suppress(StamenError):
                        await self._fleet.heartbeat(node_id)
