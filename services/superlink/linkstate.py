"""LinkState: what the SuperLink remembers, behind one protocol with two implementations.

`MemoryLinkState` serves simulation and tests; `SqliteLinkState` serves a SuperLink that
must survive a restart. Both are synchronous and used from the event loop thread only:
each call is short, and each call that changes something is durable when it returns.
The rules (who may do what, when) live in `stamen.superlink.core`, not here: a state
stores and finds, it does not decide.

Messages are instructions (ServerApp side -> node) and replies (node -> ServerApp side,
keyed by the instruction they answer). Each message holds references to the objects its
envelope names; `delete_messages` and `drop_ref` report the objects nobody refers to any
more, which the caller then removes from the object store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from stamen.codec.envelope import Envelope
from stamen.common.node import Node
from stamen.common.run import Run

__all__ = ["LinkState", "ObjectRef", "StoredMessage"]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """An envelope as the SuperLink keeps it: when it expires (wall clock) and whether
    it was handed to its destination."""

    envelope: Envelope
    expires_at: float
    delivered: bool = False

    @property
    def message_id(self) -> str:
        return self.envelope.metadata.message_id

    @property
    def run_id(self) -> int:
        return self.envelope.metadata.run_id

    @property
    def reply_to(self) -> str:
        """The instruction this message answers; "" for an instruction."""
        return self.envelope.metadata.reply_to_message_id

    @property
    def is_reply(self) -> bool:
        return bool(self.envelope.metadata.reply_to_message_id)


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One message that refers to an object, with what authorization needs to know."""

    message_id: str
    run_id: int
    src_node_id: int
    dst_node_id: int
    is_reply: bool
    delivered: bool


class LinkState(Protocol):
    # --- nodes -------------------------------------------------------------------------
    def add_node(self, node: Node) -> None: ...

    def get_node(self, node_id: int) -> Node:
        """The node; NodeNotFoundError when it is not registered."""
        ...

    def list_nodes(self) -> list[Node]: ...

    def update_node(self, node: Node) -> None:
        """Replace a node's record; NodeNotFoundError when it is not registered."""
        ...

    def remove_node(self, node_id: int) -> None:
        """Forget a node; NodeNotFoundError when it is not registered."""
        ...

    # --- runs --------------------------------------------------------------------------
    def add_run(self, run: Run) -> None: ...

    def get_run(self, run_id: int) -> Run:
        """The run; RunNotFoundError when there is none."""
        ...

    def list_runs(self) -> list[Run]:
        """All runs, oldest first."""
        ...

    def update_run(self, run: Run) -> None:
        """Replace a run's record; RunNotFoundError when there is none."""
        ...

    # --- messages ----------------------------------------------------------------------
    def add_messages(self, messages: Sequence[StoredMessage]) -> None:
        """Store new messages (all or none) and their object references."""
        ...

    def find_messages(self, message_ids: Iterable[str]) -> dict[str, StoredMessage]:
        """The stored messages among `message_ids`, by id; unknown ids are left out."""
        ...

    def find_replies(self, instruction_ids: Iterable[str]) -> dict[str, StoredMessage]:
        """The replies to the given instructions, keyed by the instruction's id."""
        ...

    def instructions_for_node(self, node_id: int) -> list[StoredMessage]:
        """Every stored instruction addressed to the node, delivered or not."""
        ...

    def message_ids_of_run(self, run_id: int) -> list[str]: ...

    def undelivered_messages(self) -> list[StoredMessage]:
        """Every message not yet handed to its destination (read once, at start-up)."""
        ...

    def expired_messages(self, now: float) -> list[StoredMessage]:
        """Messages whose `expires_at` is at or before `now` (wall clock)."""
        ...

    def mark_delivered(self, message_ids: Iterable[str]) -> None: ...

    def delete_messages(self, message_ids: Iterable[str]) -> list[str]:
        """Delete messages (unknown ids are skipped) and their object references; returns
        the object ids that no message refers to any more."""
        ...

    # --- object references -------------------------------------------------------------
    def referrers(
        self, object_id: str, *, run_id: int | None = None, limit: int | None = None
    ) -> list[ObjectRef]:
        """The messages (of run `run_id`, when given) that refer to the object, at most
        `limit` of them, in no particular order."""
        ...

    def held_objects(self, message_id: str) -> list[str]:
        """The object ids the message still refers to."""
        ...

    def drop_ref(self, message_id: str, object_id: str) -> bool:
        """Remove one message's reference to an object; True when that was the object's
        last reference (False also when there was no such reference)."""
        ...

    def referenced_object_ids(self) -> set[str]:
        """Every object id some message refers to."""
        ...

    def close(self) -> None: ...
