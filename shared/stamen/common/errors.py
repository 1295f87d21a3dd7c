"""The error hierarchy: one root, subclasses say whose fault it is and carry their data.

Each class names the status it maps to (`StatusCode`, gRPC's numbers) and keeps its data
as attributes (`fields()`), which travel beside the message; `stamen.transport.errors`
holds the one table that turns them into what a caller receives.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, TypeVar

from .status import StatusCode

__all__ = [
    "AggregationError",
    "AppLoadError",
    "ClientAppError",
    "ConfigError",
    "InconsistentMessageReplies",
    "IntegrityError",
    "InvalidMessageError",
    "MessageContentError",
    "MessageNotFoundError",
    "MessageTooLargeError",
    "NodeNotFoundError",
    "NodeReplyError",
    "NotEnoughNodesError",
    "NotFoundError",
    "ObjectNotFoundError",
    "PermissionDeniedError",
    "RequestTooLargeError",
    "ResourceExhaustedError",
    "RoundFailedError",
    "RunLeaseHeldError",
    "RunNotFoundError",
    "RunNotRunningError",
    "ServerAppError",
    "StamenError",
    "StorageFaultError",
    "StorageFullError",
    "TransientError",
    "UnauthenticatedError",
    "UnavailableError",
    "UserInputError",
    "WorkerDiedError",
]


class StamenError(Exception):
    """Root of every error Stamen raises on purpose."""

    status: ClassVar[StatusCode] = StatusCode.INTERNAL

    def fields(self) -> dict[str, Any]:
        """The error's data (`NodeNotFoundError(7)` -> `{"node_id": 7}`)."""
        return dict(self.__dict__)

    @classmethod
    def rebuild(cls, message: str, fields: dict[str, Any]) -> Self:
        """The error with this message and these fields, without its `__init__`:
        subclasses take their data, not the message, there."""
        return _rebuild(cls, (message,), fields)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the message and fields, so errors cross process boundaries.
        return (_rebuild, (type(self), self.args, self.__dict__))


_E = TypeVar("_E", bound=StamenError)


def _rebuild(cls: type[_E], args: tuple[Any, ...], state: dict[str, Any]) -> _E:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class UserInputError(StamenError):
    """Something a user gave (a flag, a file, an app reference, a value) is not usable."""

    status = StatusCode.INVALID_ARGUMENT


class ConfigError(UserInputError):
    """A configuration value (flag, environment variable, run/node config) is invalid."""


class AppLoadError(UserInputError):
    """A `module:attribute` app reference does not resolve to an app of the right kind."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"cannot load app {reference!r}: {reason}")
        self.reference = reference
        self.reason = reason


class InvalidMessageError(StamenError):
    """A request or message is malformed or violates the protocol."""

    status = StatusCode.INVALID_ARGUMENT


class MessageContentError(InvalidMessageError, ValueError):
    """A message's content read where it carries an error, or its error where it carries
    content (a ValueError too, as in Flower)."""


class IntegrityError(InvalidMessageError):
    """Object bytes do not match their content hash, or chunks are missing."""


class MessageTooLargeError(StamenError):
    """A message is larger than the per-message cap."""

    status = StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class RequestTooLargeError(StamenError):
    """A request exceeds a bound other than the message cap (its headers, say)."""

    status = StatusCode.RESOURCE_EXHAUSTED


class NotFoundError(StamenError):
    """Something named by id does not exist."""

    status = StatusCode.NOT_FOUND


class NodeNotFoundError(NotFoundError):
    def __init__(self, node_id: int) -> None:
        super().__init__(f"node {node_id} is not registered")
        self.node_id = node_id


class RunNotFoundError(NotFoundError):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} does not exist")
        self.run_id = run_id


class MessageNotFoundError(NotFoundError):
    def __init__(self, message_id: str) -> None:
        super().__init__(f"message {message_id!r} does not exist")
        self.message_id = message_id


class ObjectNotFoundError(NotFoundError):
    def __init__(self, object_id: str) -> None:
        super().__init__(f"object {object_id!r} is not in the store")
        self.object_id = object_id


class PermissionDeniedError(StamenError):
    """A caller acts on something that is not addressed to it."""

    status = StatusCode.PERMISSION_DENIED


class UnauthenticatedError(UserInputError):
    """A caller's credentials are missing, unknown, revoked or invalid: retrying with the
    same ones cannot help (a SuperNode exits 2 on it)."""

    status = StatusCode.UNAUTHENTICATED


class RunNotRunningError(StamenError):
    """A run is finished (or stopped) and takes no more messages."""

    status = StatusCode.FAILED_PRECONDITION

    def __init__(self, run_id: int, status: str) -> None:
        super().__init__(f"run {run_id} is {status}")
        self.run_id = run_id
        self.run_status = status


class TransientError(StamenError):
    """A failure on the SuperLink's side that may pass (a fault it logged, storage that
    is full or failing, a restart): callers retry with backoff and never give up on it
    unless told to. A caller receives an `INTERNAL` status as this class."""


class RunLeaseHeldError(StamenError):
    """Another ServerApp runner holds the run's lease: two runners never drive one run."""

    status = StatusCode.FAILED_PRECONDITION

    def __init__(self, run_id: int, remaining: float) -> None:
        super().__init__(
            f"run {run_id} is driven by another ServerApp runner (its lease runs "
            f"{remaining:.0f}s more): stop that runner, or wait until its lease lapses"
        )
        self.run_id = run_id
        self.remaining = remaining


class UnavailableError(TransientError):
    """The SuperLink cannot be reached (or went away) within the allowed time."""

    status = StatusCode.UNAVAILABLE


class ResourceExhaustedError(TransientError):
    """The SuperLink is out of a resource (storage space) for now; retry later. A caller
    receives a `RESOURCE_EXHAUSTED` status that is not a size limit as this class."""

    status = StatusCode.RESOURCE_EXHAUSTED


class StorageFullError(ResourceExhaustedError):
    """The SuperLink's storage has no space left: writes fail until space returns."""

    def __init__(self, location: str, cause: str) -> None:
        super().__init__(
            f"SuperLink storage is full: cannot write to {location} ({cause}); free space on "
            "that volume and the SuperLink carries on by itself"
        )
        self.location = location
        self.cause = cause


class StorageFaultError(UnavailableError):
    """The SuperLink's storage refuses writes or reads for now (read-only, I/O error,
    locked by another process); `problem` says which."""

    def __init__(self, problem: str, location: str, cause: str, hint: str) -> None:
        super().__init__(f"SuperLink storage is {problem}: {location} ({cause}); {hint}")
        self.problem = problem
        self.location = location
        self.cause = cause
        self.hint = hint


class ClientAppError(StamenError):
    """User code in a ClientApp raised; carries the type, message and traceback text."""

    status = StatusCode.UNKNOWN


class AggregationError(StamenError):
    """Replies cannot be aggregated (for example, array shapes disagree)."""

    status = StatusCode.FAILED_PRECONDITION


class InconsistentMessageReplies(AggregationError):
    """Replies do not have the records a Message-API strategy aggregates (Flower's name)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotEnoughNodesError(StamenError):
    """Fewer nodes than a strategy needs came online within the allowed wait."""

    status = StatusCode.UNAVAILABLE

    def __init__(self, required: int, available: int, waited: float) -> None:
        super().__init__(
            f"only {available} of the {required} nodes needed are online after waiting "
            f"{waited:g}s: start more SuperNodes, lower the strategy's minimum "
            "(min_available_clients, min_fit_clients, ...), or raise the run config's "
            "'min-available-timeout' (stamen-serverapp --node-wait-timeout)"
        )
        self.required = required
        self.available = available
        self.waited = waited


class NodeReplyError(StamenError):
    """A node answered an instruction with an error, or not at all in time."""

    status = StatusCode.UNAVAILABLE

    def __init__(self, node_id: int, reason: str) -> None:
        named = reason.startswith(f"node {node_id} ")  # "node 7 went offline"
        super().__init__(reason if named else f"node {node_id}: {reason}")
        self.node_id = node_id
        self.reason = reason


class RoundFailedError(StamenError):
    """A round failed: every node failed (no result to aggregate), more than the run's
    `max-failure-rate` did, or any did and the strategy does not accept failures."""

    status = StatusCode.ABORTED

    def __init__(
        self,
        server_round: int,
        phase: str,
        reasons: list[str],
        why: str = "the strategy does not accept failures (accept_failures=False)",
    ) -> None:
        shown = "; ".join(reasons[:3]) + (
            f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
        )
        super().__init__(
            f"round {server_round} ({phase}) stopped: {len(reasons)} node(s) failed and {why}: "
            f"{shown}"
        )
        self.server_round = server_round
        self.phase = phase
        self.reasons = reasons


class WorkerDiedError(StamenError):
    """The process running a ClientApp died (crash, OOM kill, exit) before it answered."""

    status = StatusCode.UNAVAILABLE

    def __init__(self, reason: str) -> None:
        super().__init__(f"the ClientApp worker process died: {reason}")
        self.reason = reason


class ServerAppError(StamenError):
    """User code in a ServerApp raised; `details` is one line naming the error."""

    status = StatusCode.UNKNOWN

    def __init__(self, run_id: int, details: str) -> None:
        super().__init__(f"the ServerApp of run {run_id} failed: {details}")
        self.run_id = run_id
        self.details = details
