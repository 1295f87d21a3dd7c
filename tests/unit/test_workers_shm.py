"""Shared-memory pieces of the worker pool, within one process."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np
import pytest
from stamen.workers.shm import (
    INLINE_LIMIT,
    Attachments,
    ReplyArena,
    ReplyReader,
    SegmentCache,
    SharedRef,
    copy_to_segment,
    sweep,
)

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="segments are files only on Linux")

_prefixes = itertools.count()


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"stamen-test-{os.getpid()}-{next(_prefixes)}-"
    yield name
    leftovers = sweep(name)
    assert leftovers == [], f"segments left behind: {leftovers}"


def on_disk(prefix: str) -> set[str]:
    return {path.name for path in SHM.glob(f"{prefix}*")}


async def test_one_segment_per_object_shared_by_its_tasks_then_kept_idle(prefix: str) -> None:
    unlinked: list[str] = []
    cache = SegmentCache(prefix, idle_bytes=1 << 20, on_unlink=unlinked.append)
    data = np.arange(100_000, dtype=np.float32).tobytes()
    (first, ref), (second, again) = await asyncio.gather(
        cache.acquire("model", data), cache.acquire("model", data)
    )
    assert ref == again == SharedRef(f"{prefix}b1", len(data))
    assert cache.segments_created == 1
    segment = SharedMemory(ref.name)
    assert segment.buf is not None
    assert bytes(segment.buf[: len(data)]) == data
    segment.close()
    cache.release(first)
    cache.release(second)
    # Idle, not gone: the next round's evaluation often sends the same model.
    assert on_disk(prefix) == {ref.name}
    _, ref = await cache.acquire("model", data)
    assert cache.segments_created == 1
    await cache.aclose()
    assert on_disk(prefix) == set()
    assert unlinked == [ref.name]


async def test_idle_segments_beyond_the_budget_are_unlinked_oldest_first(prefix: str) -> None:
    unlinked: list[str] = []
    cache = SegmentCache(prefix, idle_bytes=150_000, on_unlink=unlinked.append)
    old, old_ref = await cache.acquire("old", bytes(100_000))
    new, new_ref = await cache.acquire("new", b"\x01" * 100_000)
    cache.release(old)
    assert unlinked == []
    cache.release(new)
    assert unlinked == [old_ref.name]
    assert on_disk(prefix) == {new_ref.name}
    cache.unlink_all()
    assert on_disk(prefix) == set()


async def test_a_segment_in_use_is_never_evicted(prefix: str) -> None:
    cache = SegmentCache(prefix, idle_bytes=0, on_unlink=lambda name: None)
    held, held_ref = await cache.acquire("held", bytes(INLINE_LIMIT))
    done, _ = await cache.acquire("done", b"\x01" * INLINE_LIMIT)
    cache.release(done)  # over the budget at once: evicted...
    assert on_disk(prefix) == {held_ref.name}  # ...but not the one a task still holds
    cache.release(held)
    assert on_disk(prefix) == set()


def test_reply_arena_reuses_one_segment_and_grows_when_needed(prefix: str) -> None:
    arena = ReplyArena(prefix)
    reader = ReplyReader()
    small = b"tiny"
    big = np.random.default_rng(0).bytes(3 * INLINE_LIMIT)
    other = np.random.default_rng(1).bytes(INLINE_LIMIT)
    packed = arena.pack({"s": small, "b": big, "o": memoryview(other)})
    assert packed["s"] == small  # small objects go inline
    refs = [packed["b"], packed["o"]]
    assert all(isinstance(r, SharedRef) for r in refs)
    assert {r.name for r in refs if isinstance(r, SharedRef)} == on_disk(prefix)
    assert [reader.take(r) for r in refs if isinstance(r, SharedRef)] == [big, other]

    again = arena.pack({"o": other})["o"]
    assert isinstance(again, SharedRef)
    assert again.name == refs[0].name  # reused
    huge = np.random.default_rng(2).bytes(3 << 20)
    grown = arena.pack({"h": huge})["h"]
    assert isinstance(grown, SharedRef)
    assert on_disk(prefix) == {grown.name}  # the old arena is unlinked
    assert reader.take(grown) == huge
    reader.close()
    arena.close()
    assert on_disk(prefix) == set()


def test_attached_views_are_read_only_and_release_tolerates_live_views(prefix: str) -> None:
    data = np.arange(1000, dtype=np.float64).tobytes()
    owner = copy_to_segment(f"{prefix}x", data)
    attachments = Attachments()
    view = attachments.view(SharedRef(owner.name, 800, offset=800))
    array = np.frombuffer(view, dtype=np.float64)
    assert not array.flags.writeable
    np.testing.assert_array_equal(array, np.arange(100, 200))
    attachments.release([owner.name])  # user code still holds `array`: kept mapped
    np.testing.assert_array_equal(array, np.arange(100, 200))
    del array, view
    attachments.close()
    owner.close()
    owner.unlink()


def test_sweep_unlinks_only_what_has_the_prefix(prefix: str) -> None:
    mine = [copy_to_segment(f"{prefix}r1-{i}", b"x") for i in range(2)]
    theirs = copy_to_segment(f"{prefix}q", b"y")
    assert sorted(sweep(f"{prefix}r1-")) == sorted(s.name for s in mine)
    assert on_disk(prefix) == {theirs.name}
    for segment in [*mine, theirs]:
        segment.close()
    theirs.unlink()
