"""Shared-memory transfer of array objects between the pool and its workers.

An object (the bytes of one array, named by its content hash) of `INLINE_LIMIT` bytes or
more crosses a process boundary through POSIX shared memory instead of a pickle. Tasks:
the pool copies a broadcast model once into a segment per object, and every task of the
round maps it (`SegmentCache`, `Attachments`). Replies: each worker writes its large reply
objects into one segment of its own that it reuses (`ReplyArena`), and the pool copies
them out (`ReplyReader`).

Every segment is named `<pool prefix><suffix>`, so that whatever a dead worker left
behind can be found and unlinked (`sweep`). Resource tracking: spawned, forkserver and
forked children share the parent's resource tracker, whose records are a set of names,
so a process attaching a segment adds nothing and the one unlink (which unregisters)
balances the one create. Unregistering after attaching, the workaround for unrelated
processes, would here make the owner's unlink unregister a name the tracker no longer has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from stamen.common.buffers import Buffer, byte_view

__all__ = [
    "INLINE_LIMIT",
    "Attachments",
    "CachedSegment",
    "ReplyArena",
    "ReplyReader",
    "SegmentCache",
    "SharedRef",
    "copy_to_segment",
    "create_segment",
    "sweep",
]

logger = logging.getLogger(__name__)

INLINE_LIMIT = 64 * 1024
"""Objects smaller than this are pickled with the task: a segment costs more to set up."""

_ARENA_STEP = 1 << 20
"""Reply arenas grow in steps of this many bytes."""

_SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True, slots=True)
class SharedRef:
    """An object held in a segment: where it starts and how many bytes it has."""

    name: str
    size: int
    offset: int = 0


def create_segment(name: str, size: int) -> SharedMemory:
    """A new segment `name` of `size` bytes, its pages reserved.

    Reserving them first means that a full /dev/shm (Docker gives 64 MiB) raises OSError
    here rather than killing the process with SIGBUS when the pages are written.
    """
    segment = SharedMemory(name, create=True, size=max(size, 1))
    try:
        fd = getattr(segment, "_fd", -1)  # the POSIX descriptor; absent on Windows
        if fd >= 0 and hasattr(os, "posix_fallocate") and size:
            os.posix_fallocate(fd, 0, size)
    except BaseException:
        segment.close()
        segment.unlink()
        raise
    return segment


def copy_to_segment(name: str, data: Buffer) -> SharedMemory:
    """A new segment `name` holding a copy of `data` (the pool copies in a thread)."""
    view = byte_view(data)
    segment = create_segment(name, view.nbytes)
    _copy(_buffer(segment)[: view.nbytes], view)
    return segment


def _copy(target: memoryview, source: memoryview) -> None:
    """`target[:] = source` through numpy, which lets go of the GIL while it copies, so
    that the pool's threads copying models do not stall the event loop."""
    np.copyto(np.frombuffer(target, np.uint8), np.frombuffer(source, np.uint8))


def _buffer(segment: SharedMemory) -> memoryview:
    buf = segment.buf
    assert buf is not None, "the segment is closed"
    return buf


class ReplyArena:
    """The segment a worker writes its large reply objects into, reused for every reply.

    A segment used once costs more than sending the bytes down the pipe: its pages are
    zeroed and faulted in by both processes. One segment per worker, grown when a reply
    needs more, has its pages mapped once, so a reply costs two copies. Reuse is safe:
    the pool copies a reply out before it hands the worker its next job. The worker owns
    the segment and unlinks it; if the worker dies, `sweep` does.
    """

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._count = 0
        self._segment: SharedMemory | None = None

    def pack(self, objects: Mapping[str, Buffer]) -> dict[str, bytes | SharedRef]:
        """The objects as they cross the pipe: the large ones by reference into the arena,
        the small ones (and all of them when shared memory is full) inline."""
        views = {oid: byte_view(data) for oid, data in objects.items()}
        large = {oid: v for oid, v in views.items() if v.nbytes >= INLINE_LIMIT}
        segment = self._reserve(sum(v.nbytes for v in large.values())) if large else None
        packed: dict[str, bytes | SharedRef] = {}
        offset = 0
        for oid, view in views.items():
            if segment is None or oid not in large:
                packed[oid] = bytes(view)
                continue
            _buffer(segment)[offset : offset + view.nbytes] = view
            packed[oid] = SharedRef(segment.name, view.nbytes, offset)
            offset += view.nbytes
        return packed

    def close(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            segment.close()
            segment.unlink()

    def _reserve(self, size: int) -> SharedMemory | None:
        if self._segment is not None and self._segment.size >= size:
            return self._segment
        self.close()
        self._count += 1
        capacity = -(-size // _ARENA_STEP) * _ARENA_STEP
        try:
            self._segment = create_segment(f"{self._prefix}{self._count}", capacity)
        except OSError as exc:
            logger.warning("no shared memory for a reply of %d bytes (%s): sent inline", size, exc)
        return self._segment


class ReplyReader:
    """The pool's side of a worker's `ReplyArena`: keeps it mapped, copies objects out."""

    def __init__(self) -> None:
        self._segment: SharedMemory | None = None

    def take(self, ref: SharedRef) -> memoryview:
        """A copy of the object, in memory of its own."""
        if self._segment is None or self._segment.name != ref.name:
            self.close()  # the worker grew its arena (and unlinked the old one)
            self._segment = SharedMemory(ref.name)
        copy = np.empty(ref.size, np.uint8)
        _copy(copy.data, _buffer(self._segment)[ref.offset : ref.offset + ref.size])
        return copy.data

    def close(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            segment.close()


def sweep(prefix: str) -> list[str]:
    """Unlink every segment whose name starts with `prefix`; the names it unlinked.

    Only where segments are files under /dev/shm (Linux); elsewhere the resource tracker
    removes what is left when the process exits.
    """
    if not _SHM_DIR.is_dir():
        return []
    removed = []
    for path in _SHM_DIR.glob(f"{prefix}*"):
        try:
            SharedMemory(path.name).unlink()
        except FileNotFoundError:
            continue
        removed.append(path.name)
    return removed


@dataclass(eq=False, slots=True)
class CachedSegment:
    """A `SegmentCache` entry: one object's segment and the tasks that hold it."""

    object_id: str
    name: str
    size: int
    created: asyncio.Future[SharedMemory]
    refs: int = 0
    segment: SharedMemory | None = field(default=None)


class SegmentCache:
    """Object id -> the segment that holds the object, for the pool's side.

    A segment is created once (its copy runs in a thread) and shared by every task that
    carries the object. It stays while tasks that carry it are in flight, then waits in a
    least-recently-used list of at most `idle_bytes`, because a model often comes back (a
    round's evaluation sends the model that the next round trains). Evicted segments are
    unlinked and their names passed to `on_unlink`, so that workers drop their mappings.
    Methods run on the event loop.
    """

    def __init__(self, prefix: str, *, idle_bytes: int, on_unlink: Callable[[str], None]) -> None:
        self._prefix = prefix
        self._idle_bytes = idle_bytes
        self._on_unlink = on_unlink
        self._entries: dict[str, CachedSegment] = {}
        self._idle: OrderedDict[str, CachedSegment] = OrderedDict()
        self.segments_created = 0
        self._closed = False

    async def acquire(self, object_id: str, data: Buffer) -> tuple[CachedSegment, SharedRef]:
        """The segment holding `data`, created if needed; `release` the entry when done.

        Raises OSError when no segment can be made (shared memory full).
        """
        entry = self._entries.get(object_id)
        if entry is None:
            self.segments_created += 1
            name = f"{self._prefix}b{self.segments_created}"
            loop = asyncio.get_running_loop()
            created = loop.run_in_executor(None, copy_to_segment, name, data)
            entry = CachedSegment(object_id, name, byte_view(data).nbytes, created)
            self._entries[object_id] = entry
            created.add_done_callback(lambda _: self._on_created(entry))
        entry.refs += 1
        self._idle.pop(object_id, None)
        try:
            await asyncio.shield(entry.created)
        except BaseException:
            self.release(entry)
            raise
        return entry, SharedRef(entry.name, entry.size)

    def release(self, entry: CachedSegment) -> None:
        """One task that carried the entry's object is done with it."""
        entry.refs -= 1
        if entry.refs == 0 and entry.segment is not None:
            self._park(entry)

    async def aclose(self) -> None:
        """Unlink every segment, after the copies still running finish."""
        self._closed = True
        pending = [e.created for e in self._entries.values() if not e.created.done()]
        if pending:
            await asyncio.wait(pending)
        self.unlink_all()

    def unlink_all(self) -> None:
        """Unlink every segment now; one still being copied is unlinked when it is done."""
        self._closed = True
        for entry in list(self._entries.values()):
            self._unlink(entry)
        self._idle.clear()

    def _on_created(self, entry: CachedSegment) -> None:
        if entry.created.cancelled() or entry.created.exception() is not None:
            if self._entries.get(entry.object_id) is entry:
                del self._entries[entry.object_id]
            return
        entry.segment = entry.created.result()
        if self._closed:
            self._unlink(entry)
        elif entry.refs == 0:
            self._park(entry)

    def _park(self, entry: CachedSegment) -> None:
        self._idle[entry.object_id] = entry
        idle = sum(e.size for e in self._idle.values())
        while idle > self._idle_bytes and self._idle:
            _, oldest = self._idle.popitem(last=False)
            idle -= oldest.size
            self._unlink(oldest)

    def _unlink(self, entry: CachedSegment) -> None:
        segment, entry.segment = entry.segment, None
        if segment is None:
            return  # still being copied: `_on_created` unlinks it
        if self._entries.get(entry.object_id) is entry:
            del self._entries[entry.object_id]
        segment.close()
        with contextlib.suppress(FileNotFoundError):
            segment.unlink()
        self._on_unlink(entry.name)


class Attachments:
    """The segments a worker has mapped, by name: each is mapped once and read through
    read-only views (user code that wants to change an array copies it)."""

    def __init__(self) -> None:
        self._segments: dict[str, SharedMemory] = {}
        self._lingering: list[SharedMemory] = []

    def view(self, ref: SharedRef) -> memoryview:
        segment = self._segments.get(ref.name)
        if segment is None:
            segment = self._segments[ref.name] = SharedMemory(ref.name)
        return _buffer(segment)[ref.offset : ref.offset + ref.size].toreadonly()

    def release(self, names: tuple[str, ...] | list[str]) -> None:
        """Unmap segments the parent has unlinked. One that user code still holds a view
        of stays mapped until a later call finds it free."""
        pending = self._lingering + [s for n in names if (s := self._segments.pop(n, None))]
        self._lingering = [s for s in pending if not _try_close(s)]

    def close(self) -> None:
        self.release(list(self._segments))


def _try_close(segment: SharedMemory) -> bool:
    try:
        segment.close()
    except BufferError:
        return False
    return True
