"""A tiny synchronous Grid for tests: each node's ClientApp is called directly.

Messages are not serialized; a node in `silent` never replies (as if it missed the
round timeout), and a ClientApp that raises yields an error reply, as a SuperNode's would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stamen.common.context import Context
from stamen.common.message import Error, ErrorCode, Message
from stamen.common.node import Node
from stamen.common.records import RecordDict, UserConfig
from stamen.common.run import Run

ClientAppCallable = Callable[[Message, Context], Message]


@dataclass
class InProcessNode:
    node_id: int
    node_config: UserConfig
    app: ClientAppCallable
    context: Context


class InProcessGrid:
    """The Grid protocol over a list of in-process nodes; records every instruction."""

    def __init__(
        self,
        nodes: Iterable[InProcessNode],
        run_id: int = 1,
        run_config: UserConfig | None = None,
    ) -> None:
        self.nodes: dict[int, InProcessNode] = {node.node_id: node for node in nodes}
        self.offline: set[int] = set()
        self.silent: set[int] = set()
        self.sent: list[Message] = []
        self._replies: dict[str, Message] = {}
        self._run = Run(run_id=run_id, run_config=dict(run_config or {}))

    @classmethod
    def with_apps(
        cls,
        app: ClientAppCallable,
        node_ids: Iterable[int],
        *,
        partitioned: bool = True,
        run_config: UserConfig | None = None,
    ) -> InProcessGrid:
        """One node per id running `app`; node i gets partition-id i if `partitioned`."""
        ids = list(node_ids)
        nodes = []
        for index, node_id in enumerate(ids):
            config: UserConfig = (
                {"partition-id": index, "num-partitions": len(ids)} if partitioned else {}
            )
            context = Context(1, node_id, dict(config), RecordDict(), dict(run_config or {}))
            nodes.append(InProcessNode(node_id, config, app, context))
        return cls(nodes, run_config=run_config)

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str = "",
        ttl: float | None = None,
    ) -> Message:
        message = Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)
        message.metadata.run_id = self._run.run_id
        return message

    def get_node_ids(self) -> list[int]:
        return [node.node_id for node in self.get_nodes()]

    def get_nodes(self) -> list[Node]:
        return [
            Node(node.node_id, dict(node.node_config))
            for node in self.nodes.values()
            if node.node_id not in self.offline
        ]

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            self.sent.append(message)
            ids.append(message.metadata.message_id)
            node = self.nodes.get(message.metadata.dst_node_id)
            if node is None or node.node_id in self.silent:
                continue
            try:
                reply = node.app(message, node.context)
            except Exception as exc:  # what a SuperNode does with an app that raises
                reason = f"{type(exc).__name__}: {exc}"
                reply = message.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, reason))
            self._replies[message.metadata.message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        return self.pull_messages(self.push_messages(messages))
