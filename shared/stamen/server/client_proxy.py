"""ClientProxy: one node as legacy strategies see it.

Strategies written for Flower sample proxies and may call `fit`/`evaluate` on one
directly; each such call is a single message through the Grid. The proxy also carries
the key that orders results (partition id, then node id), which is the same in
simulation and deployment even though node ids are not.
"""

from __future__ import annotations

from stamen.common.errors import NodeReplyError
from stamen.common.legacy import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    MessageTypeLegacy,
    evaluateins_to_recorddict,
    fitins_to_recorddict,
    getparametersins_to_recorddict,
    getpropertiesins_to_recorddict,
    recorddict_to_evaluateres,
    recorddict_to_fitres,
    recorddict_to_getparametersres,
    recorddict_to_getpropertiesres,
)
from stamen.common.message import Message, MessageType
from stamen.common.records import RecordDict, UserConfig

from .grid import Grid

__all__ = ["ClientProxy", "failure_reason", "node_label", "order_key", "partition_id"]

LABEL_WIDTH = 60
"""Characters of a node's config shown in its label; more is cut with "..."."""


def partition_id(node_config: UserConfig) -> int | None:
    """The node's "partition-id" as an int (also from "3" or 3.0), or None if it has none."""
    value = node_config.get("partition-id")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return int(value.strip())
    except ValueError:
        return None


def order_key(node_id: int, node_config: UserConfig) -> tuple[int, int, int]:
    """Where a node's result goes in a sum: nodes with a partition id first, by partition
    id; then the rest by node id. The same in simulation and deployment."""
    partition = partition_id(node_config)
    return (1, 0, node_id) if partition is None else (0, partition, node_id)


def node_label(node_id: int, node_config: UserConfig) -> str:
    """How log lines name a node: its id and the config it was started with, which is
    what a person knows it by ("node 8123 (partition-id=1)"; "num-partitions" is left
    out beside a partition id, as it is the same for every node)."""
    shown = [
        f"{key}={value}"
        for key, value in node_config.items()
        if not (key == "num-partitions" and "partition-id" in node_config)
    ]
    if not shown:
        return f"node {node_id}"
    text = ", ".join(shown)
    if len(text) > LABEL_WIDTH:
        text = text[: LABEL_WIDTH - 3] + "..."
    return f"node {node_id} ({text})"


def failure_reason(reply: Message | None, timeout: float | None) -> str:
    """Why `reply` (an error reply, or None if none came) is no answer, in one line.

    For a reason that holds a traceback, that line is the exception ("ValueError: ..."),
    not the "Traceback (most recent call last):" header.
    """
    if reply is None:
        return "no reply" + ("" if timeout is None else f" within {timeout:g}s")
    error = reply.error
    lines = [line.strip() for line in error.reason.splitlines() if line.strip()]
    if not lines:
        return f"error reply (code {error.code})"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


class ClientProxy:
    """A node reached through `grid`; `cid` is its partition id if it has one."""

    def __init__(self, node_id: int, node_config: UserConfig | None, grid: Grid) -> None:
        self.node_id = node_id
        self.node_config: UserConfig = dict(node_config or {})
        self.partition_id = partition_id(self.node_config)
        self._grid = grid

    @property
    def cid(self) -> str:
        return str(self.node_id if self.partition_id is None else self.partition_id)

    @property
    def label(self) -> str:
        """The node as failure lines name it: `node_label`."""
        return node_label(self.node_id, self.node_config)

    def labelled(self, reason: str) -> str:
        """`reason` as a failure line of this node: "node 7 (partition-id=1): ...", and
        "node 7 (partition-id=1) went offline" for a reason that names the node already."""
        named = f"node {self.node_id} "
        if reason.startswith(named):
            return f"{self.label} {reason.removeprefix(named)}"
        return f"{self.label}: {reason}"

    @property
    def order_key(self) -> tuple[int, int, int]:
        """Nodes with a partition id first, by partition id; then the rest by node id."""
        return order_key(self.node_id, self.node_config)

    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | str | None
    ) -> GetPropertiesRes:
        reply = self._ask(
            getpropertiesins_to_recorddict(ins), MessageTypeLegacy.GET_PROPERTIES, timeout, group_id
        )
        return recorddict_to_getpropertiesres(reply)

    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | str | None
    ) -> GetParametersRes:
        reply = self._ask(
            getparametersins_to_recorddict(ins), MessageTypeLegacy.GET_PARAMETERS, timeout, group_id
        )
        return recorddict_to_getparametersres(reply)

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | str | None) -> FitRes:
        reply = self._ask(fitins_to_recorddict(ins), MessageType.TRAIN, timeout, group_id)
        return recorddict_to_fitres(reply)

    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | str | None
    ) -> EvaluateRes:
        reply = self._ask(evaluateins_to_recorddict(ins), MessageType.EVALUATE, timeout, group_id)
        return recorddict_to_evaluateres(reply)

    def _ask(
        self,
        content: RecordDict,
        message_type: str,
        timeout: float | None,
        group_id: int | str | None,
    ) -> RecordDict:
        group = "" if group_id is None else str(group_id)
        message = self._grid.create_message(
            content, message_type, self.node_id, group_id=group, ttl=timeout
        )  # the instruction lives as long as anyone waits for its reply
        wanted = message.metadata.message_id
        replies = self._grid.send_and_receive([message], timeout=timeout)
        reply = next((r for r in replies if r.metadata.reply_to_message_id == wanted), None)
        if reply is None or not reply.has_content():
            raise NodeReplyError(self.node_id, self.labelled(failure_reason(reply, timeout)))
        return reply.content

    def __repr__(self) -> str:
        return f"ClientProxy(node_id={self.node_id}, cid={self.cid!r})"
