"""The one table between Stamen's errors and what a caller receives, for both transports.

A failed call ends in a `Failure`: a status (gRPC's numbers), the message, and the error's
name with its typed fields. Server side, `failure()` builds it; anything that is not a
`StamenError` becomes `INTERNAL`, logged once with its traceback. Client side,
`raised()` turns it into the class a caller catches: the errors callers act on are
rebuilt from their fields (`NodeNotFoundError(node_id)`: the node re-registers), the
others arrive as their status's class (`NotFoundError`) with the same message.
`INTERNAL`, `UNAVAILABLE`, `DEADLINE_EXCEEDED` and a `RESOURCE_EXHAUSTED` that is not a
size limit (a full disk) arrive as `TransientError`s, which SuperNodes and runners retry.
gRPC carries a `Failure` in its status details (`stamen.transport.grpc.errors`); the memory
transport passes it through `as_over_wire`, so both raise the same classes and messages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Literal

from stamen.common.errors import (
    InvalidMessageError,
    MessageTooLargeError,
    NodeNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    RunLeaseHeldError,
    RunNotRunningError,
    StamenError,
    TransientError,
    UnauthenticatedError,
    UnavailableError,
)
from stamen.common.status import StatusCode

__all__ = ["Failure", "FieldValue", "as_over_wire", "failure", "failure_of", "raised"]

logger = logging.getLogger(__name__)

FieldValue = int | float | str
"""What an error's field may hold on the wire (others stay behind)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """How a call failed, as it crosses a transport: data, not prose to parse."""

    status: StatusCode
    message: str
    error: str = ""
    """The error's class name ("" for an unexpected exception)."""
    fields: Mapping[str, FieldValue] = field(default_factory=dict)


_REBUILT: Final[dict[str, tuple[type[StamenError], dict[str, type[FieldValue]]]]] = {
    "NodeNotFoundError": (NodeNotFoundError, {"node_id": int}),
    "MessageTooLargeError": (MessageTooLargeError, {"size": int, "limit": int}),
    "RunNotRunningError": (RunNotRunningError, {"run_id": int, "run_status": str}),
    "RunLeaseHeldError": (RunLeaseHeldError, {"run_id": int, "remaining": float}),
}
"""The errors a caller acts on, rebuilt with their fields (name -> class, field types)."""

_BY_STATUS: Final[dict[StatusCode, type[StamenError]]] = {
    StatusCode.INVALID_ARGUMENT: InvalidMessageError,
    StatusCode.NOT_FOUND: NotFoundError,
    StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    StatusCode.UNAVAILABLE: UnavailableError,
    StatusCode.DEADLINE_EXCEEDED: UnavailableError,
    StatusCode.INTERNAL: TransientError,
}
"""Status -> the error a caller receives otherwise. The other way is each class's `status`."""


def failure_of(error: StamenError) -> Failure:
    """`error` as it crosses the wire: its status, message, name and scalar fields."""
    fields = {
        name: value
        for name, value in error.fields().items()
        if isinstance(value, int | float | str) and not isinstance(value, bool)
    }
    return Failure(error.status, str(error), type(error).__name__, fields)


def failure(method: str, exc: Exception) -> Failure:
    """Server side: what a call to `method` that raised `exc` ends with."""
    if isinstance(exc, StamenError):
        logger.debug("%s failed: %s", method, exc)
        return failure_of(exc)
    logger.error("%s failed unexpectedly", method, exc_info=exc)
    return Failure(StatusCode.INTERNAL, f"internal error in {method}")


def raised(received: Failure) -> StamenError:
    """Client side: the Stamen error a caller sees for a failure it received."""
    message = received.message or received.status.name.lower().replace("_", " ")
    cls, types = _REBUILT.get(received.error, (None, {}))
    if cls is not None and cls.status == received.status:
        fields = {name: _typed(received.fields.get(name), kind) for name, kind in types.items()}
        if None not in fields.values():
            return cls.rebuild(message, fields)
    return _BY_STATUS.get(received.status, StamenError)(message)


def _typed(value: FieldValue | None, kind: type[FieldValue]) -> FieldValue | None:
    """`value` as `kind`, from itself or from its text (gRPC sends fields as text)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and kind is not str:
        try:
            return kind(value)
        except ValueError:
            return None
    if kind is float and isinstance(value, int):
        return float(value)
    return value if isinstance(value, kind) else None


class as_over_wire:
    """Raise what the block raises as a caller over gRPC would receive it.

    The memory transport runs handler calls in this; `grpc_errors` is the same block on
    a gRPC server, raising the `GRPCError` that carries the failure. A class, not a
    generator: it is held open through every long-poll, and 10,000 idle virtual nodes
    each hold one (a generator-based one cost ~7 MiB there).
    """

    __slots__ = ("method",)

    def __init__(self, method: str) -> None:
        self.method = method

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, Exception) or self._passes(exc):
            return False  # CancelledError and other BaseExceptions pass through untouched
        raise self._converted(failure(self.method, exc)) from exc

    def _passes(self, exc: Exception) -> bool:
        return False

    def _converted(self, sent: Failure) -> Exception:
        return raised(sent)
