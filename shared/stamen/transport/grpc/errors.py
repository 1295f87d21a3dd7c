"""The one table between Stamen's errors and gRPC statuses, used in both directions.

Server side: `grpc_errors()` turns a `StamenError` into `GRPCError(exc.status, str(exc))`
and any other exception into `INTERNAL`, logged once with its traceback. Client side:
`from_grpc()` turns a status back into the class the table names for it, so callers catch
the same classes whichever transport carries them. Subclasses carrying data are rebuilt
from their message where callers act on them (`NodeNotFoundError(node_id)`: the node
re-registers); others arrive as their status's class (`NotFoundError`) with the same
message. The memory transport raises its errors the same way (`as_over_grpc`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from types import TracebackType
from typing import Final, Literal

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from stamen.common.errors import (
    InvalidMessageError,
    MessageTooLargeError,
    NodeNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    RunNotRunningError,
    StamenError,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = ["as_over_grpc", "from_grpc", "grpc_errors"]

logger = logging.getLogger(__name__)

_TOO_LARGE: Final = re.compile(r"of (\d+) bytes exceeds the limit of (\d+) bytes")
_NOT_RUNNING: Final = re.compile(r"^run (\d+) is (\S+)$")
_NODE_NOT_FOUND: Final = re.compile(r"^node (\d+) is not registered$")


def _message_too_large(message: str) -> StamenError:
    match = _TOO_LARGE.search(message)
    if match is None:
        return StamenError(message)
    return MessageTooLargeError(int(match[1]), int(match[2]))


def _run_not_running(message: str) -> StamenError:
    match = _NOT_RUNNING.match(message)
    if match is None:
        return StamenError(message)
    return RunNotRunningError(int(match[1]), match[2])


def _not_found(message: str) -> StamenError:
    match = _NODE_NOT_FOUND.match(message)
    if match is None:
        return NotFoundError(message)
    return NodeNotFoundError(int(match[1]))


_FROM_STATUS: Final[dict[Status, Callable[[str], StamenError]]] = {
    Status.INVALID_ARGUMENT: InvalidMessageError,
    Status.NOT_FOUND: _not_found,
    Status.PERMISSION_DENIED: PermissionDeniedError,
    Status.UNAUTHENTICATED: UnauthenticatedError,
    Status.RESOURCE_EXHAUSTED: _message_too_large,
    Status.FAILED_PRECONDITION: _run_not_running,
    Status.UNAVAILABLE: UnavailableError,
    Status.DEADLINE_EXCEEDED: UnavailableError,
}
"""Status -> the error a caller receives. The other direction is each class's `status`."""


def from_grpc(exc: GRPCError) -> StamenError:
    """The Stamen error a caller sees for a status it received."""
    message = exc.message or exc.status.name.lower().replace("_", " ")
    return _FROM_STATUS.get(exc.status, StamenError)(message)


class grpc_errors:
    """Server side: raise what the handler raised as the `GRPCError` the table names.

    A class, not a generator: the memory transport holds one open through every long-poll,
    and 10,000 idle virtual nodes each hold one (a generator-based one cost ~7 MiB there).
    """

    __slots__ = ("method",)

    def __init__(self, method: str) -> None:
        self.method = method

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is None or isinstance(exc, GRPCError) or not isinstance(exc, Exception):
            return False  # CancelledError and other BaseExceptions pass through untouched
        raise _as_grpc(self.method, exc) from exc


class as_over_grpc(grpc_errors):
    """Raise what the block raises as a caller over gRPC would receive it.

    The memory transport runs handler calls in this, so that both transports raise the
    same classes with the same messages, through the same table.
    """

    __slots__ = ()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, Exception):
            return False
        if isinstance(exc, GRPCError):
            raise from_grpc(exc) from exc.__cause__
        raise from_grpc(_as_grpc(self.method, exc)) from exc


def _as_grpc(method: str, exc: Exception) -> GRPCError:
    if isinstance(exc, StamenError):
        logger.debug("%s failed: %s", method, exc)
        return GRPCError(exc.status, str(exc))
    logger.error("%s failed unexpectedly", method, exc_info=exc)
    return GRPCError(Status.INTERNAL, f"internal error in {method}")
