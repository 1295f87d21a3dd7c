"""Content addressing and chunking of array objects.

An object is a run of bytes named by its sha256 (hex). Objects move in chunks of about
`CHUNK_SIZE` so that no gRPC message nears `MAX_MESSAGE_SIZE`; the receiver reassembles
them in order and checks the hash, so what it stores is exactly what was named.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Iterator

from stamen.common.buffers import Buffer, byte_view
from stamen.common.errors import IntegrityError

__all__ = [
    "CHUNK_SIZE",
    "MAX_MESSAGE_SIZE",
    "Buffer",
    "ObjectAssembler",
    "ObjectDigest",
    "check_object",
    "collect_object",
    "iter_chunks",
    "object_id",
]

CHUNK_SIZE = 1 << 20
"""Bytes per object chunk: streams of ~1 MiB chunks move fastest over grpclib."""

MAX_MESSAGE_SIZE = 16 << 20
"""The largest gRPC message the transports send or accept (RESOURCE_EXHAUSTED above)."""


def object_id(data: Buffer) -> str:
    """The object id of `data`: sha256 hex over its bytes in C order."""
    return hashlib.sha256(byte_view(data)).hexdigest()


def check_object(expected_id: str, data: Buffer) -> None:
    """Raise IntegrityError unless `data` hashes to `expected_id`."""
    actual = object_id(data)
    if actual != expected_id:
        raise _mismatch(expected_id, actual)


def _mismatch(expected_id: str, actual: str) -> IntegrityError:
    return IntegrityError(
        f"object {expected_id} does not match its content: the bytes hash to {actual}"
    )


def iter_chunks(data: Buffer, chunk_size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """Zero-copy slices of `data`; an empty object yields one empty chunk (a stream is
    never empty, so the receiver always learns the object's id)."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    view = byte_view(data)
    if not view:
        yield view
        return
    for start in range(0, len(view), chunk_size):
        yield view[start : start + chunk_size]


class ObjectDigest:
    """The running size and hash of one object as its chunks arrive, checked against the
    size the sender announced and the id (its sha256) at the end. Every receiver of
    objects (the SuperLink's store, a node or grid collecting a stream) checks with it.

    The caller bounds `total_size` (it comes from the sender) before building one.
    """

    __slots__ = ("_hash", "object_id", "received", "total_size")

    def __init__(self, object_id: str, total_size: int) -> None:
        if total_size < 0:
            raise IntegrityError(f"object {object_id}: negative size {total_size}")
        self.object_id = object_id
        self.total_size = total_size
        self.received = 0
        self._hash = hashlib.sha256()

    def add(self, view: memoryview) -> None:
        """Count and hash the next chunk (a flat byte view, see `byte_view`)."""
        end = self.received + len(view)
        if end > self.total_size:
            raise IntegrityError(
                f"object {self.object_id}: received {end} bytes, more than its {self.total_size}"
            )
        self._hash.update(view)
        self.received = end

    def verify(self) -> None:
        """Raise IntegrityError unless exactly `total_size` bytes hashing to the id came."""
        if self.received != self.total_size:
            raise IntegrityError(
                f"object {self.object_id} is incomplete: expected {self.total_size} bytes, "
                f"received {self.received}"
            )
        actual = self._hash.hexdigest()
        if actual != self.object_id:
            raise _mismatch(self.object_id, actual)


class ObjectAssembler:
    """Reassembles one object from in-order chunks into a buffer allocated once.

    The caller bounds `total_size` (it comes from the sender) before building one.
    """

    __slots__ = ("_buffer", "_digest", "object_id", "total_size")

    def __init__(self, object_id: str, total_size: int) -> None:
        self._digest = ObjectDigest(object_id, total_size)
        self.object_id = object_id
        self.total_size = total_size
        self._buffer = bytearray(total_size)

    @property
    def received(self) -> int:
        return self._digest.received

    def add(self, chunk: Buffer, offset: int | None = None) -> None:
        """Append the next chunk; `offset`, when the sender gives one, must be where it goes."""
        view = byte_view(chunk)
        start = self._digest.received
        if offset is not None and offset != start:
            raise IntegrityError(
                f"object {self.object_id}: chunk at offset {offset}, expected offset "
                f"{start} (chunks out of order or missing)"
            )
        self._digest.add(view)
        self._buffer[start : self._digest.received] = view

    def result(self) -> bytearray:
        """The whole object, after checking its size and hash."""
        self._digest.verify()
        return self._buffer


async def collect_object(
    object_id: str, chunks: AsyncIterable[Buffer], total_size: int | None = None
) -> bytearray:
    """Read a chunk stream into one verified buffer (preallocated when the size is known)."""
    if total_size is not None:
        assembler = ObjectAssembler(object_id, total_size)
        async for chunk in chunks:
            assembler.add(chunk)
        return assembler.result()
    buffer = bytearray()
    async for chunk in chunks:
        buffer += byte_view(chunk)
    check_object(object_id, buffer)
    return buffer
