"""The error table (`stamen.transport.errors`) over gRPC: a `Failure` in the status details.

Server side: `grpc_errors()` raises what a handler raised as `GRPCError(status, message,
failure)`, and `FailureCodec` writes the failure's name and typed fields to the trailing
`grpc-status-details-bin` header, as JSON. Client side: the channel's `FailureCodec`
reads them back and `from_grpc()` turns the status into the class the table names. A
status without readable details (another server, a proxy) arrives as its status's class.
"""

from __future__ import annotations

import json
from typing import Any

from grpclib.const import Status
from grpclib.encoding.base import StatusDetailsCodecBase
from grpclib.exceptions import GRPCError

from stamen.common.errors import StamenError
from stamen.common.status import StatusCode
from stamen.transport.errors import Failure, as_over_wire, failure_of, raised

__all__ = ["FailureCodec", "as_grpc", "from_grpc", "grpc_errors"]


def as_grpc(error: StamenError) -> GRPCError:
    """`error` as the `GRPCError` that carries it (for code outside a handler's block)."""
    return _grpc(failure_of(error))


def _grpc(sent: Failure) -> GRPCError:
    return GRPCError(Status(sent.status.value), sent.message, sent)


def from_grpc(exc: GRPCError) -> StamenError:
    """The Stamen error a caller sees for a status it received."""
    details = exc.details if isinstance(exc.details, Failure) else None
    status = StatusCode(exc.status.value)
    if details is None:
        return raised(Failure(status, exc.message or ""))
    return raised(Failure(status, exc.message or "", details.error, details.fields))


class grpc_errors(as_over_wire):
    """Server side: raise what the handler raised as the `GRPCError` the table names
    (one that is a `GRPCError` already passes through)."""

    __slots__ = ()

    def _passes(self, exc: Exception) -> bool:
        return isinstance(exc, GRPCError)

    def _converted(self, sent: Failure) -> Exception:
        return _grpc(sent)


class FailureCodec(StatusDetailsCodecBase):
    """A `Failure`'s name and fields as JSON in the status details; servers and channels
    both use it."""

    def encode(self, status: Status, message: str | None, details: Any) -> bytes:
        if not isinstance(details, Failure):
            raise TypeError(f"status details must be a Failure, not {type(details).__name__}")
        return json.dumps({"error": details.error, "fields": dict(details.fields)}).encode()

    def decode(self, status: Status, message: str | None, data: bytes) -> Failure | None:
        try:
            sent = json.loads(data)
        except ValueError:
            return None  # details this codec did not write: the status alone counts
        if not isinstance(sent, dict):
            return None
        error, fields = sent.get("error"), sent.get("fields")
        if not isinstance(error, str) or not isinstance(fields, dict):
            return None
        return Failure(StatusCode(status.value), message or "", error, fields)
