"""The per-message size cap and malformed-input handling, as a grpclib codec.

grpclib has no message-size limit of its own and reports undecodable bytes as `UNKNOWN`.
Every Stamen server and channel uses `BoundedProtoCodec`, so a message over
`MAX_MESSAGE_SIZE` is refused with `RESOURCE_EXHAUSTED` on whichever side meets it
(a sender fails before anything is sent) and bytes that do not decode are refused with
`INVALID_ARGUMENT` (parsed and checked by `stamen.codec.proto.parse_proto`, because
betterproto2 itself accepts much that does not fit the schema); the connection keeps
serving. grpclib buffers a received message whole before handing it to the codec, so the
cap bounds what is processed, not what a hostile peer can make the process buffer for one
message. Large payloads never come near the cap: objects travel as streams of ~1 MiB
chunks (see `stamen.codec.objects`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import betterproto2
from grpclib.encoding.proto import ProtoCodec

from stamen.codec.objects import MAX_MESSAGE_SIZE
from stamen.codec.proto import parse_proto
from stamen.common.errors import InvalidMessageError, MessageTooLargeError
from stamen.proto.stamen import v1 as pb

from .chunkwire import Unsupported, decode_chunk, encode_chunk
from .errors import as_grpc

__all__ = ["MAX_MESSAGE_SIZE", "BoundedProtoCodec"]


class BoundedProtoCodec(ProtoCodec):
    """`ProtoCodec` that enforces a message-size cap and reports bad bytes as such."""

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size

    def encode(self, message: Any, message_type: type[Any]) -> bytes:
        data: bytes | None = None
        if message_type is pb.ObjectChunk and isinstance(message, pb.ObjectChunk):
            with contextlib.suppress(Unsupported):
                data = encode_chunk(message)
        if data is None:
            data = super().encode(message, message_type)
        self._check_size(len(data))
        return data

    def decode(self, data: bytes, message_type: type[Any]) -> Any:
        self._check_size(len(data))
        if message_type is pb.ObjectChunk:
            with contextlib.suppress(Unsupported):
                return decode_chunk(data)
        try:
            if issubclass(message_type, betterproto2.Message):
                return parse_proto(message_type, data)
            return super().decode(data, message_type)  # the health service's messages
        except InvalidMessageError as exc:
            raise as_grpc(exc) from exc
        except Exception as exc:  # protobuf's DecodeError
            name = message_type.__name__
            raise as_grpc(InvalidMessageError(f"malformed {name}: {exc}")) from exc

    def _check_size(self, size: int) -> None:
        if size > self.max_message_size:
            error = MessageTooLargeError(size, self.max_message_size)
            raise as_grpc(error)
