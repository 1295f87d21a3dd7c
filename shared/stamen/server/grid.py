"""Grid: how ServerApp code reaches the nodes.

User code (strategies, `@app.main`) runs in a thread, off the event loop, and calls this
synchronous interface; the deployment Grid bridges each call to the async ServerAppIo
transport, so the same Grid class serves simulation and deployment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from stamen.common.message import Message
from stamen.common.node import Node
from stamen.common.records import RecordDict
from stamen.common.run import Run

__all__ = ["Grid"]


class Grid(Protocol):
    @property
    def run(self) -> Run: ...

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str = "",
        ttl: float | None = None,
    ) -> Message:
        """An instruction for one node, stamped with this grid's run id."""
        ...

    def get_node_ids(self) -> list[int]:
        """The ids of the nodes online now."""
        ...

    def get_nodes(self) -> list[Node]:
        """The nodes online now, with their node_config (partition-id, ...)."""
        ...

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Send instructions; returns their message ids."""
        ...

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """The replies that have arrived for these instructions (possibly none)."""
        ...

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        """Push, then wait for every reply or until `timeout` seconds have passed.

        A node that goes offline or an instruction that expires yields an error reply,
        so this never waits forever when `timeout` is None.
        """
        ...
