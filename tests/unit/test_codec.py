"""Message <-> envelope + objects <-> protobuf: bit-exact round trips and hostile input."""

from __future__ import annotations

import contextlib
import math
import struct
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import stamen.codec.message as codec_message
from hypothesis import given
from hypothesis import strategies as st
from record_checks import canon
from stamen.codec import (
    Envelope,
    decode_message,
    encode_batch,
    encode_message,
    envelope_from_proto,
    envelope_to_proto,
    metadata_from_proto,
    metadata_to_proto,
    node_from_proto,
    node_to_proto,
    object_id,
    parse_proto,
    run_from_proto,
    run_to_proto,
    user_config_from_proto,
    user_config_to_proto,
)
from stamen.common.errors import ConfigError, IntegrityError, InvalidMessageError
from stamen.common.message import (
    Error,
    ErrorCode,
    Message,
    MessageType,
    Metadata,
    is_message_type,
)
from stamen.common.node import Node
from stamen.common.records import (
    Array,
    ArrayRecord,
    ConfigRecord,
    MetricRecord,
    RecordDict,
    UserConfig,
)
from stamen.common.run import Run, RunStatus
from stamen.proto.stamen import v1 as pb

# --- strategies -------------------------------------------------------------------------

dtypes = (
    hnp.boolean_dtypes()
    | hnp.integer_dtypes(endianness="?")
    | hnp.unsigned_integer_dtypes(endianness="?")
    | hnp.floating_dtypes(endianness="?")
    | hnp.complex_number_dtypes(endianness="?")
)


@st.composite
def ndarrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    """Arrays with arbitrary bit patterns (NaN payloads, odd bools), sometimes strided."""
    dtype = draw(dtypes)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    size = int(np.prod(shape)) * dtype.itemsize
    raw = draw(st.binary(min_size=size, max_size=size))
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if array.ndim and draw(st.booleans()):
        array = array[..., ::-1] if draw(st.booleans()) else array.T
    return array


keys = st.text(max_size=6)
int64s = st.integers(-(1 << 63), (1 << 63) - 1)
floats = st.floats(allow_nan=True, allow_infinity=True)
metric_values = st.one_of(
    int64s, floats, st.lists(int64s, max_size=4), st.lists(floats, max_size=4)
)
config_values = st.one_of(
    st.booleans(),
    int64s,
    floats,
    st.text(max_size=8),
    st.binary(max_size=8),
    *(st.lists(s, max_size=4) for s in (st.booleans(), int64s, floats, st.text(), st.binary())),
)
records = st.one_of(
    st.dictionaries(keys, ndarrays(), max_size=3).map(ArrayRecord),
    st.dictionaries(keys, metric_values, max_size=4).map(MetricRecord),
    st.dictionaries(keys, config_values, max_size=4).map(ConfigRecord),
)
record_dicts = st.dictionaries(keys, records, max_size=4).map(RecordDict)
errors = st.builds(Error, code=int64s, reason=st.text(max_size=20))


def _through_proto(envelope: Envelope) -> Envelope:
    wire = bytes(envelope_to_proto(envelope))
    return envelope_from_proto(pb.Message.parse(wire))


def _metadata(**changes: Any) -> Metadata:
    fields: dict[str, Any] = {
        "run_id": 3,
        "message_id": "m1",
        "src_node_id": 0,
        "dst_node_id": 1 << 63,
        "reply_to_message_id": "",
        "group_id": "g",
        "message_type": "train",
        "ttl": 60.0,
        "created_at": 1.7e9,
    }
    return Metadata(**{**fields, **changes})


# --- round trips ------------------------------------------------------------------------


@given(content=record_dicts)
def test_content_round_trips_bit_exact(content: RecordDict) -> None:
    message = Message(content, metadata=_metadata())
    envelope, objects = encode_message(message)
    assert set(envelope.object_ids) == set(objects)
    assert len(envelope.object_ids) == len(set(envelope.object_ids))
    decoded = decode_message(envelope, objects)
    assert canon(decoded.content) == canon(content)
    assert decoded.metadata == message.metadata


@given(content=record_dicts)
def test_round_trip_through_the_wire_message(content: RecordDict) -> None:
    envelope, objects = encode_message(Message(content, metadata=_metadata()))
    received = _through_proto(envelope)
    assert received == envelope
    assert canon(decode_message(received, objects).content) == canon(content)


@given(array=ndarrays())
def test_arrays_keep_dtype_shape_and_bytes(array: np.ndarray[Any, Any]) -> None:
    message = Message(RecordDict({"a": ArrayRecord({"x": array})}), metadata=_metadata())
    envelope, objects = encode_message(message)
    decoded = decode_message(envelope, {k: bytes(v) for k, v in objects.items()})
    result = decoded.content["a"]["x"]
    assert isinstance(result, Array)
    assert result.dtype == array.dtype.str
    assert result.shape == array.shape
    assert memoryview(result.data).tobytes() == array.tobytes(order="C")
    assert envelope.object_ids == (object_id(array.tobytes(order="C")),)


@given(error=errors)
def test_error_messages_round_trip(error: Error) -> None:
    message = Message(error=error, metadata=_metadata(reply_to_message_id="m0"))
    envelope, objects = encode_message(message)
    assert envelope.object_ids == ()
    assert objects == {}
    for received in (envelope, _through_proto(envelope)):
        decoded = decode_message(received, {})
        assert decoded.error == error
        assert decoded.metadata == message.metadata


def test_special_values_survive() -> None:
    nan_payload = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
    content = RecordDict(
        {
            "m": MetricRecord({"nan": nan_payload, "neg0": -0.0, "min": -(1 << 63), "e": []}),
            "c": ConfigRecord(
                {
                    "f": False,
                    "zero": 0,
                    "s": "",
                    "b": b"",
                    "bl": [],
                    "big": (1 << 63) - 1,
                    "uni": "naïve ☃",
                    "bools": [True, False],
                }
            ),
        }
    )
    envelope, objects = encode_message(Message(content, metadata=_metadata()))
    decoded = decode_message(_through_proto(envelope), objects)
    assert canon(decoded.content) == canon(content)
    assert isinstance(decoded.content["c"]["f"], bool)
    assert isinstance(decoded.content["c"]["zero"], int)
    assert math.copysign(1, decoded.content["m"]["neg0"]) == -1  # type: ignore[arg-type]


def test_empty_lists_are_set_oneof_members() -> None:
    """betterproto2 sends an empty list member as a present, empty message."""
    value = pb.ConfigValue(string_list=pb.StringList(values=[]))
    parsed = parse_proto(pb.ConfigValue, bytes(value))
    assert parsed.string_list is not None
    assert parsed.string_list.values == []
    for kind in ("double_list", "sint_list", "bool_list", "bytes_list"):
        assert getattr(parsed, kind) is None


def test_metadata_travels_outside_the_payload() -> None:
    metadata = _metadata(message_id="abc")
    envelope, _ = encode_message(Message(RecordDict(), metadata=metadata))
    assert parse_proto(pb.Message, envelope.payload).metadata is None
    assert envelope.metadata == metadata
    metadata.run_id = 99  # the envelope holds its own copy
    assert envelope.metadata.run_id == 3
    assert metadata_from_proto(metadata_to_proto(envelope.metadata)) == envelope.metadata


def test_record_order_is_kept() -> None:
    names = [f"k{i}" for i in range(20)][::-1]
    content = RecordDict(
        {
            "z": ArrayRecord({n: np.full(1, i) for i, n in enumerate(names)}),
            "a": MetricRecord({n: i for i, n in enumerate(names)}),
            "m": ConfigRecord({n: str(i) for i, n in enumerate(names)}),
        }
    )
    envelope, objects = encode_message(Message(content, metadata=_metadata()))
    decoded = decode_message(envelope, objects).content
    assert list(decoded) == ["z", "a", "m"]
    assert all(list(record) == names for record in decoded.values())
    # Object ids: distinct, in first-use order.
    expected = [object_id(np.full(1, i).tobytes()) for i in range(20)]
    assert list(envelope.object_ids) == expected


# --- zero copy, dedupe, memo ------------------------------------------------------------


def test_objects_are_the_arrays_own_buffers() -> None:
    array = Array(np.arange(1000, dtype=np.float32))
    envelope, objects = encode_message(
        Message(RecordDict({"a": ArrayRecord({"w": array})}), metadata=_metadata())
    )
    assert objects[envelope.object_ids[0]] is array.data
    received = bytearray(array.data)
    decoded = decode_message(envelope, {envelope.object_ids[0]: received})
    weights = decoded.content["a"]["w"].numpy()  # type: ignore[union-attr]
    assert np.shares_memory(weights, np.frombuffer(received, dtype=np.uint8))


def test_equal_arrays_share_one_object_but_decode_to_separate_memory() -> None:
    content = RecordDict({"a": ArrayRecord({"x": np.zeros(4), "y": np.zeros(4), "z": np.ones(4)})})
    envelope, objects = encode_message(Message(content, metadata=_metadata()))
    assert len(envelope.object_ids) == 2
    received = {k: bytearray(v) for k, v in objects.items()}
    arrays = decode_message(envelope, received).content["a"]
    x, y = arrays["x"].numpy(), arrays["y"].numpy()  # type: ignore[union-attr]
    x += 1
    assert y.tolist() == [0.0] * 4


def test_memo_hashes_a_broadcast_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counting_object_id(data: Any) -> str:
        calls.append(1)
        return object_id(data)

    monkeypatch.setattr(codec_message, "object_id", counting_object_id)
    model = ArrayRecord([np.full(10, i, dtype=np.float32) for i in range(3)])
    memo: codec_message.ArrayMemo = {}
    envelopes = [
        encode_message(Message(RecordDict({"model": model}), node, "train"), memo)[0]
        for node in range(1, 101)
    ]
    assert len(calls) == 3
    assert {e.object_ids for e in envelopes} == {envelopes[0].object_ids}
    calls.clear()
    for node in range(1, 11):
        encode_message(Message(RecordDict({"model": model}), node, "train"))
    assert len(calls) == 30


def test_a_batch_encodes_a_shared_content_once_and_each_metadata_apart() -> None:
    shared = RecordDict({"model": ArrayRecord([np.arange(4, dtype=np.float32)])})
    other = RecordDict({"m": MetricRecord({"a": 1})})
    messages = [Message(shared, node, "train") for node in (1, 2)] + [
        Message(other, 3, "evaluate"),
        Message(error=Error(ErrorCode.UNKNOWN, "x"), metadata=_metadata()),
    ]
    envelopes, objects = encode_batch(messages)
    one_by_one = [encode_message(m) for m in messages]
    assert envelopes == [envelope for envelope, _ in one_by_one]
    assert objects == {
        k: v for _, message_objects in one_by_one for k, v in message_objects.items()
    }
    assert envelopes[0].payload is envelopes[1].payload  # encoded once
    assert envelopes[0].metadata is not envelopes[1].metadata
    assert [e.metadata.dst_node_id for e in envelopes[:3]] == [1, 2, 3]
    decoded = decode_message(envelopes[1], objects)
    assert canon(decoded.content) == canon(shared)


def test_memo_ignores_a_reused_id_of_another_array() -> None:
    old, new = Array(np.zeros(2)), Array(np.ones(2))
    memo: codec_message.ArrayMemo = {id(new): (old, object_id(old.data))}
    envelope, _ = encode_message(
        Message(RecordDict({"a": ArrayRecord({"w": new})}), metadata=_metadata()), memo
    )
    assert envelope.object_ids == (object_id(new.data),)


# --- hostile and broken input -----------------------------------------------------------


def _array_message() -> tuple[Envelope, dict[str, Any]]:
    content = RecordDict({"a": ArrayRecord({"w": np.arange(4, dtype=np.int32)})})
    return encode_message(Message(content, metadata=_metadata()))


def test_missing_object_names_it() -> None:
    envelope, _ = _array_message()
    with pytest.raises(IntegrityError, match=envelope.object_ids[0]):
        decode_message(envelope, {})


def test_object_of_the_wrong_size() -> None:
    envelope, objects = _array_message()
    (oid,) = envelope.object_ids
    with pytest.raises(IntegrityError, match="has 12 bytes, the message says 16"):
        decode_message(envelope, {oid: bytes(objects[oid])[:12]})


def _with_payload(envelope: Envelope, body: pb.Message) -> Envelope:
    return Envelope(envelope.metadata, bytes(body), envelope.object_ids)


@pytest.mark.parametrize("dtype", ["|O", "<U4", "not-a-dtype", "V8", "f4,f4"])
def test_unsendable_dtype_on_the_wire(dtype: str) -> None:
    envelope, objects = _array_message()
    (oid,) = envelope.object_ids
    array = pb.Array(dtype=dtype, shape=[2], object_id=oid, nbytes=16)
    body = pb.Message(
        content=pb.RecordDict(
            items=[
                pb.RecordItem(
                    key="a",
                    array_record=pb.ArrayRecord(items=[pb.ArrayItem(key="w", array=array)]),
                )
            ]
        )
    )
    with pytest.raises(InvalidMessageError, match="array 'w'"):
        decode_message(_with_payload(envelope, body), objects)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x0a", "malformed Message"),
        (b"\x09\x00", "malformed Message"),
        (b"\x12\x05\x0a", "malformed Message"),
        # Metadata.message_id (a string) sent as a varint.
        (b"\x0a\x02\x10\x05", "Metadata.message_id: expected str, got int"),
        (bytes(pb.Message()), "neither content nor error"),
        (bytes(pb.Message(content=pb.RecordDict(items=[pb.RecordItem(key="r")]))), "no record"),
    ],
)
def test_malformed_payloads(payload: bytes, match: str) -> None:
    envelope = Envelope(_metadata(), payload)
    with pytest.raises(InvalidMessageError, match=match):
        decode_message(envelope, {})


def test_a_oneof_with_two_members_on_the_wire_is_rejected() -> None:
    wire = bytes(pb.ConfigValue(double=1.0)) + bytes(pb.ConfigValue(sint64=2))
    with pytest.raises(InvalidMessageError, match="several members"):
        parse_proto(pb.ConfigValue, wire)
    body = pb.Message(content=pb.RecordDict())
    wire = bytes(body) + bytes(pb.Message(error=pb.Error(code=1)))
    with pytest.raises(InvalidMessageError, match="body sets several members"):
        decode_message(Envelope(_metadata(), wire), {})


@pytest.mark.parametrize("record", ["array_record", "metric_record", "config_record"])
def test_duplicate_keys_are_rejected(record: str) -> None:
    if record == "array_record":
        arr = pb.Array(dtype="<f4", shape=[], object_id=object_id(b"\0" * 4), nbytes=4)
        inner: Any = pb.ArrayRecord(items=[pb.ArrayItem(key="k", array=arr)] * 2)
    elif record == "metric_record":
        metric = pb.MetricItem(key="k", value=pb.MetricValue(sint64=1))
        inner = pb.MetricRecord(items=[metric, metric])
    else:
        config = pb.ConfigItem(key="k", value=pb.ConfigValue(sint64=1))
        inner = pb.ConfigRecord(items=[config, config])
    body = pb.Message(content=pb.RecordDict(items=[pb.RecordItem(key="r", **{record: inner})]))
    objects = {object_id(b"\0" * 4): b"\0" * 4}
    with pytest.raises(InvalidMessageError, match="'k' more than once"):
        decode_message(Envelope(_metadata(), bytes(body)), objects)
    twice = pb.Message(content=pb.RecordDict(items=[pb.RecordItem(key="r", **{record: inner})] * 2))
    with pytest.raises(InvalidMessageError, match="more than once"):
        decode_message(Envelope(_metadata(), bytes(twice)), objects)


@given(payload=st.binary(max_size=64))
def test_arbitrary_bytes_never_crash_the_decoder(payload: bytes) -> None:
    with contextlib.suppress(InvalidMessageError):
        decode_message(Envelope(_metadata(), payload), {})


@pytest.mark.parametrize("value", [1 << 63, -(1 << 63) - 1])
def test_integers_beyond_64_bits_are_refused(value: int) -> None:
    for record in (MetricRecord({"n": value}), ConfigRecord({"n": [0, value]})):
        message = Message(RecordDict({"r": record}), metadata=_metadata())
        with pytest.raises(InvalidMessageError, match=r"\['n'\].*64-bit"):
            encode_message(message)


def test_unencodable_text_is_refused() -> None:
    message = Message(RecordDict({"c": ConfigRecord({"s": "\ud800"})}), metadata=_metadata())
    with pytest.raises(InvalidMessageError, match="not valid Unicode"):
        encode_message(message)


# --- envelope <-> wire message ----------------------------------------------------------


def test_envelope_object_ids_come_from_the_content() -> None:
    envelope, _ = _array_message()
    lying = Envelope(envelope.metadata, envelope.payload, object_ids=("f" * 64,))
    assert _through_proto(lying).object_ids == envelope.object_ids


def test_envelope_needs_metadata_and_a_body() -> None:
    with pytest.raises(InvalidMessageError, match="no metadata"):
        envelope_from_proto(pb.Message(content=pb.RecordDict()))
    with pytest.raises(InvalidMessageError, match="body is not set"):
        envelope_from_proto(pb.Message(metadata=metadata_to_proto(_metadata())))


@pytest.mark.parametrize("oid", ["", "abc", "F" * 64, "g" * 64, "a" * 65])
def test_object_ids_must_be_sha256_hex(oid: str) -> None:
    array = pb.Array(dtype="<f4", shape=[1], object_id=oid, nbytes=4)
    content = pb.RecordDict(
        items=[
            pb.RecordItem(
                key="a", array_record=pb.ArrayRecord(items=[pb.ArrayItem(key="w", array=array)])
            )
        ]
    )
    message = pb.Message(metadata=metadata_to_proto(_metadata()), content=content)
    with pytest.raises(InvalidMessageError, match="not a sha256 hex object id"):
        envelope_from_proto(message)


# --- user config, runs, nodes -----------------------------------------------------------


def test_user_config_round_trip() -> None:
    config: UserConfig = {
        "rounds": 3,
        "lr": 0.1,
        "name": "a b",
        "flag": True,
        "off": False,
        "zero": 0.0,
    }
    wire = bytes(user_config_to_proto(config))
    decoded = user_config_from_proto(parse_proto(pb.ConfigRecord, wire))
    assert decoded == config
    assert [type(v) for v in decoded.values()] == [type(v) for v in config.values()]
    assert user_config_from_proto(None) == {}


def test_user_config_rejects_other_kinds() -> None:
    with pytest.raises(ConfigError, match="x=b'1' is a bytes"):
        user_config_to_proto({"x": b"1"})  # type: ignore[dict-item]
    record = pb.ConfigRecord(
        items=[pb.ConfigItem(key="x", value=pb.ConfigValue(string_list=pb.StringList()))]
    )
    with pytest.raises(InvalidMessageError, match="'x' is a string_list"):
        user_config_from_proto(record)


def test_run_round_trip() -> None:
    run = Run(
        run_id=(1 << 64) - 1,
        server_app="server:app",
        client_app="client:app",
        run_config={"num-server-rounds": 3, "lr": 0.5},
        status=RunStatus.FINISHED,
        sub_status=RunStatus.FAILED,
        details="boom",
        created_at=1.5,
        started_at=2.5,
        finished_at=3.5,
    )
    assert run_from_proto(pb.Run.parse(bytes(run_to_proto(run)))) == run
    assert run_from_proto(pb.Run(run_id=4, status="pending")) == Run(run_id=4)


def test_a_run_status_travels_as_its_string_and_arrives_typed() -> None:
    sent = run_to_proto(Run(run_id=4, status=RunStatus.RUNNING))
    assert pb.Run.parse(bytes(sent)).status == "running"
    assert run_from_proto(sent).status is RunStatus.RUNNING


def test_an_unknown_run_status_is_refused() -> None:
    with pytest.raises(InvalidMessageError, match="run status 'paused' is not one of pending"):
        run_from_proto(pb.Run(run_id=4, status="paused"))


def test_message_types_and_error_codes_keep_their_wire_values() -> None:
    assert [str(t) for t in MessageType] == ["train", "evaluate", "query"]
    assert {c.name: int(c) for c in ErrorCode} == {
        "UNKNOWN": 0,
        "CLIENT_APP_RAISED": 1,
        "NODE_UNAVAILABLE": 2,
        "MESSAGE_EXPIRED": 3,
        "WORKER_DIED": 4,
        "LOAD_CLIENT_APP": 5,
        "RUN_STOPPED": 6,
    }
    assert is_message_type("query.sizes")
    assert not is_message_type("fit")


def test_node_round_trip() -> None:
    node = Node(
        node_id=12, node_config={"partition-id": 0}, online=False, last_heartbeat=9.0,
        registered_at=1.0,
    )  # fmt: skip
    assert node_from_proto(pb.Node.parse(bytes(node_to_proto(node)))) == node
    assert node_from_proto(pb.Node(node_id=1)) == Node(node_id=1, online=False)
