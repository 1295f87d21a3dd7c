"""Contained fixes to h2 as grpclib drives it: streams of ~1 MiB chunks, small calls.

1. h2 logs each received frame with `logger.trace("Received frame: %s", repr(frame))`:
   the `repr` is built eagerly even though the default logger discards it, and for a DATA
   frame it re-serializes and hex-encodes the whole body (measured: ~30% of the CPU of a
   chunk stream). The override describes a DATA frame by its length instead.
2. grpclib keeps HTTP/2's default 16 KiB frames, so each 1 MiB chunk travels as 64 frames,
   each parsed, flow-controlled and copied on its own. Each connection now advertises a
   maximum frame size to its peer that holds a whole chunk message (a chunk, its protobuf
   fields and gRPC's 5-byte prefix): one frame per chunk, sent without grpclib slicing
   (copying) the message into a full frame and a tail of a few bytes (measured with
   benchmarks/superlink_bench.py: the SuperLink's user CPU per MiB down ~35% from 16 KiB
   frames). It changes framing only, never the bytes.
3. hyperframe copies each DATA frame's payload into a new body even when the frame has no
   padding (`b"".join([b"", data, b""])`); the override sends the payload as it is then.
4. h2 drops the whole connection, with no status, when a header list decodes to more than
   64 KiB. Each connection now decodes up to `MAX_DECODED_HEADERS` (1 MiB, still bounded),
   so that the server can refuse just that request with RESOURCE_EXHAUSTED (`guard`).
5. grpclib writes each frame group to the socket at once: a unary call costs its server
   three `send` calls. Each connection's transport is now a `CoalescingTransport`, which
   sends a turn's small writes together (the same bytes, fewer system calls).

`install()` is idempotent and is called by the code that creates gRPC servers and channels.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from grpclib.protocol import H2Protocol
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame

from stamen.codec.objects import CHUNK_SIZE

from .coalesce import CoalescingTransport

__all__ = ["MAX_DECODED_HEADERS", "MAX_FRAME_SIZE", "install", "installed"]

MAX_FRAME_SIZE = CHUNK_SIZE + (64 << 10)
"""What each side asks its peer to send at most per frame (HTTP/2 allows up to 16 MiB):
an object chunk's whole message with room to spare."""

MAX_DECODED_HEADERS = 1 << 20
"""The most header bytes a connection decodes for one request before it gives up on the
connection (past `guard.MAX_HEADER_LIST_SIZE` the request itself is refused)."""

_connection_made = H2Protocol.connection_made
_serialize_data_body = DataFrame.serialize_body


def _data_frame_body_repr(self: DataFrame) -> str:
    return f"<{len(self.data)} bytes>"


def _data_frame_body(self: DataFrame) -> bytes:
    if type(self.data) is bytes and "PADDED" not in self.flags:
        return self.data
    return _serialize_data_body(self)


def _connection_made_with_large_frames(self: H2Protocol, transport: asyncio.BaseTransport) -> None:
    _connection_made(self, CoalescingTransport(cast(asyncio.Transport, transport)))
    connection: Any = self.connection
    connection._connection.update_settings({SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE})
    connection._connection.decoder.max_header_list_size = MAX_DECODED_HEADERS
    connection.flush()


def install() -> None:
    """Apply the fixes (once per process)."""
    DataFrame._body_repr = _data_frame_body_repr  # type: ignore[method-assign,assignment]
    DataFrame.serialize_body = _data_frame_body  # type: ignore[method-assign]
    H2Protocol.connection_made = _connection_made_with_large_frames  # type: ignore[method-assign]


def installed() -> bool:
    return (
        DataFrame._body_repr is _data_frame_body_repr
        and DataFrame.serialize_body is _data_frame_body
        and H2Protocol.connection_made is _connection_made_with_large_frames
    )
