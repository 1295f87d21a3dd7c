"""Content addressing and chunking of array objects.

An object is a run of bytes named by its sha256 (hex). Objects move in chunks of about
`CHUNK_SIZE` so that no gRPC message nears `MAX_MESSAGE_SIZE`; the receiver reassembles
them in order and checks the hash, so what it stores is exactly what was named.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Iterator
from typing import TypeAlias

from stamen.common.errors import IntegrityError

__all__ = [
    "CHUNK_SIZE",
    "MAX_MESSAGE_SIZE",
    "Buffer",
    "ObjectAssembler",
    "check_object",
    "collect_object",
    "iter_chunks",
    "object_id",
]

Buffer: TypeAlias = bytes | bytearray | memoryview

CHUNK_SIZE = 1 << 20
"""Bytes per object chunk: streams of ~1 MiB chunks move fastest over grpclib."""

MAX_MESSAGE_SIZE = 16 << 20
"""The largest gRPC message the transports send or accept (RESOURCE_EXHAUSTED above)."""


def _byte_view(data: Buffer) -> memoryview:
    """`data` as a flat unsigned-byte view in C order, copying only non-contiguous views."""
    view = memoryview(data)
    if view.format == "B" and view.ndim == 1:
        return view
    if not view.c_contiguous:
        return memoryview(view.tobytes())
    if view.nbytes == 0:
        # memoryview.cast refuses shapes with a zero in them.
        return memoryview(b"")
    return view.cast("B")


def object_id(data: Buffer) -> str:
    """The object id of `data`: sha256 hex over its bytes in C order."""
    return hashlib.sha256(_byte_view(data)).hexdigest()


def check_object(expected_id: str, data: Buffer) -> None:
    """Raise IntegrityError unless `data` hashes to `expected_id`."""
    actual = object_id(data)
    if actual != expected_id:
        raise IntegrityError(
            f"object {expected_id} does not match its content: the bytes hash to {actual}"
        )


def iter_chunks(data: Buffer, chunk_size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """Zero-copy slices of `data`; an empty object yields one empty chunk (a stream is
    never empty, so the receiver always learns the object's id)."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    view = _byte_view(data)
    if not view:
        yield view
        return
    for start in range(0, len(view), chunk_size):
        yield view[start : start + chunk_size]


class ObjectAssembler:
    """Reassembles one object from in-order chunks into a buffer allocated once.

    The caller bounds `total_size` (it comes from the sender) before building one.
    """

    __slots__ = ("_buffer", "_received", "object_id", "total_size")

    def __init__(self, object_id: str, total_size: int) -> None:
        if total_size < 0:
            raise IntegrityError(f"object {object_id}: negative size {total_size}")
        self.object_id = object_id
        self.total_size = total_size
        self._buffer = bytearray(total_size)
        self._received = 0

    @property
    def received(self) -> int:
        return self._received

    def add(self, chunk: Buffer, offset: int | None = None) -> None:
        """Append the next chunk; `offset`, when the sender gives one, must be where it goes."""
        view = _byte_view(chunk)
        if offset is not None and offset != self._received:
            raise IntegrityError(
                f"object {self.object_id}: chunk at offset {offset}, expected offset "
                f"{self._received} (chunks out of order or missing)"
            )
        end = self._received + len(view)
        if end > self.total_size:
            raise IntegrityError(
                f"object {self.object_id}: received {end} bytes, more than its {self.total_size}"
            )
        self._buffer[self._received : end] = view
        self._received = end

    def result(self) -> bytearray:
        """The whole object, after checking its size and hash."""
        if self._received != self.total_size:
            raise IntegrityError(
                f"object {self.object_id} is incomplete: expected {self.total_size} bytes, "
                f"received {self._received}"
            )
        check_object(self.object_id, self._buffer)
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
        buffer += _byte_view(chunk)
    check_object(object_id, buffer)
    return buffer
