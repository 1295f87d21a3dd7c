"""The one object mover: push_missing and fetch_object, used by the grid and the agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import pytest
from stamen.codec.objects import CHUNK_SIZE, object_id
from stamen.common.buffers import Buffer
from stamen.common.errors import IntegrityError, InvalidMessageError, UnavailableError
from stamen.transport.objects import fetch_object, push_missing

BIG = bytes(range(256)) * (CHUNK_SIZE // 128)  # two chunks and a bit
SMALL = b"small object"


class Store:
    """A stand-in object store: what push_object received, what pull_object serves."""

    def __init__(self) -> None:
        self.pushed: dict[str, bytes] = {}
        self.sizes: dict[str, int] = {}

    async def push_object(self, oid: str, size: int, chunks: AsyncIterable[Buffer]) -> bool:
        data = bytearray()
        async for chunk in chunks:
            data += memoryview(chunk).cast("B")
        self.pushed[oid] = bytes(data)
        self.sizes[oid] = size
        return True


async def test_push_missing_sends_only_the_missing_objects_whole() -> None:
    store = Store()
    objects = {object_id(BIG): BIG, object_id(SMALL): SMALL}
    await push_missing(store.push_object, [object_id(BIG)], objects, carrier="x")
    assert store.pushed == {object_id(BIG): BIG}
    assert store.sizes == {object_id(BIG): len(BIG)}


async def test_push_missing_with_an_idle_bound_sends_the_same_bytes() -> None:
    store = Store()
    objects = {object_id(BIG): BIG}
    await push_missing(store.push_object, list(objects), objects, carrier="x", idle=30.0)
    assert store.pushed == objects


async def test_an_object_the_sender_does_not_hold_is_named_in_the_error() -> None:
    store = Store()
    with pytest.raises(InvalidMessageError, match="asked for object abc, which reply 7 does not"):
        await push_missing(store.push_object, ["abc"], {}, carrier="reply 7 does not carry")


async def test_a_stalled_push_ends_with_unavailable() -> None:
    async def stalled(oid: str, size: int, chunks: AsyncIterable[Buffer]) -> bool:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with pytest.raises(UnavailableError, match=r"more than 0\.01s over a part of object"):
        await push_missing(
            stalled, [object_id(SMALL)], {object_id(SMALL): SMALL}, carrier="x", idle=0.01
        )


def serving(data: bytes) -> AsyncIterator[Buffer]:
    async def chunks() -> AsyncIterator[Buffer]:
        for start in range(0, len(data), CHUNK_SIZE):
            yield data[start : start + CHUNK_SIZE]

    return chunks()


@pytest.mark.parametrize("idle", [None, 30.0])
async def test_fetch_object_collects_and_verifies(idle: float | None) -> None:
    streams: list[AsyncIterator[Buffer]] = []

    def pull(oid: str) -> AsyncIterator[Buffer]:
        streams.append(serving(BIG))
        return streams[-1]

    assert await fetch_object(pull, object_id(BIG), idle=idle) == BIG
    with pytest.raises(StopAsyncIteration):  # the stream was closed
        await anext(streams[0])


async def test_fetch_object_rejects_bytes_that_do_not_match() -> None:
    with pytest.raises(IntegrityError, match="does not match its content"):
        await fetch_object(lambda oid: serving(b"other"), object_id(SMALL))


async def test_a_stalled_pull_ends_with_unavailable() -> None:
    async def stalled() -> AsyncIterator[Buffer]:
        yield b"s"
        await asyncio.Event().wait()

    with pytest.raises(UnavailableError, match=r"sent no part of object \w+ for 0\.01s"):
        await fetch_object(lambda oid: stalled(), object_id(SMALL), idle=0.01)
