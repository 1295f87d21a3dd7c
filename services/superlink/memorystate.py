"""MemoryLinkState: LinkState in dictionaries, for simulation and tests.

It hands out and keeps copies (metadata and configs are mutable), so callers see the
same value semantics as with SQLite. Indexes by destination node, run and object keep
every lookup the handlers do per request proportional to what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import TypeVar

from stamen.codec.envelope import Envelope
from stamen.common.errors import InvalidMessageError, NodeNotFoundError, RunNotFoundError
from stamen.common.message import Metadata
from stamen.common.node import Node
from stamen.common.run import Run

from .linkstate import ObjectRef, StoredMessage

__all__ = ["MemoryLinkState"]

K = TypeVar("K", int, str)
T = TypeVar("T", Metadata, Node, Run)


def _copier(cls: type[T], *dicts: str) -> Callable[[T], T]:
    """A fast copy of a dataclass instance, with fresh copies of its `dicts` fields
    (dataclasses.replace costs several times more: this runs many times per message)."""
    names = [f.name for f in fields(cls)]
    values = attrgetter(*names)
    positions = [names.index(name) for name in dicts]

    def copy(record: T) -> T:
        parts = list(values(record))
        for i in positions:
            parts[i] = dict(parts[i])
        return cls(*parts)

    return copy


_copy_metadata = _copier(Metadata)
_copy_run = _copier(Run, "run_config")


def _copy_node(node: Node) -> Node:
    """Node's fields spelled out: a ServerApp lists 100,000 nodes several times a round,
    and the generic copier's own steps cost more than the Node it builds."""
    return Node(
        node.node_id, dict(node.node_config), node.online, node.last_heartbeat, node.registered_at
    )


def _copy_message(message: StoredMessage) -> StoredMessage:
    envelope = message.envelope
    copied = Envelope(_copy_metadata(envelope.metadata), envelope.payload, envelope.object_ids)
    return StoredMessage(copied, message.expires_at, message.delivered)


class MemoryLinkState:
    """LinkState held in memory; gone when the process ends."""

    def __init__(self) -> None:
        self._nodes: dict[int, Node] = {}
        self._runs: dict[int, Run] = {}
        self._messages: dict[str, StoredMessage] = {}
        self._reply_of: dict[str, str] = {}  # instruction id -> reply id
        self._by_dst: dict[int, dict[str, None]] = {}  # node id -> instruction ids
        self._by_run: dict[int, dict[str, None]] = {}  # run id -> message ids
        self._held: dict[str, dict[str, None]] = {}  # message id -> object ids
        self._refs: dict[str, dict[str, None]] = {}  # object id -> message ids

    # --- nodes -------------------------------------------------------------------------
    def add_node(self, node: Node) -> None:
        self._nodes[node.node_id] = _copy_node(node)

    def get_node(self, node_id: int) -> Node:
        try:
            return _copy_node(self._nodes[node_id])
        except KeyError:
            raise NodeNotFoundError(node_id) from None

    def list_nodes(self) -> list[Node]:
        return [_copy_node(node) for node in self._nodes.values()]

    def update_node(self, node: Node) -> None:
        if node.node_id not in self._nodes:
            raise NodeNotFoundError(node.node_id)
        self._nodes[node.node_id] = _copy_node(node)

    def remove_node(self, node_id: int) -> None:
        if self._nodes.pop(node_id, None) is None:
            raise NodeNotFoundError(node_id)

    # --- runs --------------------------------------------------------------------------
    def add_run(self, run: Run) -> None:
        self._runs[run.run_id] = _copy_run(run)

    def get_run(self, run_id: int) -> Run:
        try:
            return _copy_run(self._runs[run_id])
        except KeyError:
            raise RunNotFoundError(run_id) from None

    def list_runs(self) -> list[Run]:
        return [_copy_run(run) for run in self._runs.values()]

    def update_run(self, run: Run) -> None:
        if run.run_id not in self._runs:
            raise RunNotFoundError(run.run_id)
        self._runs[run.run_id] = _copy_run(run)

    # --- messages ----------------------------------------------------------------------
    def add_messages(self, messages: Sequence[StoredMessage]) -> None:
        ids: set[str] = set()
        answered: set[str] = set()
        for message in messages:
            if message.message_id in self._messages or message.message_id in ids:
                raise InvalidMessageError(f"message id {message.message_id!r} is taken")
            if message.is_reply and (
                message.reply_to in self._reply_of or message.reply_to in answered
            ):
                raise InvalidMessageError(f"message {message.reply_to!r} already has a reply")
            ids.add(message.message_id)
            if message.is_reply:
                answered.add(message.reply_to)
        for message in messages:
            self._insert(_copy_message(message))

    def _insert(self, message: StoredMessage) -> None:
        message_id = message.message_id
        metadata = message.envelope.metadata
        self._messages[message_id] = message
        if message.is_reply:
            self._reply_of[message.reply_to] = message_id
        else:
            self._by_dst.setdefault(metadata.dst_node_id, {})[message_id] = None
        self._by_run.setdefault(metadata.run_id, {})[message_id] = None
        held = dict.fromkeys(message.envelope.object_ids)
        self._held[message_id] = held
        for object_id in held:
            self._refs.setdefault(object_id, {})[message_id] = None

    def find_messages(self, message_ids: Iterable[str]) -> dict[str, StoredMessage]:
        found = {}
        for message_id in message_ids:
            message = self._messages.get(message_id)
            if message is not None:
                found[message_id] = _copy_message(message)
        return found

    def find_replies(self, instruction_ids: Iterable[str]) -> dict[str, StoredMessage]:
        # A ServerApp's long-poll asks for every open instruction of a round, most of them
        # not answered yet: pick out the answered ones at C speed, then copy those.
        reply_of = self._reply_of
        return {
            instruction_id: _copy_message(self._messages[reply_of[instruction_id]])
            for instruction_id in filter(reply_of.__contains__, instruction_ids)
        }

    def instructions_for_node(self, node_id: int) -> list[StoredMessage]:
        ids = self._by_dst.get(node_id, {})
        return [_copy_message(self._messages[message_id]) for message_id in ids]

    def message_ids_of_run(self, run_id: int) -> list[str]:
        return list(self._by_run.get(run_id, {}))

    def undelivered_messages(self) -> list[StoredMessage]:
        return [_copy_message(m) for m in self._messages.values() if not m.delivered]

    def expired_messages(self, now: float) -> list[StoredMessage]:
        return [_copy_message(m) for m in self._messages.values() if m.expires_at <= now]

    def mark_delivered(self, message_ids: Iterable[str]) -> None:
        for message_id in message_ids:
            message = self._messages.get(message_id)
            if message is not None:
                self._messages[message_id] = StoredMessage(
                    message.envelope, message.expires_at, delivered=True
                )

    def delete_messages(self, message_ids: Iterable[str]) -> list[str]:
        freed: list[str] = []
        for message_id in message_ids:
            message = self._messages.pop(message_id, None)
            if message is None:
                continue
            metadata = message.envelope.metadata
            if message.is_reply:
                if self._reply_of.get(message.reply_to) == message_id:
                    del self._reply_of[message.reply_to]
            else:
                _discard(self._by_dst, metadata.dst_node_id, message_id)
            _discard(self._by_run, metadata.run_id, message_id)
            for object_id in self._held.pop(message_id):
                if _discard(self._refs, object_id, message_id):
                    freed.append(object_id)
        return freed

    # --- object references -------------------------------------------------------------
    def referrers(
        self, object_id: str, *, run_id: int | None = None, limit: int | None = None
    ) -> list[ObjectRef]:
        refs: list[ObjectRef] = []
        for message_id in self._refs.get(object_id, {}):
            if limit is not None and len(refs) >= limit:
                break
            message = self._messages[message_id]
            metadata = message.envelope.metadata
            if run_id is not None and metadata.run_id != run_id:
                continue
            refs.append(
                ObjectRef(
                    message_id=message_id,
                    run_id=metadata.run_id,
                    src_node_id=metadata.src_node_id,
                    dst_node_id=metadata.dst_node_id,
                    is_reply=message.is_reply,
                    delivered=message.delivered,
                )
            )
        return refs

    def held_objects(self, message_id: str) -> list[str]:
        return list(self._held.get(message_id, {}))

    def drop_ref(self, message_id: str, object_id: str) -> bool:
        held = self._held.get(message_id)
        if held is None or object_id not in held:
            return False
        del held[object_id]
        return _discard(self._refs, object_id, message_id)

    def referenced_object_ids(self) -> set[str]:
        return set(self._refs)

    def close(self) -> None:
        """Nothing to release; present for the LinkState protocol."""


def _discard(index: dict[K, dict[str, None]], key: K, member: str) -> bool:
    """Remove `member` from `index[key]`; True when that emptied (and removed) the entry."""
    members = index.get(key)
    if members is None:
        return False
    members.pop(member, None)
    if members:
        return False
    del index[key]
    return True
