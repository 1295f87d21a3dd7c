"""A message's content <-> protobuf bytes, written by hand for speed.

betterproto2 builds an object per field and walks them generically: about a millisecond
to encode or decode one message with a small model, which caps how many client tasks a
second the ServerApp side and the workers can handle. This module writes and reads the
same bytes as `bytes(pb.Message(content=...))` and `pb.Message.parse` for the shape our
own encoder produces (records.proto, content only), over ten times faster.

It never decides anything on its own: whatever falls outside that shape (an error body,
metadata in the payload, an unknown field, an unexpected wire type, a repeated singular
field, a value out of range, invalid text, a duplicate key, a missing or odd-sized
object, an array the records refuse) raises `Unsupported`, and the caller falls back to
the betterproto2 path, which accepts or rejects it with its usual error. So both paths
give the same result for every input; the tests check that on random and hostile input.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from stamen.common.records import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from .objects import Buffer

__all__ = ["Unsupported", "decode_content", "encode_content"]

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_LIMIT = 1 << 64
_SMALL = [bytes((i,)) for i in range(0x80)]
_DOUBLE = struct.Struct("<d")


class Unsupported(Exception):
    """Outside what this module handles: use the betterproto2 path."""


# --- encoding --------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0x80:
        if value < 0:
            raise Unsupported
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _zigzag(value: int) -> bytes:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise Unsupported  # the slow path says which key is out of range
    return _varint(value << 1 if value >= 0 else -(value << 1) - 1)


def _len(tag: bytes, body: bytes) -> bytes:
    return tag + _varint(len(body)) + body


def _text(tag: bytes, text: str) -> bytes:
    """A string field; "" is left out, as proto3 does with defaults."""
    if not text:
        return b""
    try:
        return _len(tag, text.encode("utf-8"))
    except UnicodeEncodeError:
        raise Unsupported from None


def encode_content(
    records: RecordDict, object_id_of: Callable[[Array], str], objects: dict[str, Buffer]
) -> bytes:
    """The bytes of `pb.Message(content=...)` for `records`; fills `objects` (object id
    -> the array's own buffer, in first-use order), naming arrays with `object_id_of`."""
    items = []
    for key, record in records.items():
        if isinstance(record, ArrayRecord):
            body = _len(b"\x12", _array_record(record, object_id_of, objects))
        elif isinstance(record, MetricRecord):
            body = _len(b"\x1a", _metric_record(record))
        else:
            body = _len(b"\x22", _config_record(record))
        items.append(_len(b"\x0a", _text(b"\x0a", key) + body))
    return _len(b"\x12", b"".join(items))


def _array_record(
    record: ArrayRecord, object_id_of: Callable[[Array], str], objects: dict[str, Buffer]
) -> bytes:
    items = []
    for key, array in record.items():
        oid = object_id_of(array)
        objects.setdefault(oid, array.data)
        shape = b"".join([_varint(s) for s in array.shape])
        nbytes = array.nbytes
        body = (
            _text(b"\x0a", array.dtype)
            + (_len(b"\x12", shape) if shape else b"")
            + _len(b"\x1a", oid.encode())
            + (b"\x20" + _varint(nbytes) if nbytes else b"")
        )
        items.append(_len(b"\x0a", _text(b"\x0a", key) + _len(b"\x12", body)))
    return b"".join(items)


def _metric_record(record: MetricRecord) -> bytes:
    items = []
    for key, value in record.items():
        if isinstance(value, list):
            if value and isinstance(value[0], int):
                body = _len(b"\x22", _packed_zigzag(value))
            else:
                body = _len(b"\x1a", _packed_doubles(value))
        elif isinstance(value, int):
            body = b"\x10" + _zigzag(value)
        else:
            body = b"\x09" + struct.pack("<d", value)
        items.append(_len(b"\x0a", _text(b"\x0a", key) + _len(b"\x12", body)))
    return b"".join(items)


def _packed_zigzag(values: list[Any]) -> bytes:
    return _len(b"\x0a", b"".join([_zigzag(v) for v in values])) if values else b""


def _packed_doubles(values: list[Any]) -> bytes:
    return _len(b"\x0a", struct.pack(f"<{len(values)}d", *values)) if values else b""


def _repeated(values: list[Any], encode: bool) -> bytes:
    out = []
    for value in values:
        if encode:
            try:
                value = value.encode("utf-8")
            except UnicodeEncodeError:
                raise Unsupported from None
        out.append(_len(b"\x0a", value))
    return b"".join(out)


def _config_value(value: Any) -> bytes:
    # The kinds, in the order `proto._config_value_to_proto` tries them.
    if isinstance(value, bool):
        return b"\x18\x01" if value else b"\x18\x00"
    if isinstance(value, int):
        return b"\x10" + _zigzag(value)
    if isinstance(value, float):
        return b"\x09" + struct.pack("<d", value)
    if isinstance(value, str):
        try:
            return _len(b"\x22", value.encode("utf-8"))
        except UnicodeEncodeError:
            raise Unsupported from None
    if isinstance(value, bytes):
        return _len(b"\x2a", value)
    if not isinstance(value, list):
        raise Unsupported
    first = value[0] if value else None
    if isinstance(first, bool):
        packed = b"".join([b"\x01" if v else b"\x00" for v in value])
        return _len(b"\x42", _len(b"\x0a", packed))
    if isinstance(first, int):
        return _len(b"\x3a", _packed_zigzag(value))
    if isinstance(first, float):
        return _len(b"\x32", _packed_doubles(value))
    if isinstance(first, bytes):
        return _len(b"\x52", _repeated(value, encode=False))
    return _len(b"\x4a", _repeated(value, encode=True))


def _config_record(record: ConfigRecord) -> bytes:
    items = []
    for key, value in record.items():
        body = _text(b"\x0a", key) + _len(b"\x12", _config_value(value))
        items.append(_len(b"\x0a", body))
    return b"".join(items)


# --- decoding --------------------------------------------------------------------------
# Each reader walks one message's fields between `pos` and `end` and steps aside on the
# first surprise. Every field number here is below 16, so a tag is one byte.


def _varint_at(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it."""
    if pos < end:
        byte = buf[pos]
        if byte < 0x80:
            return byte, pos + 1
    result = shift = 0
    while pos < end and shift < 64:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >= _UINT64_LIMIT:
                raise Unsupported
            return result, pos
        shift += 7
    raise Unsupported


def _span_at(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The span of the length-delimited value at `pos`."""
    if pos < end and buf[pos] < 0x80:
        stop = pos + 1 + buf[pos]
        pos += 1
    else:
        length, pos = _varint_at(buf, pos, end)
        stop = pos + length
    if stop > end:
        raise Unsupported
    return pos, stop


def _text_at(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    start, stop = _span_at(buf, pos, end)
    try:
        return buf[start:stop].decode("utf-8"), stop
    except UnicodeDecodeError:
        raise Unsupported from None


def decode_content(payload: bytes, objects: Mapping[str, Buffer]) -> RecordDict:
    """The RecordDict that a content payload carries, its Arrays wrapping the buffers
    in `objects` (an object two arrays share is copied for the second)."""
    end = len(payload)
    if type(payload) is not bytes or not end or payload[0] != 0x12:
        raise Unsupported
    pos, stop = _span_at(payload, 1, end)
    if stop != end:
        raise Unsupported  # anything besides the content: metadata, error, unknown
    records = RecordDict()
    used: set[str] = set()
    while pos < end:
        if payload[pos] != 0x0A:
            raise Unsupported
        start, stop = _span_at(payload, pos + 1, end)
        key, record = _record_item(payload, start, stop, objects, used)
        if key in records:
            raise Unsupported
        records[key] = record
        pos = stop
    return records


def _record_item(
    buf: bytes, pos: int, end: int, objects: Mapping[str, Buffer], used: set[str]
) -> tuple[str, ArrayRecord | MetricRecord | ConfigRecord]:
    key: str | None = None
    record: ArrayRecord | MetricRecord | ConfigRecord | None = None
    while pos < end:
        tag = buf[pos]
        if tag == 0x0A and key is None:
            key, pos = _text_at(buf, pos + 1, end)
            continue
        if record is not None:
            raise Unsupported
        start, pos = _span_at(buf, pos + 1, end)
        if tag == 0x12:
            record = _array_record_at(buf, start, pos, objects, used)
        elif tag == 0x1A:
            record = _metric_record_at(buf, start, pos)
        elif tag == 0x22:
            record = _config_record_at(buf, start, pos)
        else:
            raise Unsupported
    if record is None:
        raise Unsupported
    return key or "", record


def _item_at(buf: bytes, pos: int, end: int) -> tuple[str, int, int]:
    """An item of `string key = 1; <message> value = 2;`: its key and the value's span."""
    key: str | None = None
    value: tuple[int, int] | None = None
    while pos < end:
        tag = buf[pos]
        if tag == 0x0A and key is None:
            key, pos = _text_at(buf, pos + 1, end)
        elif tag == 0x12 and value is None:
            value = _span_at(buf, pos + 1, end)
            pos = value[1]
        else:
            raise Unsupported
    if value is None:
        raise Unsupported
    return key or "", value[0], value[1]


def _items(buf: bytes, pos: int, end: int) -> list[tuple[str, int, int]]:
    """The items of a record (`repeated Item items = 1`), each key once."""
    items = []
    keys = set()
    while pos < end:
        if buf[pos] != 0x0A:
            raise Unsupported
        start, pos = _span_at(buf, pos + 1, end)
        item = _item_at(buf, start, pos)
        if item[0] in keys:
            raise Unsupported
        keys.add(item[0])
        items.append(item)
    return items


def _array_record_at(
    buf: bytes, pos: int, end: int, objects: Mapping[str, Buffer], used: set[str]
) -> ArrayRecord:
    arrays = ArrayRecord()
    for key, start, stop in _items(buf, pos, end):
        arrays[key] = _array_at(buf, start, stop, objects, used)
    return arrays


def _array_at(
    buf: bytes, pos: int, end: int, objects: Mapping[str, Buffer], used: set[str]
) -> Array:
    dtype: str | None = None
    oid: str | None = None
    shape: list[int] | None = None
    nbytes: int | None = None
    while pos < end:
        tag = buf[pos]
        if tag == 0x0A and dtype is None:
            dtype, pos = _text_at(buf, pos + 1, end)
        elif tag == 0x12 and shape is None:
            start, pos = _span_at(buf, pos + 1, end)
            shape = _varints(buf, start, pos)
        elif tag == 0x1A and oid is None:
            oid, pos = _text_at(buf, pos + 1, end)
        elif tag == 0x20 and nbytes is None:
            nbytes, pos = _varint_at(buf, pos + 1, end)
        else:
            raise Unsupported
    data = objects.get(oid or "")
    if data is None or memoryview(data).nbytes != (nbytes or 0):
        raise Unsupported  # the slow path names what is missing or wrong
    if shape is not None and any(s > _INT64_MAX for s in shape):
        raise Unsupported  # a negative dimension on the wire: the slow path refuses it
    if oid in used:
        data = bytearray(data)
    used.add(oid or "")
    try:
        return Array(dtype=dtype or "", shape=shape or (), data=data)
    except (TypeError, ValueError):
        raise Unsupported from None


def _varints(buf: bytes, pos: int, end: int) -> list[int]:
    values = []
    while pos < end:
        value, pos = _varint_at(buf, pos, end)
        values.append(value)
    return values


def _unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def _one_value(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """A oneof value message with exactly one member: (tag, start, stop) where the member
    is length-delimited or 64-bit, (tag, value, stop) where it is a varint."""
    if pos >= end:
        raise Unsupported
    tag = buf[pos]
    wire = tag & 7
    if wire == 2:
        start, stop = _span_at(buf, pos + 1, end)
    elif wire == 0:
        start, stop = _varint_at(buf, pos + 1, end)
    elif wire == 1:
        start, stop = pos + 1, pos + 9
    else:
        raise Unsupported
    if stop != end or tag & 0x80:
        raise Unsupported
    return tag, start, stop


def _packed(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The span of a list message's packed `values = 1` (empty when absent)."""
    if pos == end:
        return pos, pos
    if buf[pos] != 0x0A:
        raise Unsupported
    start, stop = _span_at(buf, pos + 1, end)
    if stop != end:
        raise Unsupported
    return start, stop


def _doubles(buf: bytes, pos: int, end: int) -> list[float]:
    start, stop = _packed(buf, pos, end)
    count, rest = divmod(stop - start, 8)
    if rest:
        raise Unsupported
    return list(struct.unpack_from(f"<{count}d", buf, start))


def _sints(buf: bytes, pos: int, end: int) -> list[int]:
    return [_unzigzag(v) for v in _varints(buf, *_packed(buf, pos, end))]


def _metric_record_at(buf: bytes, pos: int, end: int) -> MetricRecord:
    values: dict[str, Any] = {}
    for key, start, stop in _items(buf, pos, end):
        tag, a, b = _one_value(buf, start, stop)
        if tag == 0x09:
            values[key] = _DOUBLE.unpack_from(buf, a)[0]
        elif tag == 0x10:
            values[key] = _unzigzag(a)
        elif tag == 0x1A:
            values[key] = _doubles(buf, a, b)
        elif tag == 0x22:
            values[key] = _sints(buf, a, b)
        else:
            raise Unsupported
    return MetricRecord(values)


def _config_record_at(buf: bytes, pos: int, end: int) -> ConfigRecord:
    values: dict[str, Any] = {}
    for key, start, stop in _items(buf, pos, end):
        values[key] = _config_value_at(buf, *_one_value(buf, start, stop))
    return ConfigRecord(values)


def _config_value_at(buf: bytes, tag: int, a: int, b: int) -> Any:
    if tag == 0x09:
        return _DOUBLE.unpack_from(buf, a)[0]
    if tag == 0x10:
        return _unzigzag(a)
    if tag == 0x18:
        return a > 0
    if tag == 0x22:
        try:
            return buf[a:b].decode("utf-8")
        except UnicodeDecodeError:
            raise Unsupported from None
    if tag == 0x2A:
        return buf[a:b]
    if tag == 0x32:
        return _doubles(buf, a, b)
    if tag == 0x3A:
        return _sints(buf, a, b)
    if tag == 0x42:
        return [v > 0 for v in _varints(buf, *_packed(buf, a, b))]
    if tag == 0x4A:
        try:
            return [buf[s:e].decode("utf-8") for s, e in _spans(buf, a, b)]
        except UnicodeDecodeError:
            raise Unsupported from None
    if tag == 0x52:
        return [buf[s:e] for s, e in _spans(buf, a, b)]
    raise Unsupported


def _spans(buf: bytes, pos: int, end: int) -> list[tuple[int, int]]:
    """The spans of a list message's unpacked `repeated string|bytes values = 1`."""
    spans = []
    while pos < end:
        if buf[pos] != 0x0A:
            raise Unsupported
        span = _span_at(buf, pos + 1, end)
        spans.append(span)
        pos = span[1]
    return spans
