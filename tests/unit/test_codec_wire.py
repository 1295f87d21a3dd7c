"""The hand-written content codec agrees with betterproto2 byte for byte and value for value.

`stamen.codec.wire` may only be faster: for every content it encodes it must write
betterproto2's bytes, and for every payload it decodes it must give betterproto2's
result, or step aside (`Unsupported`) so the betterproto2 path decides.
"""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import stamen.codec.message as codec_message
from hypothesis import given, settings
from hypothesis import strategies as st
from record_checks import canon
from stamen.codec import decode_message, encode_message, object_id
from stamen.codec.envelope import Envelope
from stamen.codec.wire import Unsupported, decode_content, encode_content
from stamen.common.errors import StamenError
from stamen.common.message import Message, Metadata
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.proto.stamen import v1 as pb

dtypes = hnp.boolean_dtypes() | hnp.integer_dtypes(endianness="?") | hnp.floating_dtypes()
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
int64s = st.integers(-(1 << 63), (1 << 63) - 1)
floats = st.floats(allow_nan=True, allow_infinity=True)
texts = st.text(max_size=5)
metric_values = st.one_of(
    int64s, floats, st.lists(int64s, max_size=3), st.lists(floats, max_size=3)
)
config_values = st.one_of(
    st.booleans(),
    int64s,
    floats,
    texts,
    st.binary(max_size=5),
    *(st.lists(s, max_size=3) for s in (st.booleans(), int64s, floats, texts, st.binary())),
)
records = st.one_of(
    st.dictionaries(texts, arrays, max_size=3).map(ArrayRecord),
    st.dictionaries(texts, metric_values, max_size=3).map(MetricRecord),
    st.dictionaries(texts, config_values, max_size=3).map(ConfigRecord),
)
record_dicts = st.dictionaries(texts, records, max_size=3).map(RecordDict)


def _slow_encode(content: RecordDict) -> tuple[bytes, dict[str, Any]]:
    objects: dict[str, Any] = {}
    body = codec_message._recorddict_to_proto(content, {}, objects)
    return bytes(pb.Message(content=body)), objects


def _slow_decode(payload: bytes, objects: dict[str, Any]) -> Any:
    """betterproto2's verdict: the decoded content, or the error it raises."""
    metadata = Metadata(1, "m", 0, 1, "", "", 0.0, 60.0, "train")
    saved = codec_message.decode_content

    def refuse(payload: bytes, objects: Any) -> RecordDict:
        raise Unsupported

    codec_message.decode_content = refuse  # type: ignore[assignment]
    try:
        return canon(decode_message(Envelope(metadata, payload), objects).content)
    except StamenError as exc:
        return type(exc)
    finally:
        codec_message.decode_content = saved


def _fast_decode(payload: bytes, objects: dict[str, Any]) -> Any:
    return canon(decode_content(payload, objects))


@given(content=record_dicts)
def test_encoding_is_betterproto2s_bytes(content: RecordDict) -> None:
    objects: dict[str, Any] = {}
    payload = encode_content(content, lambda a: object_id(a.data), objects)
    expected, expected_objects = _slow_encode(content)
    assert payload == expected
    assert list(objects) == list(expected_objects)


@given(content=record_dicts)
def test_decoding_gives_betterproto2s_content(content: RecordDict) -> None:
    payload, objects = _slow_encode(content)
    assert _fast_decode(payload, objects) == _slow_decode(payload, objects) == canon(content)


@settings(max_examples=300)
@given(content=record_dicts, data=st.data())
def test_damaged_payloads_decode_alike_or_step_aside(content: RecordDict, data: Any) -> None:
    payload, objects = _slow_encode(content)
    damaged = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(len(damaged) - 1, 0)))
        if kind == "flip" and damaged:
            damaged[at] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del damaged[at:]
        else:
            damaged[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    wire = bytes(damaged)
    try:
        fast = _fast_decode(wire, objects)
    except Unsupported:
        return
    assert fast == _slow_decode(wire, objects)


@given(payload=st.binary(max_size=48))
def test_arbitrary_bytes_decode_alike_or_step_aside(payload: bytes) -> None:
    try:
        fast = _fast_decode(payload, {})
    except Unsupported:
        return
    assert fast == _slow_decode(payload, {})


def _array_payload(**array: Any) -> tuple[bytes, dict[str, bytes]]:
    data = b"\0" * 8
    fields = {"dtype": "<f4", "shape": [2], "object_id": object_id(data), "nbytes": 8, **array}
    item = pb.ArrayItem(key="w", array=pb.Array(**fields))
    body = pb.RecordItem(key="a", array_record=pb.ArrayRecord(items=[item]))
    return bytes(pb.Message(content=pb.RecordDict(items=[body]))), {object_id(data): data}


@pytest.mark.parametrize(
    "array",
    [
        {"nbytes": 4},  # the object has 8
        {"object_id": "f" * 64},  # not received
        {"dtype": "|O"},  # refused by Array
        {"shape": [-2]},
        {"shape": [3]},
    ],
)
def test_what_only_betterproto2_may_judge_steps_aside(array: dict[str, Any]) -> None:
    payload, objects = _array_payload(**array)
    with pytest.raises(Unsupported):
        decode_content(payload, objects)
    assert isinstance(_slow_decode(payload, objects), type)  # an error class


def _field(tag: int, body: bytes) -> bytes:
    return bytes((tag, len(body))) + body


def test_unknown_fields_and_unpacked_lists_go_to_betterproto2() -> None:
    payload, objects = _array_payload()
    (oid,) = objects
    unpacked_shape = b"\x0a\x03<f4" + b"\x10\x02" + _field(0x1A, oid.encode()) + b"\x20\x08"
    item = _field(0x0A, _field(0x0A, b"w") + _field(0x12, unpacked_shape))
    record = _field(0x0A, _field(0x0A, b"a") + _field(0x12, item))
    expected = canon(decode_content(payload, objects))
    for wire in (payload + b"\x78\x01", _field(0x12, record)):  # field 15; shape unpacked
        with pytest.raises(Unsupported):
            decode_content(wire, objects)
        assert _slow_decode(wire, objects) == expected


def test_messages_round_trip_through_both_paths() -> None:
    model = ArrayRecord([np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2)])
    content = RecordDict(
        {
            "model": model,
            "metrics": MetricRecord({"loss": 0.5, "n": 3, "hist": [1.0, 2.0]}),
            "config": ConfigRecord({"lr": 0.1, "name": "naïve", "flags": [True, False]}),
        }
    )
    envelope, objects = encode_message(Message(content, 7, "train"))
    assert envelope.payload == _slow_encode(content)[0]
    decoded = decode_message(envelope, objects)
    assert canon(decoded.content) == canon(content)
