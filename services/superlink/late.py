"""LateAnswers: instructions the SuperLink answered for their node when they expired.

When an instruction's TTL ends, the sweep answers it MESSAGE_EXPIRED for its node. The
node's own answer may still come a moment later: most often its report that it
cancelled the task, which says more than the SuperLink's error (what the task was doing,
on which node). So the node's late answer is taken, not refused: it replaces the
SuperLink's error reply while that has not gone to the ServerApp side, and is otherwise
logged (the ServerApp has its answer already). Remembered in memory, for the latest
`capacity` expiries: a late answer after a restart or much later is refused as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from stamen.common.lru import Lru

__all__ = ["LateAnswers"]

CAPACITY = 4096
"""Expired instructions remembered: far more than the nodes of one round."""


@dataclass(frozen=True, slots=True)
class Expiry:
    node_id: int
    """The node the instruction was for: only it may answer late."""
    error_reply_id: str
    """The reply the SuperLink wrote for it."""


class LateAnswers:
    """The latest expired instructions, by id."""

    __slots__ = ("_expired",)

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._expired: Lru[str, Expiry] = Lru(capacity)

    def expired(self, instruction_id: str, node_id: int, error_reply_id: str) -> None:
        """The sweep answered the instruction with `error_reply_id` for `node_id`."""
        self._expired.put(instruction_id, Expiry(node_id, error_reply_id))

    def expiry(self, instruction_id: str, node_id: int) -> Expiry | None:
        """The instruction's expiry, when it expired lately and was for `node_id`."""
        found = self._expired.get(instruction_id)
        return found if found is not None and found.node_id == node_id else None
