"""The one error table: every StamenError survives the trip to gRPC and back as its
status's class, with its message; anything else becomes INTERNAL, logged once."""

from __future__ import annotations

import logging

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from stamen.common.errors import (
    ConfigError,
    IntegrityError,
    InvalidMessageError,
    MessageTooLargeError,
    NodeNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    RunNotFoundError,
    RunNotRunningError,
    StamenError,
    StorageFaultError,
    StorageFullError,
    TransientError,
    UnavailableError,
)
from stamen.transport.errors import as_over_wire
from stamen.transport.grpc.errors import from_grpc, grpc_errors


def _server_side(exc: Exception) -> GRPCError:
    with pytest.raises(GRPCError) as caught, grpc_errors("Fleet.Test"):
        raise exc
    return caught.value


@pytest.mark.parametrize(
    ("raised", "status", "received"),
    [
        (NodeNotFoundError(7), Status.NOT_FOUND, NodeNotFoundError),
        (RunNotFoundError(3), Status.NOT_FOUND, NotFoundError),
        (ObjectNotFoundError("ab"), Status.NOT_FOUND, NotFoundError),
        (PermissionDeniedError("not yours"), Status.PERMISSION_DENIED, PermissionDeniedError),
        (InvalidMessageError("bad"), Status.INVALID_ARGUMENT, InvalidMessageError),
        (IntegrityError("hash"), Status.INVALID_ARGUMENT, InvalidMessageError),
        (ConfigError("bad config"), Status.INVALID_ARGUMENT, InvalidMessageError),
        (UnavailableError("gone"), Status.UNAVAILABLE, UnavailableError),
        (MessageTooLargeError(20, 10), Status.RESOURCE_EXHAUSTED, MessageTooLargeError),
        (RunNotRunningError(4, "finished"), Status.FAILED_PRECONDITION, RunNotRunningError),
        (StamenError("odd"), Status.INTERNAL, TransientError),
        (
            StorageFullError("state.db", "disk full"),
            Status.RESOURCE_EXHAUSTED,
            ResourceExhaustedError,
        ),
        (
            StorageFaultError("read-only", "state.db", "readonly", "make it writable"),
            Status.UNAVAILABLE,
            UnavailableError,
        ),
    ],
)
def test_a_stamen_error_crosses_as_its_status_class(
    raised: StamenError, status: Status, received: type[StamenError]
) -> None:
    wire = _server_side(raised)
    assert wire.status == status
    assert wire.message == str(raised)
    back = from_grpc(wire)
    assert type(back) is received
    assert str(back) == str(raised)


def test_data_carrying_errors_are_rebuilt_with_their_data() -> None:
    too_large = from_grpc(_server_side(MessageTooLargeError(20, 10)))
    assert isinstance(too_large, MessageTooLargeError)
    assert (too_large.size, too_large.limit) == (20, 10)
    not_running = from_grpc(_server_side(RunNotRunningError(4, "finished")))
    assert isinstance(not_running, RunNotRunningError)
    assert (not_running.run_id, not_running.run_status) == (4, "finished")


def test_statuses_from_elsewhere_still_map_to_a_stamen_error() -> None:
    assert type(from_grpc(GRPCError(Status.RESOURCE_EXHAUSTED, "quota"))) is ResourceExhaustedError
    assert type(from_grpc(GRPCError(Status.INTERNAL))) is TransientError
    assert type(from_grpc(GRPCError(Status.DEADLINE_EXCEEDED))) is UnavailableError
    assert str(from_grpc(GRPCError(Status.UNIMPLEMENTED))) == "unimplemented"


def test_an_unexpected_exception_is_internal_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        wire = _server_side(KeyError("boom"))
    assert wire.status == Status.INTERNAL
    assert "boom" not in (wire.message or "")  # no internals leak to the caller
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_the_memory_transport_raises_what_grpc_clients_raise() -> None:
    with pytest.raises(NotFoundError) as caught, as_over_wire("Fleet.Test"):
        raise NodeNotFoundError(7)
    assert type(caught.value) is NodeNotFoundError
    assert caught.value.node_id == 7
    assert str(caught.value) == "node 7 is not registered"
    assert isinstance(caught.value.__cause__, NodeNotFoundError)
