"""ServerAppIoHandler: the ServerAppIo API (what ServerApp runners call), over the router.

A run is created pending and becomes running with its first pushed instruction (or an
explicit `update_run_status(run_id, "running")`). Instructions go only to registered
nodes; one for a node that is offline is answered at once with NODE_UNAVAILABLE. Pulls
long-poll for replies to the given instructions; a finished run's pulls return nothing.
The runner driving a run holds its lease (`renew_run_lease`, see `leases`); a run whose
lease lapses is marked failed by the SuperLink's sweep (`expire_leases`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from contextlib import aclosing

from stamen.codec.envelope import Envelope
from stamen.codec.objects import Buffer
from stamen.common.errors import (
    InvalidMessageError,
    PermissionDeniedError,
    RunNotFoundError,
    RunNotRunningError,
)
from stamen.common.message import Error, ErrorCode
from stamen.common.node import Node
from stamen.common.push import PushResult
from stamen.common.records import UserConfig
from stamen.common.run import Run, RunStatus

from .checkpoints import check_checkpoint, checkpoint_ids, stored
from .core import check_instruction, check_object_id, check_reference, new_id, transition_run
from .leases import RunLeases
from .linkstate import StoredMessage
from .rounds import RoundRecord
from .router import Router

__all__ = ["BATCH", "ServerAppIoHandler"]

logger = logging.getLogger(__name__)

BATCH = 0.01
"""Seconds a pull that found some of its replies waits for the others, so that a round
of many nodes comes back in batches rather than one reply per request."""


class ServerAppIoHandler:
    """Implements `stamen.transport.api.ServerAppIoApi`."""

    def __init__(self, router: Router, leases: RunLeases | None = None) -> None:
        self._router = router
        self._state = router.state
        self.leases = RunLeases() if leases is None else leases
        now = router.clock.now()
        for run in self._state.list_runs():
            if run.status == RunStatus.RUNNING:
                self.leases.adopt(run.run_id, now)

    async def create_run(self, server_app: str, client_app: str, run_config: UserConfig) -> int:
        check_reference("server_app", server_app)
        check_reference("client_app", client_app)
        run_id = new_id(self._run_exists)
        run = Run(
            run_id,
            server_app=server_app,
            client_app=client_app,
            run_config=dict(run_config),
            created_at=self._router.clock.time(),
        )
        self._state.add_run(run)
        logger.info(
            "run %d created (server app %r, client app %r)",
            run_id,
            server_app,
            client_app,
            extra={"run_id": run_id},
        )
        return run_id

    def _run_exists(self, run_id: int) -> bool:
        try:
            self._state.get_run(run_id)
        except RunNotFoundError:
            return False
        return True

    async def get_run(self, run_id: int) -> Run:
        return self._state.get_run(run_id)

    async def get_nodes(self, run_id: int) -> list[Node]:
        self._state.get_run(run_id)
        return [node for node in self._state.list_nodes() if node.online]

    async def update_run_status(
        self, run_id: int, status: str, sub_status: str = "", details: str = ""
    ) -> None:
        run = self._state.get_run(run_id)
        self._change_run(run, status, sub_status, details)

    async def report_round(
        self, run_id: int, server_round: int, seconds: float, metrics: Mapping[str, float]
    ) -> None:
        run = self._state.get_run(run_id)
        if run.status == RunStatus.FINISHED:
            raise RunNotRunningError(run_id, run.status)
        if server_round < 1 or not (math.isfinite(seconds) and seconds >= 0):
            raise InvalidMessageError(
                f"run {run_id}: a round report needs a round >= 1 and seconds >= 0, "
                f"got round {server_round} and {seconds} s"
            )
        numbers = {str(k): float(v) for k, v in metrics.items()}
        now = self._router.clock.time()
        self._router.rounds.add(run_id, RoundRecord(server_round, seconds, numbers, now))

    def _change_run(self, run: Run, status: str, sub_status: str, details: str) -> Run:
        changed = transition_run(run, status, sub_status, details, self._router.clock.time())
        if changed is run:
            return run
        self._state.update_run(changed)
        if changed.status == RunStatus.FINISHED:
            self.leases.release(run.run_id)
            self._router.run_finished(changed)
        else:
            logger.info("run %d started", run.run_id, extra={"run_id": run.run_id})
        return changed

    async def renew_run_lease(self, run_id: int, holder: str) -> float:
        if not holder:
            raise InvalidMessageError("RenewRunLease needs the runner's holder id")
        run = self._state.get_run(run_id)
        if run.status == RunStatus.FINISHED:
            raise RunNotRunningError(run_id, run.status)
        return self.leases.renew(run_id, holder, self._router.clock.now())

    async def push_checkpoint(self, run_id: int, envelope: Envelope) -> PushResult:
        run = self._state.get_run(run_id)
        if run.status == RunStatus.FINISHED:
            raise RunNotRunningError(run_id, run.status)
        check_checkpoint(envelope, run_id)
        message_id = envelope.metadata.message_id
        earlier = checkpoint_ids(self._state.message_ids_of_run(run_id))
        if message_id not in earlier:
            self._router.add([stored(envelope)])
        # The earlier checkpoints go; objects the new one shares with them stay.
        self._router.release([other for other in earlier if other != message_id])
        missing = tuple(
            oid for oid in dict.fromkeys(envelope.object_ids) if oid not in self._router.store
        )
        return PushResult(message_ids=(message_id,), missing_object_ids=missing)

    async def pull_checkpoint(self, run_id: int) -> list[Envelope]:
        self._state.get_run(run_id)
        found = self._state.find_messages(checkpoint_ids(self._state.message_ids_of_run(run_id)))
        return [message.envelope for message in found.values()][-1:]

    def expire_leases(self) -> None:
        """Mark failed each running run whose runner let its lease lapse."""
        for run_id in self.leases.lapsed(self._router.clock.now()):
            try:
                run = self._state.get_run(run_id)
            except RunNotFoundError:
                continue
            if run.status == RunStatus.FINISHED:
                continue
            reason = (
                "the ServerApp runner stopped responding (its lease was not renewed "
                f"for {self.leases.duration:g}s)"
            )
            logger.warning("run %d failed: %s", run_id, reason, extra={"run_id": run_id})
            self._change_run(run, RunStatus.FINISHED, RunStatus.FAILED, reason)

    async def push_messages(self, run_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        router = self._router
        run = self._state.get_run(run_id)
        if run.status == RunStatus.FINISHED:
            raise RunNotRunningError(run_id, run.status)
        taken = self._state.find_messages(e.message_id for e in envelopes)
        new: dict[str, Envelope] = {}
        nodes: set[int] = set()
        for envelope in envelopes:
            check_instruction(envelope, run_id)
            earlier = taken.get(envelope.message_id)
            known = earlier.envelope if earlier is not None else new.get(envelope.message_id)
            if known is not None:
                if known == envelope:
                    continue
                raise InvalidMessageError(
                    f"message id {envelope.message_id!r} is taken by a different message"
                )
            dst = envelope.metadata.dst_node_id
            if dst not in nodes:
                self._state.get_node(dst)
                nodes.add(dst)
            new[envelope.message_id] = envelope
        if new and run.status == RunStatus.PENDING:
            self._change_run(run, RunStatus.RUNNING, "", run.details)
        now = router.clock.time()
        messages = [StoredMessage(e, expires_at=now + e.metadata.ttl) for e in new.values()]
        router.add(messages)
        offline = [m for m in messages if not router.liveness.is_online(_dst(m))]
        if offline:
            router.fail(
                offline,
                lambda m: Error(ErrorCode.NODE_UNAVAILABLE, f"node {_dst(m)} is offline"),
            )
        return PushResult(tuple(e.message_id for e in envelopes), router.missing_objects(envelopes))

    async def pull_messages(
        self, run_id: int, message_ids: Sequence[str], timeout: float
    ) -> list[Envelope]:
        router = self._router
        wanted = list(dict.fromkeys(message_ids))
        loop = asyncio.get_running_loop()
        deadline = router.pull_deadline(timeout)
        while True:
            if self._finished(run_id):
                return []
            ready = self._ready(run_id, wanted)
            if ready or router.closing or loop.time() >= deadline:
                break
            await router.run_waiters.wait(run_id, deadline)
        if 0 < len(ready) < len(wanted):
            ready = await self._gather(run_id, wanted, ready, min(deadline, loop.time() + BATCH))
        router.deliver_replies(ready)
        return [m.envelope for m in ready]

    async def _gather(
        self, run_id: int, wanted: list[str], ready: list[StoredMessage], until: float
    ) -> list[StoredMessage]:
        """Some replies are in: wait until the rest are too, or `until`, so that one pull
        hands over many replies instead of one request each. Looks again only once enough
        replies of the run came in to possibly complete the set."""
        router = self._router
        loop = asyncio.get_running_loop()
        while len(ready) < len(wanted) and not router.closing and loop.time() < until:
            enough = router.replies_ready(run_id) + len(wanted) - len(ready)
            while router.replies_ready(run_id) < enough:
                await router.run_waiters.wait(run_id, until)
                if router.closing or loop.time() >= until or self._finished(run_id):
                    break
            if self._finished(run_id):
                return []
            ready = self._ready(run_id, wanted)
        return ready

    def _finished(self, run_id: int) -> bool:
        return self._state.get_run(run_id).status == RunStatus.FINISHED

    def _ready(self, run_id: int, instruction_ids: list[str]) -> list[StoredMessage]:
        replies = self._state.find_replies(instruction_ids)
        complete = self._router.complete
        return [
            reply
            for instruction_id in filter(replies.__contains__, instruction_ids)
            if not (reply := replies[instruction_id]).delivered
            and reply.run_id == run_id
            and complete(reply.envelope)
        ]

    async def push_object(
        self, run_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        self._state.get_run(run_id)
        check_object_id(object_id)
        if not self._state.referrers(object_id, run_id=run_id, limit=1):
            raise PermissionDeniedError(f"no message of run {run_id} refers to object {object_id}")
        return await self._router.put_object(object_id, total_size, chunks)

    async def pull_object(self, run_id: int, object_id: str) -> AsyncIterator[Buffer]:
        router = self._router
        self._state.get_run(run_id)
        check_object_id(object_id)
        allowed = bool(self._state.referrers(object_id, run_id=run_id, limit=1))
        router.check_object_access(object_id, allowed)
        async with aclosing(router.store.get(object_id)) as chunks:
            async for chunk in chunks:
                yield chunk
        router.object_collected(run_id, object_id)


def _dst(message: StoredMessage) -> int:
    return message.envelope.metadata.dst_node_id
