"""The status a failed call ends with: gRPC's canonical codes, as a plain `IntEnum`.

Errors name their status here rather than in grpclib's own enum (same numbers), so that
the error hierarchy and the memory transport need no gRPC library.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["StatusCode"]


class StatusCode(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16
