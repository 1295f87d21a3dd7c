"""VirtualNodes: every node registered at once, an agent only for a node sent work."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from stamen.codec.envelope import Envelope
from stamen.common.records import UserConfig
from stamen.simulation.nodes import VirtualNodes
from stamen.transport.types import NodeRegistration

pytestmark = pytest.mark.timeout(30)


class FakeFleet:
    """Records what the nodes call; a long poll waits its whole timeout for nothing."""

    def __init__(self) -> None:
        self._ids = itertools.count(100)
        self.configs: dict[int, UserConfig] = {}
        self.heartbeats: list[int] = []
        self.pulls: list[int] = []
        self.unregistered: list[int] = []
        self._changed = asyncio.Event()

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait until `check()` holds, looking again after each call recorded."""
        while not check():
            self._changed.clear()
            await self._changed.wait()

    async def register_node(self, node_config: UserConfig) -> NodeRegistration:
        node_id = next(self._ids)
        self.configs[node_id] = dict(node_config)
        return NodeRegistration(node_id, 0.01)

    async def heartbeat(self, node_id: int) -> float:
        self.heartbeats.append(node_id)
        self._changed.set()
        return 0.01

    async def pull_messages(self, node_id: int, timeout: float) -> list[Envelope]:
        self.pulls.append(node_id)
        self._changed.set()
        await asyncio.sleep(timeout)
        return []

    async def unregister_node(self, node_id: int) -> None:
        self.unregistered.append(node_id)


class FakePool:
    def executor(self) -> Any:
        return object()  # never asked to run anything: no instruction arrives


async def test_nodes_register_at_once_and_an_agent_starts_only_when_woken() -> None:
    fleet = FakeFleet()
    async with asyncio.TaskGroup() as tasks:
        nodes = VirtualNodes(fleet, FakePool(), 3, tasks)  # type: ignore[arg-type]
        await nodes.register()
        assert fleet.configs == {
            100 + i: {"partition-id": i, "num-partitions": 3} for i in range(3)
        }
        assert nodes.started == 0

        nodes.wake([101, 101, 999])  # twice, and a node that is not one of them
        assert nodes.started == 1
        await fleet.until(lambda: 101 in fleet.pulls)  # polls as the node registered for it
        nodes.stop()

    assert len(fleet.configs) == 3  # the agent registered nothing of its own
    assert fleet.unregistered == [101]


async def test_dormant_nodes_send_heartbeats_until_woken() -> None:
    fleet = FakeFleet()
    async with asyncio.TaskGroup() as tasks:
        nodes = VirtualNodes(fleet, FakePool(), 2, tasks)  # type: ignore[arg-type]
        await nodes.register()
        await fleet.until(lambda: {100, 101} <= set(fleet.heartbeats))
        nodes.wake([100])
        fleet.heartbeats.clear()
        await fleet.until(lambda: fleet.heartbeats.count(101) >= 2)
        nodes.stop()

    assert 100 not in fleet.heartbeats  # its agent, idle in a long poll, sends none
