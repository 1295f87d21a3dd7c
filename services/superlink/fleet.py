"""FleetHandler: the Fleet API (what SuperNodes call), over the SuperLink's router.

Every request from a node counts as a sign of life. A node sees only instructions
addressed to it, for running runs, once their objects are stored; it may answer only
those, once each, and push only the objects its unanswered-for replies name. Handing an
instruction out is a lease until the node answers it (`deliveries`): one whose pull
response was lost is handed out again. A node's answer to an instruction that expired
meanwhile is taken (`late`): it replaces the SuperLink's expiry error while that is
still waiting for the ServerApp side, and is logged otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import aclosing

from stamen.codec.envelope import Envelope
from stamen.codec.message import decode_message
from stamen.codec.objects import Buffer
from stamen.common.errors import (
    InvalidMessageError,
    MessageNotFoundError,
    NodeNotFoundError,
    PermissionDeniedError,
    RunNotFoundError,
    StamenError,
)
from stamen.common.node import Node
from stamen.common.push import PushResult
from stamen.common.records import UserConfig
from stamen.common.run import Run, RunStatus
from stamen.transport.types import NodeRegistration

from .core import check_object_id, check_reply, deliverable, new_id
from .linkstate import StoredMessage
from .router import Router
from .runfiles import RunFiles

__all__ = ["FleetHandler"]

logger = logging.getLogger(__name__)


class FleetHandler:
    """Implements `stamen.transport.api.FleetApi`."""

    def __init__(self, router: Router, files: RunFiles | None = None) -> None:
        self._router = router
        self._state = router.state
        self._files = files

    async def register_node(self, node_config: UserConfig) -> NodeRegistration:
        clock = self._router.clock
        node_id = new_id(self._node_exists)
        now = clock.time()
        node = Node(node_id, dict(node_config), online=True, last_heartbeat=now, registered_at=now)
        self._state.add_node(node)
        self._router.liveness.seen(node_id, clock.now())
        logger.info("node %d registered", node_id, extra={"node_id": node_id})
        return NodeRegistration(node_id, self._router.liveness.interval)

    def _node_exists(self, node_id: int) -> bool:
        try:
            self._state.get_node(node_id)
        except NodeNotFoundError:
            return False
        return True

    async def unregister_node(self, node_id: int) -> None:
        self._state.get_node(node_id)
        self._router.liveness.forget(node_id)
        self._router.node_gone(node_id, f"node {node_id} unregistered")
        self._state.remove_node(node_id)
        self._router.node_waiters.wake(node_id)
        logger.info("node %d unregistered", node_id, extra={"node_id": node_id})

    async def heartbeat(self, node_id: int) -> float:
        self._router.touch(node_id)
        return self._router.liveness.interval

    async def pull_messages(self, node_id: int, timeout: float) -> list[Envelope]:
        router = self._router
        router.touch(node_id)
        loop = asyncio.get_running_loop()
        deadline = router.pull_deadline(timeout)
        router.liveness.pull_started(node_id, router.clock.now())
        try:
            found, lapse = self._deliverable(node_id)
            while not found and not router.closing and loop.time() < deadline:
                # Woken by new work, or when an instruction handed out earlier is due again.
                until = deadline if lapse is None else min(deadline, loop.time() + lapse)
                await router.node_waiters.wait(node_id, until)
                self._state.get_node(node_id)  # NodeNotFoundError once it unregistered
                found, lapse = self._deliverable(node_id)
        finally:
            router.liveness.pull_ended(node_id, router.clock.now())
        if found:
            ids = [m.message_id for m in found]
            router.deliveries.handed(ids, router.clock.now())
            self._state.mark_delivered(ids)
        return [m.envelope for m in found]

    def _deliverable(self, node_id: int) -> tuple[list[StoredMessage], float | None]:
        """What the node gets now, and in how many seconds an instruction it was handed
        but has not answered is due again (None: none is)."""
        pending = self._state.instructions_for_node(node_id)
        if not pending:
            return [], None
        answered = self._state.find_replies(m.message_id for m in pending)
        statuses: dict[int, str] = {}

        def running(run_id: int) -> bool:
            if run_id not in statuses:
                try:
                    statuses[run_id] = self._state.get_run(run_id).status
                except RunNotFoundError:
                    statuses[run_id] = ""
            return statuses[run_id] == RunStatus.RUNNING

        deliveries, now = self._router.deliveries, self._router.clock.now()
        found = deliverable(
            pending,
            answered=answered.keys(),
            leased=lambda message_id: deliveries.leased(message_id, now),
            running=running,
            complete=self._router.complete,
            now=self._router.clock.time(),
        )
        unanswered = (m.message_id for m in pending if m.message_id not in answered)
        lapse = deliveries.next_lapse(unanswered, now)
        return found, None if lapse is None else lapse - now

    async def push_messages(self, node_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        router = self._router
        router.touch(node_id)
        instruction_ids = [e.metadata.reply_to_message_id for e in envelopes]
        instructions = self._state.find_messages(instruction_ids)
        replies = self._state.find_replies(instruction_ids)
        taken = self._state.find_messages(e.message_id for e in envelopes)
        new: dict[str, tuple[Envelope, StoredMessage]] = {}  # by instruction id
        new_ids: set[str] = set()
        late: list[Envelope] = []  # answers to instructions that expired and went
        superseded: list[str] = []  # the SuperLink's expiry replies that late answers replace
        for envelope in envelopes:
            instruction_id = envelope.metadata.reply_to_message_id
            if not instruction_id:
                raise InvalidMessageError(f"message {envelope.message_id} is not a reply")
            instruction = instructions.get(instruction_id)
            expiry = router.late.expiry(instruction_id, node_id)
            if instruction is None or instruction.is_reply:
                if expiry is None:
                    raise MessageNotFoundError(instruction_id)
                late.append(envelope)
                continue
            check_reply(envelope, node_id, instruction.envelope)
            prior = replies.get(instruction_id)
            if (
                prior is not None
                and expiry is not None
                and prior.message_id == expiry.error_reply_id
            ):
                if prior.delivered:
                    late.append(envelope)
                    continue
                superseded.append(prior.message_id)  # the node says more than "expired"
                prior = None
            earlier = prior.envelope if prior is not None else new.get(instruction_id, (None,))[0]
            if earlier is not None:
                if earlier == envelope:
                    continue
                raise InvalidMessageError(f"message {instruction_id} already has a reply")
            if envelope.message_id in taken or envelope.message_id in new_ids:
                raise InvalidMessageError(f"message id {envelope.message_id!r} is taken")
            new[instruction_id] = (envelope, instruction)
            new_ids.add(envelope.message_id)
        now = router.clock.time()
        router.release(superseded)
        router.add(
            [
                StoredMessage(envelope, expires_at=now + instruction.envelope.metadata.ttl)
                for envelope, instruction in new.values()
            ]
        )
        for envelope in late:
            _log_late(node_id, envelope)
        late_ids = {e.message_id for e in late}
        kept = [e for e in envelopes if e.message_id not in late_ids]
        return PushResult(tuple(e.message_id for e in envelopes), router.missing_objects(kept))

    async def push_object(
        self, node_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        router = self._router
        router.touch(node_id)
        check_object_id(object_id)
        if object_id in router.store:
            # Deduplicated: another reply brought the same bytes first (frozen layers).
            # This node's reply may already be complete and delivered because of it.
            return False
        refs = self._state.referrers(object_id)
        allowed = any(r.is_reply and not r.delivered and r.src_node_id == node_id for r in refs)
        if not allowed:
            raise PermissionDeniedError(
                f"node {node_id} has no reply waiting for object {object_id}"
            )
        return await router.put_object(object_id, total_size, chunks)

    async def pull_object(self, node_id: int, object_id: str) -> AsyncIterator[Buffer]:
        router = self._router
        router.touch(node_id)
        instructions = self._state.instructions_for_node(node_id)
        allowed = any(object_id in m.envelope.object_ids for m in instructions)
        if not allowed and self._files is not None and self._is_bundle_of_open_run(object_id):
            # An app-less SuperNode fetches the app of a run it was sent work for.
            async with aclosing(self._files.bundle_chunks(object_id)) as bundle:
                async for piece in bundle:
                    yield piece
            return
        router.check_object_access(object_id, allowed)
        async with aclosing(router.store.get(object_id)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def get_run(self, node_id: int, run_id: int) -> Run:
        self._state.get_node(node_id)
        return self._state.get_run(run_id)

    def _is_bundle_of_open_run(self, object_id: str) -> bool:
        return bool(object_id) and any(
            run.bundle == object_id and run.status != RunStatus.FINISHED
            for run in self._state.list_runs()
        )


def _log_late(node_id: int, envelope: Envelope) -> None:
    """A node answered an instruction after the ServerApp side had its expiry error."""
    meta = envelope.metadata
    what = "its reply"
    if not envelope.object_ids:
        with contextlib.suppress(StamenError):
            message = decode_message(envelope, {})
            if message.has_error():
                what = f"its report: {message.error.reason}"
    logger.info(
        "node %d answered message %s after it expired; %s",
        node_id,
        meta.reply_to_message_id,
        what,
        extra={"run_id": meta.run_id, "node_id": node_id},
    )
