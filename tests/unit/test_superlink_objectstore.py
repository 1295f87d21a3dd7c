"""The object store over memory and files: verify, dedupe, chunked reads, deletion."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import numpy as np
import pytest
from stamen.codec.objects import CHUNK_SIZE, Buffer
from stamen.common.errors import IntegrityError, InvalidMessageError, ObjectNotFoundError
from stamen.superlink import FileObjectStore, MemoryObjectStore, ObjectStore


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "memory":
        return MemoryObjectStore()
    return FileObjectStore(tmp_path / "objects")


def oid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stream(*chunks: Buffer) -> AsyncIterator[Buffer]:
    for chunk in chunks:
        yield chunk


async def read(store: ObjectStore, object_id: str) -> list[bytes]:
    return [bytes(chunk) async for chunk in store.get(object_id)]


def split(data: bytes, size: int) -> Iterable[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_an_object_is_stored_from_chunks_and_read_back_in_chunks(
    store: ObjectStore,
) -> None:
    data = np.random.default_rng(0).bytes(2 * CHUNK_SIZE + 123)
    assert await store.put(oid(data), len(data), stream(*split(data, 300_000))) is True
    assert oid(data) in store
    chunks = await read(store, oid(data))
    assert [len(c) for c in chunks] == [CHUNK_SIZE, CHUNK_SIZE, 123]
    assert b"".join(chunks) == data


async def test_the_same_object_is_stored_once(store: ObjectStore) -> None:
    data = b"model" * 1000

    async def untouched() -> AsyncIterator[Buffer]:
        raise AssertionError("a stored object's chunks are not read again")
        yield b""  # pragma: no cover

    assert await store.put(oid(data), len(data), stream(data)) is True
    for _ in range(3):
        assert await store.put(oid(data), len(data), untouched()) is False
    assert store.ids() == {oid(data)}


async def test_chunks_may_be_any_bytes_like(store: ObjectStore) -> None:
    array = np.arange(10, dtype=np.float32)
    data = array.tobytes()
    assert await store.put(oid(data), len(data), stream(memoryview(array), bytearray())) is True
    assert b"".join(await read(store, oid(data))) == data


async def test_an_empty_object_reads_as_one_empty_chunk(store: ObjectStore) -> None:
    assert await store.put(oid(b""), 0, stream(b"")) is True
    assert await read(store, oid(b"")) == [b""]


@pytest.mark.parametrize(
    ("chunks", "size", "match"),
    [
        ((b"hello", b"x"), 6, "does not match"),
        ((b"hello",), 4, "more than"),
        ((b"hel",), 5, "incomplete"),
        ((b"hello",), -1, "negative"),
    ],
)
async def test_bytes_that_do_not_match_their_id_store_nothing(
    store: ObjectStore, tmp_path: Path, chunks: tuple[bytes, ...], size: int, match: str
) -> None:
    with pytest.raises(IntegrityError, match=match):
        await store.put(oid(b"hello"), size, stream(*chunks))
    assert oid(b"hello") not in store
    assert store.ids() == set()
    if isinstance(store, FileObjectStore):
        assert list((tmp_path / "objects" / "tmp").iterdir()) == []


async def test_a_failing_stream_stores_nothing(store: ObjectStore) -> None:
    async def broken() -> AsyncIterator[Buffer]:
        yield b"he"
        raise ConnectionError("peer went away")

    with pytest.raises(ConnectionError):
        await store.put(oid(b"hello"), 5, broken())
    assert store.ids() == set()


async def test_ids_that_are_not_sha256_hex_are_refused(store: ObjectStore) -> None:
    with pytest.raises(InvalidMessageError):
        await store.put("../escape", 1, stream(b"x"))


async def test_a_deleted_object_is_gone(store: ObjectStore) -> None:
    await store.put(oid(b"x"), 1, stream(b"x"))
    store.delete(oid(b"x"))
    store.delete(oid(b"x"))  # deleting twice is fine
    assert oid(b"x") not in store
    with pytest.raises(ObjectNotFoundError):
        store.get(oid(b"x"))


async def test_concurrent_pushes_of_one_object_store_it_once(store: ObjectStore) -> None:
    data = b"same"
    gate = asyncio.Event()

    async def gated() -> AsyncIterator[Buffer]:
        await gate.wait()
        yield data

    puts = [asyncio.create_task(store.put(oid(data), len(data), gated())) for _ in range(2)]
    await asyncio.sleep(0)  # both pushes start and wait for their bytes
    gate.set()
    assert sorted(await asyncio.gather(*puts)) == [False, True]
    assert b"".join(await read(store, oid(data))) == data


async def test_memory_store_copies_what_it_is_given() -> None:
    store = MemoryObjectStore()
    buffer = bytearray(b"abc")
    await store.put(oid(b"abc"), 3, stream(buffer))
    buffer[0] = ord("z")
    chunks = [chunk async for chunk in store.get(oid(b"abc"))]
    assert bytes(chunks[0]) == b"abc"
    with pytest.raises(TypeError):
        chunks[0][0] = 1  # type: ignore[index]


async def test_file_store_finds_its_objects_again_and_clears_partial_writes(
    tmp_path: Path,
) -> None:
    root = tmp_path / "objects"
    first = FileObjectStore(root)
    await first.put(oid(b"kept"), 4, stream(b"kept"))
    (root / "tmp" / "partial").write_bytes(b"half an object")
    second = FileObjectStore(root)
    assert second.ids() == {oid(b"kept")}
    assert b"".join(await read(second, oid(b"kept"))) == b"kept"
    assert list((root / "tmp").iterdir()) == []
