"""gRPC's rich error model, `google.rpc.Status` carrying a `google.rpc.ErrorInfo`, built
from descriptors at import: protobuf ships neither, and a private pool keeps them from
clashing with a copy another library registers."""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

__all__ = ["ErrorInfo", "RpcStatus"]

_F = descriptor_pb2.FieldDescriptorProto


def _field(
    message: Any, name: str, number: int, kind: int, of: str = "", *, repeated: bool = False
) -> None:
    label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if of:
        field.type_name = of


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="google/rpc/stamen_rich_status.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto"],
    )
    status = file.message_type.add(name="Status")
    _field(status, "code", 1, _F.TYPE_INT32)
    _field(status, "message", 2, _F.TYPE_STRING)
    _field(status, "details", 3, _F.TYPE_MESSAGE, ".google.protobuf.Any", repeated=True)
    info = file.message_type.add(name="ErrorInfo")
    entry = info.nested_type.add(name="MetadataEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_STRING)
    _field(info, "reason", 1, _F.TYPE_STRING)
    _field(info, "domain", 2, _F.TYPE_STRING)
    _field(
        info, "metadata", 3, _F.TYPE_MESSAGE, ".google.rpc.ErrorInfo.MetadataEntry", repeated=True
    )
    return file


_pool = descriptor_pool.DescriptorPool()
_pool.Add(descriptor_pb2.FileDescriptorProto.FromString(any_pb2.DESCRIPTOR.serialized_pb))
_pool.Add(_file())

RpcStatus: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName("google.rpc.Status"))
ErrorInfo: Any = message_factory.GetMessageClass(
    _pool.FindMessageTypeByName("google.rpc.ErrorInfo")
)
