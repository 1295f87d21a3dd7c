"""The hand-written ObjectChunk codec writes and reads exactly what betterproto2 does."""

from __future__ import annotations

import random

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from stamen.codec.proto import parse_proto
from stamen.proto.stamen import v1 as pb
from stamen.transport.grpc import BoundedProtoCodec
from stamen.transport.grpc.chunkwire import Unsupported, decode_chunk, encode_chunk

FIELDS = ("object_id", "total_size", "offset", "data", "run_id", "node_id")


def _random_chunk(rng: random.Random) -> pb.ObjectChunk:
    chunk = pb.ObjectChunk()
    if rng.random() < 0.6:
        chunk.object_id = rng.choice(["", "ab" * 32, "é" * 3, "x"])
    for name in ("total_size", "offset", "run_id", "node_id"):
        if rng.random() < 0.5:
            value = rng.choice([0, 1, 127, 128, 1 << 63, (1 << 64) - 1, rng.randrange(1 << 40)])
            setattr(chunk, name, value)
    if rng.random() < 0.7:
        chunk.data = rng.randbytes(rng.choice([0, 1, 127, 128, 70_000]))
    return chunk


def _fields(chunk: pb.ObjectChunk) -> tuple[object, ...]:
    return tuple(getattr(chunk, name) for name in FIELDS)


def test_encoding_and_decoding_match_betterproto2() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        chunk = _random_chunk(rng)
        expected = bytes(chunk)
        assert encode_chunk(chunk) == expected
        assert _fields(decode_chunk(expected)) == _fields(pb.ObjectChunk.parse(expected))


def test_damaged_bytes_are_read_alike_or_left_to_betterproto2() -> None:
    rng = random.Random(2)
    taken = 0
    for _ in range(5000):
        data = bytearray(bytes(_random_chunk(rng)))
        for _ in range(rng.randrange(1, 4)):
            if data and rng.random() < 0.7:
                data[rng.randrange(len(data))] = rng.randrange(256)
            else:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        try:
            fast = decode_chunk(bytes(data))
        except Unsupported:
            continue
        taken += 1
        assert _fields(fast) == _fields(parse_proto(pb.ObjectChunk, bytes(data)))
    assert taken > 100  # the fast path does take damaged-but-valid messages


@pytest.mark.parametrize(
    "data",
    [
        b"\x22\x05abc",  # data shorter than its length
        b"\x0a\x02\xff\xfe",  # an object id that is not UTF-8
        b"\x18\x01\x18\x02",  # a field twice
        b"\x38\x01",  # an unknown field
        b"\x12\x01x",  # total_size with the wire type of bytes
        b"\x10" + b"\xff" * 10 + b"\x01",  # a varint past 64 bits
    ],
)
def test_what_the_fast_path_does_not_take_goes_to_betterproto2(data: bytes) -> None:
    with pytest.raises(Unsupported):
        decode_chunk(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x0a\x02\xff\xfe", "malformed ObjectChunk: 'utf-8' codec can't decode"),
        (b"\x12\x01x", "ObjectChunk.total_size: expected int"),
    ],
)
def test_the_codec_refuses_a_malformed_chunk_as_before(data: bytes, reason: str) -> None:
    with pytest.raises(GRPCError) as caught:
        BoundedProtoCodec().decode(data, pb.ObjectChunk)
    assert caught.value.status is Status.INVALID_ARGUMENT
    assert str(caught.value.message).startswith(reason)


def test_the_codec_round_trips_a_chunk_and_caps_its_size() -> None:
    chunk = pb.ObjectChunk(object_id="ab" * 32, total_size=3, data=b"xyz", node_id=7)
    codec = BoundedProtoCodec()
    assert _fields(codec.decode(codec.encode(chunk, pb.ObjectChunk), pb.ObjectChunk)) == _fields(
        chunk
    )
    with pytest.raises(GRPCError) as caught:
        BoundedProtoCodec(max_message_size=10).encode(chunk, pb.ObjectChunk)
    assert caught.value.status is Status.RESOURCE_EXHAUSTED
