"""ObjectStore: the SuperLink's content-addressed store of array objects.

An object is named by the sha256 of its bytes. It arrives as a stream of chunks, is
checked against its name before it is kept (a mismatch stores nothing and raises
IntegrityError), is kept once however many messages refer to it, and is read back as a
stream of ~1 MiB chunks. The store does not count references: the LinkState does, and
the SuperLink deletes an object when its last reference goes.

`MemoryObjectStore` keeps bytes (simulation, tests); `FileObjectStore` keeps one file per
object under a directory, written to a temporary file and renamed into place, so a
killed process leaves either the whole object or nothing, and no object sits in RAM.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterable
from pathlib import Path
from typing import BinaryIO, Protocol

from stamen.codec.objects import CHUNK_SIZE, Buffer
from stamen.common.errors import IntegrityError, ObjectNotFoundError

from .core import check_object_id
from .storage import WriteOutage, storage_fault

__all__ = ["FileObjectStore", "MemoryObjectStore", "ObjectStore"]

logger = logging.getLogger(__name__)


class ObjectStore(Protocol):
    def __contains__(self, object_id: str) -> bool: ...

    async def put(self, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]) -> bool:
        """Store an object from its chunks; False (chunks left unread) when it is already
        stored. IntegrityError when the bytes do not match the id or the size."""
        ...

    def get(self, object_id: str) -> AsyncGenerator[Buffer, None]:
        """The object's bytes in chunks of CHUNK_SIZE (an empty object: one empty chunk);
        ObjectNotFoundError when it is not stored."""
        ...

    def delete(self, object_id: str) -> None:
        """Remove the object if it is stored."""
        ...

    def ids(self) -> set[str]: ...


def _bytes_view(chunk: Buffer) -> memoryview:
    view = memoryview(chunk)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class _Digest:
    """Running size and hash of an object as its chunks arrive."""

    __slots__ = ("_hash", "object_id", "received", "total_size")

    def __init__(self, object_id: str, total_size: int) -> None:
        check_object_id(object_id)
        if total_size < 0:
            raise IntegrityError(f"object {object_id}: negative size {total_size}")
        self.object_id = object_id
        self.total_size = total_size
        self.received = 0
        self._hash = hashlib.sha256()

    def add(self, view: memoryview) -> None:
        self.received += len(view)
        if self.received > self.total_size:
            raise IntegrityError(
                f"object {self.object_id}: received {self.received} bytes, more than its "
                f"{self.total_size}"
            )
        self._hash.update(view)

    def verify(self) -> None:
        if self.received != self.total_size:
            raise IntegrityError(
                f"object {self.object_id} is incomplete: expected {self.total_size} bytes, "
                f"received {self.received}"
            )
        actual = self._hash.hexdigest()
        if actual != self.object_id:
            raise IntegrityError(
                f"object {self.object_id} does not match its content: the bytes hash to {actual}"
            )


class MemoryObjectStore:
    """Objects as bytes in a dictionary."""

    def __init__(self) -> None:
        self._objects: dict[str, bytearray] = {}

    def __contains__(self, object_id: str) -> bool:
        return object_id in self._objects

    async def put(self, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]) -> bool:
        digest = _Digest(object_id, total_size)
        if object_id in self._objects:
            return False
        data = bytearray()
        async for chunk in chunks:
            view = _bytes_view(chunk)
            digest.add(view)
            data += view
        digest.verify()
        if object_id in self._objects:  # another push of the same object finished first
            return False
        self._objects[object_id] = data
        return True

    def get(self, object_id: str) -> AsyncGenerator[Buffer, None]:
        data = self._objects.get(object_id)
        if data is None:
            raise ObjectNotFoundError(object_id)
        return _slices(memoryview(data).toreadonly())

    def delete(self, object_id: str) -> None:
        self._objects.pop(object_id, None)

    def ids(self) -> set[str]:
        return set(self._objects)


async def _slices(view: memoryview) -> AsyncGenerator[Buffer, None]:
    if not view:
        yield view
    for start in range(0, len(view), CHUNK_SIZE):
        yield view[start : start + CHUNK_SIZE]


class FileObjectStore:
    """Objects as files `<directory>/<id[:2]>/<id>`; partial writes under `tmp/`, removed
    when the store opens."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._root = Path(directory)
        self._outage = WriteOutage(str(self._root))
        self._tmp = self._root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():
            leftover.unlink()
        self._ids: set[str] = set()
        for shard in self._root.iterdir():
            if shard.is_dir() and shard != self._tmp:
                self._ids.update(path.name for path in shard.iterdir())

    def _path(self, object_id: str) -> Path:
        return self._root / object_id[:2] / object_id

    def __contains__(self, object_id: str) -> bool:
        return object_id in self._ids

    async def put(self, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]) -> bool:
        digest = _Digest(object_id, total_size)
        if object_id in self._ids:
            return False
        try:
            file = tempfile.NamedTemporaryFile(dir=self._tmp, delete=False)  # noqa: SIM115
        except OSError as exc:
            raise self._fault(exc) from exc
        committed = False
        try:
            try:
                with file:  # a full disk may show only when the file is flushed on close
                    async for chunk in chunks:
                        view = _bytes_view(chunk)
                        digest.add(view)
                        file.write(view)
            except OSError as exc:
                raise self._fault(exc) from exc
            digest.verify()
            if object_id in self._ids:  # another push of the same object finished first
                return False
            try:
                self._commit(file.name, object_id)
            except OSError as exc:
                raise self._fault(exc) from exc
            committed = True
            self._outage.succeeded()
        finally:
            if not committed:
                with contextlib.suppress(OSError):
                    os.unlink(file.name)
        return True

    def _fault(self, exc: OSError) -> BaseException:
        """The named storage fault (logged once per outage), or `exc` itself."""
        named = storage_fault(exc, str(self._root))
        if named is None:
            return exc
        self._outage.failed(named)
        return named

    def _commit(self, temp_name: str, object_id: str) -> None:
        path = self._path(object_id)
        path.parent.mkdir(exist_ok=True)
        os.replace(temp_name, path)
        self._ids.add(object_id)

    def get(self, object_id: str) -> AsyncGenerator[Buffer, None]:
        if object_id not in self._ids:
            raise ObjectNotFoundError(object_id)
        return self._read(object_id)

    def _open(self, object_id: str) -> BinaryIO:
        try:
            return self._path(object_id).open("rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(object_id) from None

    async def _read(self, object_id: str) -> AsyncGenerator[Buffer, None]:
        with self._open(object_id) as file:
            chunk = file.read(CHUNK_SIZE)
            yield chunk
            while chunk := file.read(CHUNK_SIZE):
                yield chunk

    def delete(self, object_id: str) -> None:
        self._ids.discard(object_id)
        self._path(object_id).unlink(missing_ok=True)

    def ids(self) -> set[str]:
        return set(self._ids)
