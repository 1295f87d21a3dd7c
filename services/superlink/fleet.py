"""FleetHandler: the Fleet API (what SuperNodes call), over the SuperLink's router.

Every request from a node counts as a sign of life. A node sees only instructions
addressed to it, for running runs, once their objects are stored; it may answer only
those, once each, and push only the objects its unanswered-for replies name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import aclosing

from stamen.codec.envelope import Envelope
from stamen.codec.objects import Buffer
from stamen.common.errors import (
    InvalidMessageError,
    MessageNotFoundError,
    NodeNotFoundError,
    PermissionDeniedError,
    RunNotFoundError,
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
            found = self._deliverable(node_id)
            while not found and not router.closing and loop.time() < deadline:
                await router.node_waiters.wait(node_id, deadline)
                self._state.get_node(node_id)  # NodeNotFoundError once it unregistered
                found = self._deliverable(node_id)
        finally:
            router.liveness.pull_ended(node_id, router.clock.now())
        if found:
            self._state.mark_delivered(m.message_id for m in found)
        return [m.envelope for m in found]

    def _deliverable(self, node_id: int) -> list[StoredMessage]:
        pending = [m for m in self._state.instructions_for_node(node_id) if not m.delivered]
        if not pending:
            return []
        answered = self._state.find_replies(m.message_id for m in pending)
        statuses: dict[int, str] = {}

        def running(run_id: int) -> bool:
            if run_id not in statuses:
                try:
                    statuses[run_id] = self._state.get_run(run_id).status
                except RunNotFoundError:
                    statuses[run_id] = ""
            return statuses[run_id] == RunStatus.RUNNING

        return deliverable(
            pending,
            answered=answered.keys(),
            running=running,
            complete=self._router.complete,
            now=self._router.clock.time(),
        )

    async def push_messages(self, node_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        router = self._router
        router.touch(node_id)
        instruction_ids = [e.metadata.reply_to_message_id for e in envelopes]
        instructions = self._state.find_messages(instruction_ids)
        replies = self._state.find_replies(instruction_ids)
        taken = self._state.find_messages(e.message_id for e in envelopes)
        new: dict[str, tuple[Envelope, StoredMessage]] = {}  # by instruction id
        new_ids: set[str] = set()
        for envelope in envelopes:
            instruction_id = envelope.metadata.reply_to_message_id
            if not instruction_id:
                raise InvalidMessageError(f"message {envelope.message_id} is not a reply")
            instruction = instructions.get(instruction_id)
            if instruction is None or instruction.is_reply:
                raise MessageNotFoundError(instruction_id)
            check_reply(envelope, node_id, instruction.envelope)
            prior = replies.get(instruction_id)
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
        router.add(
            [
                StoredMessage(envelope, expires_at=now + instruction.envelope.metadata.ttl)
                for envelope, instruction in new.values()
            ]
        )
        return PushResult(tuple(e.message_id for e in envelopes), router.missing_objects(envelopes))

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
