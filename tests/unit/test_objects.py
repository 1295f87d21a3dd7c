"""Content addressing, chunking and reassembly of array objects."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from stamen.codec.objects import (
    CHUNK_SIZE,
    MAX_MESSAGE_SIZE,
    Buffer,
    ObjectAssembler,
    ObjectDigest,
    check_object,
    collect_object,
    iter_chunks,
    object_id,
)
from stamen.common.errors import IntegrityError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _stream(chunks: Iterable[Buffer]) -> AsyncIterator[Buffer]:
    for chunk in chunks:
        yield chunk


def test_sizes() -> None:
    assert CHUNK_SIZE == 1 << 20
    assert MAX_MESSAGE_SIZE == 16 << 20
    assert CHUNK_SIZE < MAX_MESSAGE_SIZE


def test_object_id_is_sha256_of_the_bytes() -> None:
    data = b"stamen" * 1000
    assert object_id(data) == _sha(data)
    assert object_id(bytearray(data)) == _sha(data)
    assert object_id(memoryview(data)) == _sha(data)


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (2, 3), (4, 1, 5)])
def test_object_id_of_typed_memoryviews(shape: tuple[int, ...]) -> None:
    array = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    assert object_id(array.data) == _sha(array.tobytes())


def test_object_id_of_a_non_contiguous_view_hashes_c_order_bytes() -> None:
    array = np.arange(24, dtype=np.int16).reshape(4, 6)[:, ::2]
    assert object_id(array.data) == _sha(array.tobytes(order="C"))


@given(data=st.binary(max_size=5000), chunk_size=st.integers(1, 1500))
def test_chunks_reassemble_to_the_object(data: bytes, chunk_size: int) -> None:
    chunks = list(iter_chunks(data, chunk_size))
    assert all(isinstance(c, memoryview) for c in chunks)
    assert all(len(c) == chunk_size for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= chunk_size or data == b""
    assembler = ObjectAssembler(_sha(data), len(data))
    for chunk in chunks:
        assembler.add(chunk)
    assert assembler.result() == data


def test_chunks_are_zero_copy_slices() -> None:
    data = bytearray(b"a" * 10)
    first = next(iter_chunks(data, 4))
    data[0] = ord("z")
    assert first.tobytes() == b"zaaa"


def test_empty_object_is_one_empty_chunk() -> None:
    assert [c.tobytes() for c in iter_chunks(b"")] == [b""]
    assembler = ObjectAssembler(_sha(b""), 0)
    assembler.add(b"")
    assert assembler.result() == b""


def test_default_chunk_size() -> None:
    data = bytes(CHUNK_SIZE * 2 + 1)
    assert [len(c) for c in iter_chunks(data)] == [CHUNK_SIZE, CHUNK_SIZE, 1]


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        list(iter_chunks(b"abc", 0))


def test_wrong_hash_is_rejected() -> None:
    claimed = _sha(b"what was promised")
    assembler = ObjectAssembler(claimed, 9)
    assembler.add(b"tampered!")
    with pytest.raises(IntegrityError, match=claimed):
        assembler.result()


def test_missing_chunk_names_object_and_sizes() -> None:
    data = b"0123456789"
    assembler = ObjectAssembler(_sha(data), len(data))
    assembler.add(data[:4])
    with pytest.raises(IntegrityError, match=rf"{_sha(data)}.*expected 10 bytes, received 4"):
        assembler.result()


def test_excess_bytes_fail_at_once() -> None:
    assembler = ObjectAssembler(_sha(b"abc"), 3)
    assembler.add(b"ab")
    with pytest.raises(IntegrityError, match="received 4 bytes, more than its 3"):
        assembler.add(b"cd")
    assert assembler.received == 2


def test_chunk_at_the_wrong_offset_is_rejected() -> None:
    assembler = ObjectAssembler(_sha(b"abcdef"), 6)
    assembler.add(b"ab", offset=0)
    with pytest.raises(IntegrityError, match="offset 4, expected offset 2"):
        assembler.add(b"ef", offset=4)


def test_negative_size_is_rejected() -> None:
    with pytest.raises(IntegrityError, match="negative size"):
        ObjectAssembler(_sha(b""), -1)


def test_check_object() -> None:
    check_object(_sha(b"x"), memoryview(b"x"))
    with pytest.raises(IntegrityError):
        check_object(_sha(b"x"), b"y")


@pytest.mark.parametrize("known_size", [True, False])
async def test_collect_object(known_size: bool) -> None:
    data = np.arange(1000, dtype=np.float64).tobytes()
    result = await collect_object(
        _sha(data), _stream(iter_chunks(data, 777)), len(data) if known_size else None
    )
    assert isinstance(result, bytearray)
    assert result == data


@pytest.mark.parametrize("known_size", [True, False])
async def test_collect_object_checks_the_hash(known_size: bool) -> None:
    with pytest.raises(IntegrityError):
        await collect_object(_sha(b"abc"), _stream([b"ab", b"d"]), 3 if known_size else None)


async def test_collect_object_detects_a_short_stream() -> None:
    with pytest.raises(IntegrityError, match="expected 3 bytes, received 2"):
        await collect_object(_sha(b"abc"), _stream([b"ab"]), 3)


async def test_collect_empty_object() -> None:
    assert await collect_object(_sha(b""), _stream(iter_chunks(b""))) == b""


def test_digest_checks_size_and_hash_as_chunks_arrive() -> None:
    data = b"0123456789"
    digest = ObjectDigest(object_id(data), len(data))
    digest.add(memoryview(data[:4]))
    with pytest.raises(IntegrityError, match="incomplete: expected 10 bytes, received 4"):
        digest.verify()
    digest.add(memoryview(data[4:]))
    digest.verify()
    with pytest.raises(IntegrityError, match="received 11 bytes, more than its 10"):
        digest.add(memoryview(b"x"))


def test_digest_rejects_bytes_that_do_not_match_the_id() -> None:
    digest = ObjectDigest(object_id(b"right"), 5)
    digest.add(memoryview(b"wrong"))
    with pytest.raises(IntegrityError, match="does not match its content"):
        digest.verify()
    with pytest.raises(IntegrityError, match="negative size -1"):
        ObjectDigest("ab", -1)
