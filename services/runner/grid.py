"""ServerAppIoGrid: the Grid that ServerApp code calls, over any ServerAppIo transport.

User code runs in a worker thread and calls this synchronous interface; each call hands a
coroutine to the runner's event loop (`run_coroutine_threadsafe`) and waits a bounded time.
Encoding and decoding (hashing the model, wrapping the arrays) stay in the calling thread,
so the event loop only does I/O. The same class serves deployment (gRPC) and simulation
(memory transport): it knows nothing about addresses, TLS or retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

from stamen.codec import (
    Buffer,
    check_object,
    decode_message,
    encode_batch,
    encode_message,
    iter_chunks,
)
from stamen.codec.cache import ObjectCache
from stamen.codec.envelope import Envelope
from stamen.common.errors import (
    IntegrityError,
    RunNotRunningError,
    UnavailableError,
)
from stamen.common.message import Message, MessageType
from stamen.common.node import Node
from stamen.common.push import PushResult
from stamen.common.records import RecordDict
from stamen.common.run import Run, RunStatus
from stamen.transport.api import ServerAppIoApi
from stamen.transport.objects import fetch_object, push_missing
from stamen.transport.types import CHECKPOINT_PREFIX

from .screening import ReplyLimits, screen_reply

__all__ = ["ServerAppIoGrid"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Wire = tuple[Envelope, dict[str, Buffer]]

POLL_TIMEOUT = 10.0
"""Seconds one long-poll for replies may wait before the grid asks again."""
CALL_TIMEOUT = 600.0
"""Seconds the calling thread waits for one bridged call (a backstop: the transport and
the retry wrapper bound each request far below it)."""
CACHE_BYTES = 64 << 20
"""Bytes of pulled objects kept, so an array several replies share is downloaded once."""


class ServerAppIoGrid:
    """The Grid of one run, bridging a worker thread to ServerAppIo on `loop`."""

    def __init__(
        self,
        serverappio: ServerAppIoApi,
        run: Run,
        loop: asyncio.AbstractEventLoop,
        *,
        poll_timeout: float = POLL_TIMEOUT,
        call_timeout: float = CALL_TIMEOUT,
        cache_bytes: int = CACHE_BYTES,
        resume_from: int | None = None,
        checkpoints: bool = True,
        fleet_address: str | None = None,
    ) -> None:
        """`resume_from`: the run whose checkpoint the loop starts from (default: this
        one's, which a runner that drives the run again finds); `checkpoints=False`: the
        round loop finds no checkpoint store and takes no checkpoints; `fleet_address`:
        where SuperNodes connect, named by a loop waiting for nodes (None: simulation)."""
        self._io = serverappio
        self._run = run
        self._loop = loop
        self._poll_timeout = poll_timeout
        self._call_timeout = call_timeout
        self._cache = ObjectCache(cache_bytes)
        self._sent: dict[str, Buffer] = {}  # the objects of the latest push
        self._lock = threading.Lock()
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self._closed = False
        self._limits = ReplyLimits.from_run_config(run.run_config)
        source = run.run_id if resume_from is None else resume_from
        self.checkpoints = _RunCheckpoints(self, source) if checkpoints else None
        self.fleet_address = fleet_address

    @property
    def run(self) -> Run:
        return self._run

    def close(self) -> None:
        """Refuse further calls and abandon those in flight, so the user thread unwinds."""
        with self._lock:
            self._closed = True
            inflight, self._inflight = self._inflight, set()
        for future in inflight:
            future.cancel()

    # --- the Grid protocol ----------------------------------------------------------------

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str = "",
        ttl: float | None = None,
    ) -> Message:
        message = Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)
        message.metadata.run_id = self._run.run_id
        return message

    def get_nodes(self) -> list[Node]:
        return self._call("get_nodes", partial(self._io.get_nodes, self._run.run_id))

    def get_node_ids(self) -> list[int]:
        return [node.node_id for node in self.get_nodes()]

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        envelopes, objects = self._encode(messages)
        if not envelopes:
            return []
        self._sent = objects
        result = self._call("push_messages", partial(self._push, envelopes, objects))
        return list(result.message_ids)

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        ids = list(message_ids)
        if not ids:
            return []
        wires = self._call("pull_messages", partial(self._pull, ids, 0.0))
        return [screen_reply(decode_message(e, objects), self._limits) for e, objects in wires]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        """Push, then long-poll until every instruction has its reply or `timeout` passed.

        Replies come back in the order of their instructions; missing ones are left out.
        """
        ids = self.push_messages(messages)
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: dict[str, Message] = {}
        pending = dict.fromkeys(ids)
        while pending:
            wait = self._poll_timeout
            if deadline is not None:
                wait = max(min(wait, deadline - time.monotonic()), 0.0)
            wires = self._call(
                "pull_messages",
                partial(self._pull, list(pending), wait),
                timeout=wait + self._call_timeout,
            )
            for envelope, objects in wires:
                reply = screen_reply(decode_message(envelope, objects), self._limits)
                answered = reply.metadata.reply_to_message_id
                if answered in pending:
                    replies[answered] = reply
                    del pending[answered]
            if deadline is not None and time.monotonic() >= deadline:
                break
        if pending:
            logger.info(
                "run %d: %d of %d replies did not arrive within %ss",
                self._run.run_id,
                len(pending),
                len(ids),
                timeout,
            )
        return [replies[message_id] for message_id in ids if message_id in replies]

    # --- in the calling thread --------------------------------------------------------------

    def _encode(self, messages: Iterable[Message]) -> tuple[list[Envelope], dict[str, Buffer]]:
        """Envelopes and their objects; a content shared by the batch is encoded once."""
        return encode_batch(self._of_this_run(messages))

    def _of_this_run(self, messages: Iterable[Message]) -> Iterator[Message]:
        for message in messages:
            message.metadata.run_id = self._run.run_id
            yield message

    def _call(
        self,
        what: str,
        call: Callable[[], Coroutine[Any, Any, T]],
        timeout: float | None = None,
    ) -> T:
        """Run `call()` on the loop and wait for it from this thread, at most `timeout`."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError(
                "Grid methods block: call them from the ServerApp's worker thread, "
                "not from the event loop that serves them"
            )
        coroutine = call()
        with self._lock:
            if self._closed:
                coroutine.close()
                raise RunNotRunningError(self._run.run_id, RunStatus.STOPPED)
            try:
                future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
            except RuntimeError:  # the loop is closed: the runner is gone
                coroutine.close()
                raise RunNotRunningError(self._run.run_id, RunStatus.STOPPED) from None
            self._inflight.add(future)
        limit = self._call_timeout if timeout is None else timeout
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise UnavailableError(
                f"{what} for run {self._run.run_id} did not finish within {limit:g}s"
            ) from None
        except concurrent.futures.CancelledError:
            raise RunNotRunningError(self._run.run_id, RunStatus.STOPPED) from None
        finally:
            with self._lock:
                self._inflight.discard(future)

    # --- on the event loop ------------------------------------------------------------------

    async def _push(self, envelopes: Sequence[Envelope], objects: dict[str, Buffer]) -> PushResult:
        run_id = self._run.run_id
        result = await self._io.push_messages(run_id, envelopes)
        await self._push_missing(result, objects, "no pushed message names")
        return result

    async def _pull(self, message_ids: Sequence[str], timeout: float) -> list[Wire]:
        run_id = self._run.run_id
        envelopes = await self._io.pull_messages(run_id, message_ids, timeout)
        if not envelopes and timeout > 0:
            # A finished run's pulls come back empty: say so, or a long-poll loop never ends.
            run = await self._io.get_run(run_id)
            if run.status == RunStatus.FINISHED:
                raise RunNotRunningError(run_id, f"{run.status} ({run.sub_status})")
        wires: list[Wire] = []
        fetched: dict[str, Buffer] = {}  # replies that share an object share one copy
        for envelope in envelopes:
            for oid in envelope.object_ids:
                if oid not in fetched:
                    fetched[oid] = await self._fetch(oid)
            wires.append((envelope, {oid: fetched[oid] for oid in envelope.object_ids}))
        return wires

    async def _push_checkpoint(self, envelope: Envelope, objects: dict[str, Buffer]) -> None:
        run_id = self._run.run_id
        result = await self._io.push_checkpoint(run_id, envelope)
        await self._push_missing(result, objects, "the checkpoint does not carry")

    async def _push_missing(
        self, result: PushResult, objects: dict[str, Buffer], carrier: str
    ) -> None:
        push = partial(self._io.push_object, self._run.run_id)
        await push_missing(push, result.missing_object_ids, objects, carrier=carrier)

    async def _pull_checkpoint(self, run_id: int) -> list[Wire]:
        wires: list[Wire] = []
        for envelope in await self._io.pull_checkpoint(run_id):
            objects = {oid: await self._fetch(oid, run_id) for oid in envelope.object_ids}
            wires.append((envelope, objects))
        return wires

    async def _fetch(self, object_id: str, run_id: int | None = None) -> Buffer:
        cached = self._cache.get(object_id)
        if cached is not None:
            return cached
        sent = self._sent.get(object_id)
        if sent is not None:
            # A reply echoes an array this grid pushed (frozen layers, an untouched
            # buffer): copy it rather than download it. The hash check catches an array
            # changed in place since it was pushed; then it is downloaded after all.
            data = bytearray().join(iter_chunks(sent))
            try:
                check_object(object_id, data)
                return self._cache.put(object_id, memoryview(data).toreadonly())
            except IntegrityError:
                logger.debug("object %s changed since it was pushed: pulling it", object_id)
        pull = partial(self._io.pull_object, self._run.run_id if run_id is None else run_id)
        data = await fetch_object(pull, object_id)
        return self._cache.put(object_id, memoryview(data).toreadonly())


class _RunCheckpoints:
    """The run's checkpoints as the round loop sees them (`stamen.server.checkpoint`):
    kept by the SuperLink as a message to node 0 whose arrays are objects."""

    def __init__(self, grid: ServerAppIoGrid, source_run_id: int) -> None:
        self._grid = grid
        self._source = source_run_id

    def load(self) -> RecordDict | None:
        wires = self._grid._call(
            "pull_checkpoint", partial(self._grid._pull_checkpoint, self._source)
        )
        if not wires:
            return None
        envelope, objects = wires[-1]
        return decode_message(envelope, objects).content

    def save(self, state: RecordDict) -> None:
        grid = self._grid
        message = Message(state, dst_node_id=0, message_type=MessageType.QUERY)
        message.metadata.run_id = grid.run.run_id
        message.metadata.message_id = CHECKPOINT_PREFIX + message.metadata.message_id
        envelope, objects = encode_message(message)
        grid._call("push_checkpoint", partial(grid._push_checkpoint, envelope, objects))
