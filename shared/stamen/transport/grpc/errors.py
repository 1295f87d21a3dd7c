"""The error table (`stamen.transport.errors`) over gRPC: a `Failure` in the status details.

Server side: `grpc_errors()` raises what a handler raised as `GRPCError(status, message,
failure)`, and `FailureCodec` writes the failure's name and fields to the trailing
`grpc-status-details-bin` header, in gRPC's rich error model. Client side: the channel's
`FailureCodec` reads them back and `from_grpc()` turns the status into the class the
table names. A status without readable details (another server, a proxy) arrives as its
status's class.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf.message import DecodeError
from grpclib.const import Status
from grpclib.encoding.base import StatusDetailsCodecBase
from grpclib.exceptions import GRPCError

from stamen.common.errors import StamenError
from stamen.common.status import StatusCode
from stamen.transport.errors import Failure, as_over_wire, failure_of, raised

from .richstatus import ErrorInfo, RpcStatus

__all__ = ["DOMAIN", "FailureCodec", "as_grpc", "from_grpc", "grpc_errors"]

DOMAIN: Final = "stamen"
"""The `ErrorInfo.domain` of the failures Stamen sends."""


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
    """A `Failure` as gRPC's rich status: a `google.rpc.Status` whose one detail is a
    `google.rpc.ErrorInfo` (reason: the error's name, domain "stamen", metadata: its
    fields as text, typed again by the table). Servers and channels both use it."""

    def encode(self, status: Status, message: str | None, details: Any) -> bytes:
        if not isinstance(details, Failure):
            raise TypeError(f"status details must be a Failure, not {type(details).__name__}")
        rich = RpcStatus(code=status.value, message=message or "")
        fields = {name: str(value) for name, value in details.fields.items()}
        rich.details.add().Pack(ErrorInfo(reason=details.error, domain=DOMAIN, metadata=fields))
        return bytes(rich.SerializeToString())

    def decode(self, status: Status, message: str | None, data: bytes) -> Failure | None:
        try:
            rich = RpcStatus.FromString(data)
        except DecodeError:
            return None  # not a rich status: the status alone counts
        info = ErrorInfo()
        for detail in rich.details:
            if detail.Unpack(info) and info.domain == DOMAIN:
                return Failure(
                    StatusCode(status.value), message or "", info.reason, dict(info.metadata)
                )
        return None
