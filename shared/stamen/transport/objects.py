"""Moving array objects to and from the SuperLink: the one client of its object store.

Both sides that talk to the SuperLink move objects the same way: the ServerApp's grid
(over ServerAppIo, keyed by run) and a SuperNode agent (over Fleet, keyed by node). After
PushMessages, `push_missing` sends the objects the SuperLink said it lacks, in ~1 MiB
chunks; `fetch_object` reads one object's chunk stream into a buffer verified against its
id. Both log progress for large objects. With `idle` set, each chunk must move within
that many seconds (a stalled link raises `UnavailableError`, which the caller retries);
without it, the transport's own deadlines (and retries) apply. The callers keep their own
caches and retry policies; only the moving lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import TypeVar

from stamen.codec.objects import collect_object, iter_chunks
from stamen.common.buffers import Buffer
from stamen.common.errors import InvalidMessageError, UnavailableError
from stamen.common.transfer import TransferProgress, tracked

__all__ = ["ObjectChunks", "PullObject", "PushObject", "extending", "fetch_object", "push_missing"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

PushObject = Callable[[str, int, AsyncIterable[Buffer]], Awaitable[bool]]
"""`push_object(object_id, total_size, chunks)` bound to a run or a node."""
PullObject = Callable[[str], AsyncIterator[Buffer]]
"""`pull_object(object_id)` bound to a run or a node: the object's chunk stream."""


class ObjectChunks:
    """An object's chunks as an async iterable that can be iterated again (so that a
    retrying transport can send it again); a large one logs its progress."""

    __slots__ = ("_data", "_object_id")

    def __init__(self, object_id: str, data: Buffer) -> None:
        self._object_id = object_id
        self._data = data

    def __aiter__(self) -> AsyncIterator[memoryview]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[memoryview]:
        what = f"object {self._object_id[:12]} to the SuperLink"
        size = memoryview(self._data).nbytes
        progress = TransferProgress(("uploading", "uploaded"), what, size, logger)
        for chunk in iter_chunks(self._data):
            yield chunk
            progress.advance(chunk.nbytes)
        progress.done()


async def push_missing(
    push_object: PushObject,
    missing_ids: Iterable[str],
    objects: Mapping[str, Buffer],
    *,
    carrier: str,
    idle: float | None = None,
) -> None:
    """Push each object the SuperLink asked for (`missing_ids`) from `objects`.

    `carrier` names what should have carried a missing one, for the InvalidMessageError
    raised when `objects` lacks it (e.g. "no pushed message names", "reply X does not
    carry").
    """
    for object_id in missing_ids:
        data = objects.get(object_id)
        if data is None:
            raise InvalidMessageError(
                f"the SuperLink asked for object {object_id}, which {carrier}"
            )
        size = memoryview(data).nbytes
        chunks = ObjectChunks(object_id, data)
        if idle is None:
            await push_object(object_id, size, chunks)
            continue
        try:
            async with asyncio.timeout(idle) as scope:
                stream = extending(aiter(chunks), scope, idle)
                async with contextlib.aclosing(stream):
                    await push_object(object_id, size, stream)
        except TimeoutError:
            raise UnavailableError(
                f"the SuperLink took more than {idle:g}s over a part of object {object_id}"
            ) from None


async def fetch_object(
    pull_object: PullObject, object_id: str, *, idle: float | None = None
) -> bytearray:
    """The object's bytes, verified against its id (IntegrityError otherwise)."""
    stream = pull_object(object_id)
    what = f"object {object_id[:12]} from the SuperLink"
    progress = TransferProgress(("downloading", "downloaded"), what, None, logger)
    try:
        if idle is None:
            async with contextlib.aclosing(tracked(stream, progress)) as counted:
                return await collect_object(object_id, counted)
        try:
            async with asyncio.timeout(idle) as scope:
                extended = extending(stream, scope, idle)
                async with contextlib.aclosing(tracked(extended, progress)) as counted:
                    return await collect_object(object_id, counted)
        except TimeoutError:
            raise UnavailableError(
                f"the SuperLink sent no part of object {object_id} for {idle:g}s"
            ) from None
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def extending(
    chunks: AsyncIterator[T], scope: asyncio.Timeout, idle: float
) -> AsyncGenerator[T, None]:
    """The chunks, pushing `scope`'s deadline `idle` seconds past each one."""
    loop = asyncio.get_running_loop()
    try:
        async for chunk in chunks:
            scope.reschedule(loop.time() + idle)
            yield chunk
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
