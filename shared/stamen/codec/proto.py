"""Domain objects <-> protocol messages, so betterproto types stop at the codec.

Everything that comes from the wire is checked here first: betterproto2 does not check
wire types while parsing (a string field sent as a varint parses as an int) and keeps
every member of a oneof that the sender set, so `check_proto` walks a parsed message and
rejects what does not fit its schema with InvalidMessageError.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from typing import Any, TypeVar

import betterproto2

from stamen.common.errors import ConfigError, InvalidMessageError
from stamen.common.message import Error, Metadata
from stamen.common.node import Node
from stamen.common.records import (
    ConfigRecord,
    ConfigValue,
    MetricRecord,
    MetricValue,
    UserConfig,
    UserConfigValue,
)
from stamen.common.run import Run, RunStatus
from stamen.proto.stamen import v1 as pb

from .envelope import Envelope

__all__ = [
    "check_proto",
    "config_record_from_proto",
    "config_record_to_proto",
    "content_object_ids",
    "envelope_from_proto",
    "envelope_to_proto",
    "envelope_to_wire",
    "error_from_proto",
    "error_to_proto",
    "metadata_from_proto",
    "metadata_to_proto",
    "metric_record_from_proto",
    "metric_record_to_proto",
    "node_from_proto",
    "node_to_proto",
    "parse_proto",
    "run_from_proto",
    "run_to_proto",
    "user_config_from_proto",
    "user_config_to_proto",
]

M = TypeVar("M", bound=betterproto2.Message)

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_OBJECT_ID = re.compile(r"[0-9a-f]{64}")
# What a parse error looks like inside betterproto2 (it does not wrap its own).
_PARSE_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    EOFError,
    OverflowError,
    struct.error,
    UnicodeDecodeError,
)


# --- checked parsing -------------------------------------------------------------------


def parse_proto(cls: type[M], data: bytes) -> M:
    """Parse `data` as `cls` and check it (`check_proto`); InvalidMessageError if malformed."""
    try:
        message = cls.parse(data)
    except _PARSE_ERRORS as exc:
        raise InvalidMessageError(f"malformed {cls.__name__}: {exc}") from None
    check_proto(message)
    return message


def check_proto(message: betterproto2.Message) -> None:
    """Raise InvalidMessageError where a parsed message breaks its schema: a field of the
    wrong type (sent with the wrong wire type) or a oneof with several members set."""
    meta = message._betterproto  # type: ignore[arg-type]  # betterproto2's classproperty typing
    for group, fields in meta.oneof_field_by_group.items():
        members = [f.name for f in fields if getattr(message, f.name) is not None]
        if len(members) > 1:
            raise InvalidMessageError(
                f"{type(message).__name__}.{group} sets several members: {', '.join(members)}"
            )
    for name, field in meta.meta_by_field_name.items():
        value = getattr(message, name)
        if value is None:
            if not (field.optional or field.group or field.repeated):
                # A plain scalar left unset by a wire type it cannot have (a group).
                raise InvalidMessageError(
                    f"{type(message).__name__}.{name}: sent with a wire type it cannot have"
                )
            continue
        expected = meta.cls_by_field[name]
        for item in value if field.repeated else (value,):
            if not _fits(item, expected):
                raise InvalidMessageError(
                    f"{type(message).__name__}.{name}: expected {expected.__name__}, "
                    f"got {type(item).__name__}"
                )
            if isinstance(item, betterproto2.Message):
                check_proto(item)


def _fits(value: Any, expected: type) -> bool:
    if expected is float:
        # Doubles built in Python may hold ints; the wire never gives a bool here.
        return isinstance(value, float | int) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _oneof(message: betterproto2.Message, group: str) -> tuple[str, Any]:
    name, value = betterproto2.which_one_of(message, group)
    if not name:
        raise InvalidMessageError(f"{type(message).__name__}.{group} is not set")
    return name, value


def _check_keys(kind: str, keys: Iterable[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise InvalidMessageError(f"{kind} has the key {key!r} more than once")
        seen.add(key)


# --- metadata and errors ---------------------------------------------------------------


def metadata_to_proto(metadata: Metadata) -> pb.Metadata:
    return pb.Metadata(
        run_id=metadata.run_id,
        message_id=metadata.message_id,
        src_node_id=metadata.src_node_id,
        dst_node_id=metadata.dst_node_id,
        reply_to_message_id=metadata.reply_to_message_id,
        group_id=metadata.group_id,
        message_type=metadata.message_type,
        ttl=float(metadata.ttl),
        created_at=float(metadata.created_at),
    )


def metadata_from_proto(metadata: pb.Metadata) -> Metadata:
    return Metadata(
        run_id=metadata.run_id,
        message_id=metadata.message_id,
        src_node_id=metadata.src_node_id,
        dst_node_id=metadata.dst_node_id,
        reply_to_message_id=metadata.reply_to_message_id,
        group_id=metadata.group_id,
        message_type=metadata.message_type,
        ttl=float(metadata.ttl),
        created_at=float(metadata.created_at),
    )


def error_to_proto(error: Error) -> pb.Error:
    return pb.Error(code=error.code, reason=error.reason)


def error_from_proto(error: pb.Error) -> Error:
    return Error(code=error.code, reason=error.reason)


# --- envelopes -------------------------------------------------------------------------


def envelope_to_proto(envelope: Envelope) -> pb.Message:
    """The wire message for an envelope: its payload with the metadata filled in."""
    message = parse_proto(pb.Message, envelope.payload)
    message.metadata = metadata_to_proto(envelope.metadata)
    return message


def envelope_to_wire(envelope: Envelope) -> bytes:
    """The bytes of `envelope_to_proto(envelope)`, without decoding the payload: the
    metadata field, then the payload's own fields. A payload never holds metadata (it is
    a body that `encode_message` or `envelope_from_proto` made), so the two never merge."""
    return bytes(pb.Message(metadata=metadata_to_proto(envelope.metadata))) + envelope.payload


def envelope_from_proto(message: pb.Message) -> Envelope:
    """The envelope for a received message. Its object ids are read from the content's
    arrays, never taken on the sender's word."""
    check_proto(message)
    if message.metadata is None:
        raise InvalidMessageError("message has no metadata")
    kind, body = _oneof(message, "body")
    if kind == "content":
        payload = pb.Message(content=body)
        object_ids = content_object_ids(body)
    else:
        payload = pb.Message(error=body)
        object_ids = ()
    return Envelope(
        metadata=metadata_from_proto(message.metadata),
        payload=bytes(payload),
        object_ids=object_ids,
    )


def content_object_ids(content: pb.RecordDict) -> tuple[str, ...]:
    """The distinct object ids that a content's arrays name, in first-use order."""
    ids: dict[str, None] = {}
    for item in content.items:
        if item.array_record is None:
            continue
        for array_item in item.array_record.items:
            if array_item.array is None:
                raise InvalidMessageError(f"array {array_item.key!r} is empty")
            oid = array_item.array.object_id
            if not _OBJECT_ID.fullmatch(oid):
                raise InvalidMessageError(
                    f"array {array_item.key!r} names {oid!r}, not a sha256 hex object id"
                )
            ids[oid] = None
    return tuple(ids)


# --- metric and config records ---------------------------------------------------------


def _int64(kind: str, key: str, value: int) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidMessageError(f"{kind}[{key!r}]: {value} does not fit in a 64-bit integer")
    return value


def _ints(kind: str, key: str, values: Iterable[Any]) -> list[int]:
    return [_int64(kind, key, v) for v in values]


def metric_record_to_proto(record: MetricRecord) -> pb.MetricRecord:
    items = []
    for key, value in record.items():
        if isinstance(value, list):
            if value and isinstance(value[0], int):
                pv = pb.MetricValue(sint_list=pb.SintList(values=_ints("MetricRecord", key, value)))
            else:
                pv = pb.MetricValue(double_list=pb.DoubleList(values=list[Any](value)))
        elif isinstance(value, int):
            pv = pb.MetricValue(sint64=_int64("MetricRecord", key, value))
        else:
            pv = pb.MetricValue(double=value)
        items.append(pb.MetricItem(key=key, value=pv))
    return pb.MetricRecord(items=items)


def metric_record_from_proto(record: pb.MetricRecord) -> MetricRecord:
    values: dict[str, MetricValue] = {}
    for item in record.items:
        if item.value is None:
            raise InvalidMessageError(f"MetricRecord[{item.key!r}] has no value")
        kind, value = _oneof(item.value, "value")
        if kind == "double":
            values[item.key] = float(value)
        elif kind == "sint64":
            values[item.key] = int(value)
        elif kind == "double_list":
            values[item.key] = [float(v) for v in value.values]
        else:
            values[item.key] = list(value.values)
    _check_keys("MetricRecord", [item.key for item in record.items])
    return MetricRecord(values)


def _config_value_to_proto(key: str, value: ConfigValue) -> pb.ConfigValue:
    # Exactly one member per constructor call: betterproto2 keeps a second one set.
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return pb.ConfigValue(bool=value)
    if isinstance(value, int):
        return pb.ConfigValue(sint64=_int64("ConfigRecord", key, value))
    if isinstance(value, float):
        return pb.ConfigValue(double=value)
    if isinstance(value, str):
        return pb.ConfigValue(string=value)
    if isinstance(value, bytes):
        return pb.ConfigValue(bytes=value)
    items = list[Any](value)
    first = items[0] if items else None
    if isinstance(first, bool):
        return pb.ConfigValue(bool_list=pb.BoolList(values=items))
    if isinstance(first, int):
        return pb.ConfigValue(sint_list=pb.SintList(values=_ints("ConfigRecord", key, items)))
    if isinstance(first, float):
        return pb.ConfigValue(double_list=pb.DoubleList(values=items))
    if isinstance(first, bytes):
        return pb.ConfigValue(bytes_list=pb.BytesList(values=items))
    # str lists, and empty lists (any list kind decodes to []).
    return pb.ConfigValue(string_list=pb.StringList(values=items))


def _config_value_from_proto(kind: str, value: Any) -> ConfigValue:
    if kind == "double":
        return float(value)
    if kind in ("sint64", "bool", "string", "bytes"):
        scalar: ConfigValue = value
        return scalar
    if kind == "double_list":
        return [float(v) for v in value.values]
    values: ConfigValue = list(value.values)
    return values


def config_record_to_proto(record: ConfigRecord) -> pb.ConfigRecord:
    return pb.ConfigRecord(
        items=[
            pb.ConfigItem(key=key, value=_config_value_to_proto(key, value))
            for key, value in record.items()
        ]
    )


def config_record_from_proto(record: pb.ConfigRecord) -> ConfigRecord:
    values: dict[str, ConfigValue] = {}
    for item in record.items:
        if item.value is None:
            raise InvalidMessageError(f"ConfigRecord[{item.key!r}] has no value")
        values[item.key] = _config_value_from_proto(*_oneof(item.value, "value"))
    _check_keys("ConfigRecord", [item.key for item in record.items])
    return ConfigRecord(values)


# --- user config, runs, nodes ----------------------------------------------------------

_USER_CONFIG_KINDS = ("bool", "sint64", "double", "string")


def user_config_to_proto(config: UserConfig) -> pb.ConfigRecord:
    """A run or node config on the wire: bool, int, float and str values only."""
    for key, value in config.items():
        if not isinstance(value, bool | int | float | str):
            raise ConfigError(
                f"config value {key}={value!r} is a {type(value).__name__}; "
                "allowed: bool, int, float, str"
            )
    return pb.ConfigRecord(
        items=[
            pb.ConfigItem(key=key, value=_config_value_to_proto(key, value))
            for key, value in config.items()
        ]
    )


def user_config_from_proto(record: pb.ConfigRecord | None) -> UserConfig:
    """A received run or node config (absent = empty); other value kinds are rejected."""
    if record is None:
        return {}
    check_proto(record)
    config: UserConfig = {}
    for item in record.items:
        if item.value is None:
            raise InvalidMessageError(f"config value {item.key!r} is empty")
        kind, value = _oneof(item.value, "value")
        if kind not in _USER_CONFIG_KINDS:
            raise InvalidMessageError(
                f"config value {item.key!r} is a {kind}; allowed: bool, int, float, str"
            )
        user_value: UserConfigValue = float(value) if kind == "double" else value
        config[item.key] = user_value
    _check_keys("config", [item.key for item in record.items])
    return config


def run_to_proto(run: Run) -> pb.Run:
    return pb.Run(
        run_id=run.run_id,
        server_app=run.server_app,
        client_app=run.client_app,
        run_config=user_config_to_proto(run.run_config),
        status=_run_status(run.status),
        sub_status=run.sub_status,
        details=run.details,
        created_at=float(run.created_at),
        started_at=float(run.started_at),
        finished_at=float(run.finished_at),
        bundle=run.bundle,
    )


def _run_status(value: str) -> RunStatus:
    try:
        return RunStatus(value)
    except ValueError:
        known = ", ".join(RunStatus)
        raise InvalidMessageError(f"run status {value!r} is not one of {known}") from None


def run_from_proto(run: pb.Run) -> Run:
    check_proto(run)
    return Run(
        run_id=run.run_id,
        server_app=run.server_app,
        client_app=run.client_app,
        run_config=user_config_from_proto(run.run_config),
        status=_run_status(run.status),
        sub_status=run.sub_status,
        details=run.details,
        created_at=float(run.created_at),
        started_at=float(run.started_at),
        finished_at=float(run.finished_at),
        bundle=run.bundle,
    )


def node_to_proto(node: Node) -> pb.Node:
    return pb.Node(
        node_id=node.node_id,
        node_config=user_config_to_proto(node.node_config),
        online=node.online,
        last_heartbeat=float(node.last_heartbeat),
        registered_at=float(node.registered_at),
    )


def node_from_proto(node: pb.Node) -> Node:
    check_proto(node)
    return Node(
        node_id=node.node_id,
        node_config=user_config_from_proto(node.node_config),
        online=node.online,
        last_heartbeat=float(node.last_heartbeat),
        registered_at=float(node.registered_at),
    )
