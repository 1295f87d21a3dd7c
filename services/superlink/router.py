"""Router: the state, the object store and the waiters, and what the three handlers share.

The handlers (`FleetHandler`, `ServerAppIoHandler`, `ControlHandler`) check requests
and call the router; the router applies the rules in `core` to the state and carries out
their effects: storing messages, waking long-polls, writing error replies for nodes that
went away or messages that expired, and deleting objects nobody refers to any more.

Objects and messages: an instruction's objects are released when its reply is delivered
to the ServerApp side. A delivered reply keeps its objects until the ServerApp side has
pulled them: each complete pull of an object releases one delivered reply's reference to
it, and a reply with no references left is deleted. What nobody collects goes when its
TTL ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from dataclasses import replace

from stamen.codec.envelope import Envelope
from stamen.codec.objects import Buffer
from stamen.common.clock import Clock
from stamen.common.errors import (
    NodeNotFoundError,
    ObjectNotFoundError,
    PermissionDeniedError,
    TransientError,
)
from stamen.common.message import Error, ErrorCode
from stamen.common.run import Run

from .arrivals import Arrivals
from .checkpoints import checkpoint_ids
from .core import (
    MAX_PULL_WAIT,
    Liveness,
    Settlement,
    check_object_id,
    error_reply,
    plan_expiry,
    settle,
)
from .deliveries import DEFAULT_DELIVERY_LEASE, Deliveries
from .late import LateAnswers
from .linkstate import LinkState, StoredMessage
from .objectstore import ObjectStore
from .rounds import RoundBook
from .waiters import Waiters

__all__ = ["Router", "RouterEvents"]

logger = logging.getLogger(__name__)

# Whom to wake when a message becomes complete: (True, run id) for a reply, whose
# ServerApp side may be waiting; (False, node id) for an instruction.
_Wake = tuple[bool, int]


def _wake_target(message: StoredMessage) -> _Wake:
    metadata = message.envelope.metadata
    if message.is_reply:
        return True, metadata.run_id
    return False, metadata.dst_node_id


class RouterEvents:
    """What the router tells an observer (metrics); the default hears nothing. Called on
    the event loop, in the middle of the router's work: keep it quick, never raise."""

    def error_replies(self, code: int, count: int) -> None:
        """`count` instructions got an error reply with `code` (an ErrorCode)."""

    def node_offline(self, node_id: int) -> None:
        """A node missed its heartbeat deadline."""


class Router:
    """Shared by the three handlers of one SuperLink; used from its event loop only."""

    def __init__(
        self,
        state: LinkState,
        store: ObjectStore,
        clock: Clock,
        heartbeat_interval: float,
        delivery_lease: float = DEFAULT_DELIVERY_LEASE,
    ) -> None:
        self.state = state
        self.store = store
        self.clock = clock
        self.liveness = Liveness(heartbeat_interval)
        self.deliveries = Deliveries(delivery_lease)
        self.late = LateAnswers()
        self.rounds = RoundBook()
        self.events = RouterEvents()
        self.node_waiters: Waiters[int] = Waiters()
        self.run_waiters: Waiters[int] = Waiters()
        self.closing = False
        self._arrivals: Arrivals[_Wake] = Arrivals()
        self._replies_ready: dict[int, int] = {}
        self._recover()

    def _recover(self) -> None:
        """Pick up what a previous process left: online nodes get a fresh deadline from
        now, messages wait for the objects they lack, unreferenced objects go."""
        now = self.clock.now()
        for node in self.state.list_nodes():
            if node.online:
                self.liveness.seen(node.node_id, now)
        for message in self.state.undelivered_messages():
            self._expect(message)
        orphans = self.store.ids() - self.state.referenced_object_ids()
        for object_id in orphans:
            self.store.delete(object_id)
        if orphans:
            logger.info("removed %d objects no message refers to", len(orphans))

    def close(self) -> None:
        """End every long-poll now (they return nothing) and make new ones return at once."""
        self.closing = True
        self.node_waiters.wake_all()
        self.run_waiters.wake_all()

    def pull_deadline(self, timeout: float) -> float:
        """The event-loop instant a long-poll asking for `timeout` seconds ends."""
        bound = 0.0 if math.isnan(timeout) else min(max(timeout, 0.0), MAX_PULL_WAIT)
        return asyncio.get_running_loop().time() + bound

    def complete(self, envelope: Envelope) -> bool:
        """Whether every object the message names is stored."""
        return self._arrivals.is_complete(envelope.metadata.message_id)

    def missing_objects(self, envelopes: Iterable[Envelope]) -> tuple[str, ...]:
        ids = dict.fromkeys(oid for envelope in envelopes for oid in envelope.object_ids)
        return tuple(object_id for object_id in ids if object_id not in self.store)

    # --- nodes -------------------------------------------------------------------------
    def touch(self, node_id: int) -> None:
        """A sign of life from a node (NodeNotFoundError when it is not registered)."""
        node = self.state.get_node(node_id)
        self.liveness.seen(node_id, self.clock.now())
        if not node.online:
            logger.info("node %d is back online", node_id, extra={"node_id": node_id})
        try:
            self.state.update_node(replace(node, online=True, last_heartbeat=self.clock.time()))
        except TransientError as exc:  # a full or failing disk: the sign of life still counts
            logger.debug("node %d: heartbeat time not stored: %s", node_id, exc)

    def node_gone(self, node_id: int, reason: str) -> None:
        """Answer every open instruction for the node with NODE_UNAVAILABLE."""
        error = Error(ErrorCode.NODE_UNAVAILABLE, reason)
        self.fail(self.state.instructions_for_node(node_id), lambda _: error)

    # --- messages ----------------------------------------------------------------------
    def add(self, messages: Sequence[StoredMessage]) -> None:
        """Store messages; wake whoever may take those whose objects are all there."""
        if not messages:
            return
        self.state.add_messages(messages)
        for message in messages:
            if self._expect(message):
                self._wake(_wake_target(message))

    def _expect(self, message: StoredMessage) -> bool:
        missing = (oid for oid in message.envelope.object_ids if oid not in self.store)
        return self._arrivals.expect(message.message_id, missing, _wake_target(message))

    def _wake(self, target: _Wake) -> None:
        is_reply, key = target
        if is_reply:
            self._replies_ready[key] = self._replies_ready.get(key, 0) + 1
            self.run_waiters.wake(key)
        else:
            self.node_waiters.wake(key)

    def replies_ready(self, run_id: int) -> int:
        """How many replies of the run have become complete so far (a running count)."""
        return self._replies_ready.get(run_id, 0)

    def release(self, message_ids: Sequence[str]) -> None:
        """Delete messages, and the objects only they referred to."""
        if not message_ids:
            return
        self._arrivals.forget(message_ids)
        self.deliveries.forget(message_ids)
        for object_id in self.state.delete_messages(message_ids):
            self.store.delete(object_id)

    def fail(
        self, instructions: Iterable[StoredMessage], error_for: Callable[[StoredMessage], Error]
    ) -> None:
        """Instructions that will get no reply from their node get an error reply."""
        instructions = [m for m in instructions if not m.is_reply]
        if not instructions:
            return
        replies = self.state.find_replies(m.message_id for m in instructions)
        self._settle(settle(instructions, replies, self.complete), error_for)

    def _settle(
        self, settlement: Settlement, error_for: Callable[[StoredMessage], Error]
    ) -> list[StoredMessage]:
        """Carry out `settlement`; the error replies it wrote."""
        self.release(settlement.discard)
        now = self.clock.time()
        errors = [error_for(m) for m in settlement.fail]
        written = [
            error_reply(m.envelope, e, now) for m, e in zip(settlement.fail, errors, strict=True)
        ]
        self.add(written)
        codes: dict[int, int] = {}
        for instruction, error in zip(settlement.fail, errors, strict=True):
            logger.debug("message %s: error reply (%s)", instruction.message_id, error)
            codes[error.code] = codes.get(error.code, 0) + 1
        for code, count in codes.items():
            self.events.error_replies(code, count)
        return written

    def deliver_replies(self, replies: Sequence[StoredMessage]) -> None:
        """Replies went to the ServerApp side: their instructions are done; replies without
        objects are done too."""
        self.state.mark_delivered(m.message_id for m in replies)
        self.release([m.reply_to for m in replies])
        self.release([m.message_id for m in replies if not m.envelope.object_ids])

    def run_finished(self, run: Run) -> None:
        """A finished run takes no more messages: drop what is left of it but its
        checkpoint (a resumed run continues from it)."""
        message_ids = self.state.message_ids_of_run(run.run_id)
        kept = set(checkpoint_ids(message_ids))
        self.release([message_id for message_id in message_ids if message_id not in kept])
        self._replies_ready.pop(run.run_id, None)
        self.run_waiters.wake(run.run_id)
        logger.info(
            "run %d finished (%s)%s",
            run.run_id,
            run.sub_status,
            f": {run.details}" if run.details else "",
            extra={"run_id": run.run_id},
        )

    # --- objects -----------------------------------------------------------------------
    def check_object_access(self, object_id: str, allowed: bool) -> None:
        """Raise unless `allowed`: ObjectNotFoundError for an object nobody knows,
        PermissionDeniedError for one the caller may not touch."""
        check_object_id(object_id)
        if allowed:
            return
        if object_id not in self.store and not self.state.referrers(object_id, limit=1):
            raise ObjectNotFoundError(object_id)
        raise PermissionDeniedError(f"object {object_id} is not yours to access")

    async def put_object(
        self, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        stored = await self.store.put(object_id, total_size, chunks)
        if stored:
            for target in self._arrivals.arrived(object_id):
                self._wake(target)
        if not self.state.referrers(object_id, limit=1):
            # Every message naming it went away while it streamed in.
            self.store.delete(object_id)
        return stored

    def object_collected(self, run_id: int, object_id: str) -> None:
        """The ServerApp side of the run pulled the whole object: release one delivered
        reply's reference to it."""
        for ref in self.state.referrers(object_id, run_id=run_id):
            if ref.is_reply and ref.delivered:
                if self.state.drop_ref(ref.message_id, object_id):
                    self.store.delete(object_id)
                if not self.state.held_objects(ref.message_id):
                    self.release([ref.message_id])
                return

    # --- sweep -------------------------------------------------------------------------
    def sweep(self) -> None:
        """Nodes past their deadline go offline; expired messages are answered or dropped."""
        for node_id in self.liveness.overdue(self.clock.now()):
            try:
                node = self.state.get_node(node_id)
            except NodeNotFoundError:
                continue
            self.state.update_node(replace(node, online=False))
            self.events.node_offline(node_id)
            reason = f"node {node_id} went offline"
            logger.warning(
                "%s (no heartbeat for %.1f s)",
                reason,
                self.liveness.span,
                extra={"node_id": node_id},
            )
            self.node_gone(node_id, reason)
        expired = self.state.expired_messages(self.clock.time())
        if expired:
            replies = self.state.find_replies(m.message_id for m in expired if not m.is_reply)
            plan = plan_expiry(expired, replies, self.complete)
            for answer in self._settle(plan, _expired_error):
                meta = answer.envelope.metadata
                self.late.expired(meta.reply_to_message_id, meta.src_node_id, meta.message_id)


def _expired_error(instruction: StoredMessage) -> Error:
    ttl = instruction.envelope.metadata.ttl
    return Error(
        ErrorCode.MESSAGE_EXPIRED,
        f"message {instruction.message_id} expired: no reply within its TTL of {ttl:g} s",
    )
