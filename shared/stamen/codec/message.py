"""Message <-> Envelope plus array objects.

The envelope's payload is a small protobuf body in which each array is only named (dtype,
shape, object id, size); the array bytes travel as separate objects keyed by their hash.
Neither direction copies array memory: objects are the Arrays' own buffers, and decoded
Arrays wrap the buffers they are given. Content bodies go through `wire` (hand-written,
fast, the same bytes); betterproto2 writes error bodies and judges whatever `wire` leaves
to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import partial
from typing import TypeAlias

from stamen.common.errors import IntegrityError, InvalidMessageError
from stamen.common.message import Message
from stamen.common.records import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.proto.stamen import v1 as pb

from .envelope import Envelope
from .objects import Buffer, object_id
from .proto import (
    config_record_from_proto,
    config_record_to_proto,
    error_from_proto,
    error_to_proto,
    metric_record_from_proto,
    metric_record_to_proto,
    parse_proto,
)
from .wire import Unsupported, decode_content, encode_content

__all__ = ["ArrayMemo", "decode_message", "encode_batch", "encode_message"]

ArrayMemo: TypeAlias = dict[int, tuple[Array, str]]
"""id(Array) -> (the Array, its object id). Holding the Array keeps its id from being
reused; valid only while the arrays it names are not modified in place."""


def encode_message(
    message: Message, memo: ArrayMemo | None = None
) -> tuple[Envelope, dict[str, Buffer]]:
    """The envelope and the objects (object id -> bytes) that carry `message`.

    Pass one `memo` for a batch of messages sharing arrays (a model broadcast to many
    nodes) so that each array is hashed once.
    """
    objects: dict[str, Buffer] = {}
    memo = {} if memo is None else memo
    payload: bytes | None = None
    if message.has_content():
        try:
            payload = encode_content(message.content, partial(_object_id, memo), objects)
        except Unsupported:
            objects = {}
    if payload is None:
        payload = _encode_body(message, memo, objects)
    envelope = Envelope(
        metadata=replace(message.metadata), payload=payload, object_ids=tuple(objects)
    )
    return envelope, objects


def encode_batch(messages: Iterable[Message]) -> tuple[list[Envelope], dict[str, Buffer]]:
    """The envelopes of a batch and all their objects (object id -> bytes).

    Messages that share one content object (a model broadcast to 1,000 nodes) share its
    payload: it is encoded once and only the metadata is per message. Like `ArrayMemo`,
    this holds while the batch's contents are not modified as it is being encoded.
    """
    memo: ArrayMemo = {}
    encoded: dict[int, tuple[RecordDict, Envelope]] = {}  # id(content) -> its first envelope
    envelopes: list[Envelope] = []
    objects: dict[str, Buffer] = {}
    for message in messages:
        content = message.content if message.has_content() else None
        first = encoded.get(id(content))
        if content is not None and first is not None and first[0] is content:
            envelope = replace(first[1], metadata=replace(message.metadata))
        else:
            envelope, message_objects = encode_message(message, memo)
            objects.update(message_objects)
            if content is not None:
                encoded[id(content)] = (content, envelope)
        envelopes.append(envelope)
    return envelopes, objects


def _encode_body(message: Message, memo: ArrayMemo, objects: dict[str, Buffer]) -> bytes:
    """The payload through betterproto2: error bodies, and what `wire` leaves to it."""
    if message.has_error():
        body = pb.Message(error=error_to_proto(message.error))
    else:
        body = pb.Message(content=_recorddict_to_proto(message.content, memo, objects))
    try:
        return bytes(body)
    except UnicodeEncodeError as exc:
        raise InvalidMessageError(f"message holds text that is not valid Unicode: {exc}") from None


def decode_message(envelope: Envelope, objects: Mapping[str, Buffer]) -> Message:
    """The Message an envelope carries, its Arrays wrapping the buffers in `objects`."""
    metadata = replace(envelope.metadata)
    try:
        return Message(decode_content(envelope.payload, objects), metadata=metadata)
    except Unsupported:
        pass
    body = parse_proto(pb.Message, envelope.payload)
    if body.error is not None:
        return Message(error=error_from_proto(body.error), metadata=metadata)
    if body.content is None:
        raise InvalidMessageError(f"message {envelope.message_id} has neither content nor error")
    return Message(_recorddict_from_proto(body.content, objects), metadata=metadata)


def _recorddict_to_proto(
    records: RecordDict, memo: ArrayMemo, objects: dict[str, Buffer]
) -> pb.RecordDict:
    # One constructor call per oneof: betterproto2 would keep a second member set.
    items = []
    for key, record in records.items():
        if isinstance(record, ArrayRecord):
            item = pb.RecordItem(key=key, array_record=_arrays_to_proto(record, memo, objects))
        elif isinstance(record, MetricRecord):
            item = pb.RecordItem(key=key, metric_record=metric_record_to_proto(record))
        else:
            item = pb.RecordItem(key=key, config_record=config_record_to_proto(record))
        items.append(item)
    return pb.RecordDict(items=items)


def _arrays_to_proto(
    record: ArrayRecord, memo: ArrayMemo, objects: dict[str, Buffer]
) -> pb.ArrayRecord:
    items = []
    for key, array in record.items():
        oid = _object_id(memo, array)
        objects.setdefault(oid, array.data)
        proto = pb.Array(
            dtype=array.dtype, shape=list(array.shape), object_id=oid, nbytes=array.nbytes
        )
        items.append(pb.ArrayItem(key=key, array=proto))
    return pb.ArrayRecord(items=items)


def _object_id(memo: ArrayMemo, array: Array) -> str:
    cached = memo.get(id(array))
    if cached is not None and cached[0] is array:
        return cached[1]
    oid = object_id(array.data)
    memo[id(array)] = (array, oid)
    return oid


def _recorddict_from_proto(content: pb.RecordDict, objects: Mapping[str, Buffer]) -> RecordDict:
    records = RecordDict()
    used: set[str] = set()
    for item in content.items:
        if item.key in records:
            raise InvalidMessageError(f"RecordDict has the key {item.key!r} more than once")
        record: ArrayRecord | MetricRecord | ConfigRecord
        if item.array_record is not None:
            record = _arrays_from_proto(item.array_record, objects, used)
        elif item.metric_record is not None:
            record = metric_record_from_proto(item.metric_record)
        elif item.config_record is not None:
            record = config_record_from_proto(item.config_record)
        else:
            raise InvalidMessageError(f"RecordDict[{item.key!r}] holds no record")
        records[item.key] = record
    return records


def _arrays_from_proto(
    record: pb.ArrayRecord, objects: Mapping[str, Buffer], used: set[str]
) -> ArrayRecord:
    arrays = ArrayRecord()
    for item in record.items:
        if item.key in arrays:
            raise InvalidMessageError(f"ArrayRecord has the key {item.key!r} more than once")
        if item.array is None:
            raise InvalidMessageError(f"ArrayRecord[{item.key!r}] holds no array")
        arrays[item.key] = _array_from_proto(item.key, item.array, objects, used)
    return arrays


def _array_from_proto(
    key: str, proto: pb.Array, objects: Mapping[str, Buffer], used: set[str]
) -> Array:
    oid = proto.object_id
    try:
        data = objects[oid]
    except KeyError:
        raise IntegrityError(
            f"array {key!r} names object {oid!r}, which was not received"
        ) from None
    size = memoryview(data).nbytes
    if size != proto.nbytes:
        raise IntegrityError(
            f"array {key!r}: object {oid} has {size} bytes, the message says {proto.nbytes}"
        )
    if oid in used:
        # Equal arrays share one object; each Array still gets memory of its own, so an
        # in-place update of one never changes another.
        data = bytearray(data)
    used.add(oid)
    try:
        return Array(dtype=proto.dtype, shape=proto.shape, data=data)
    except (TypeError, ValueError) as exc:
        raise InvalidMessageError(f"array {key!r}: {exc}") from None
