"""Errors carry data, not prose: a failure's name and typed fields cross both transports
in the status details, and a caller never reads them back out of the message."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.testing import ChannelFor
from stamen.common.errors import (
    MessageTooLargeError,
    NodeNotFoundError,
    NotFoundError,
    ResourceExhaustedError,
    RunLeaseHeldError,
    RunNotFoundError,
    RunNotRunningError,
    StamenError,
    StorageFullError,
)
from stamen.common.run import Run
from stamen.common.status import StatusCode
from stamen.transport.api import ControlApi
from stamen.transport.errors import Failure, raised
from stamen.transport.grpc import ControlServicer, FailureCodec, GrpcControlClient, from_grpc
from stamen.transport.grpc.richstatus import ErrorInfo, RpcStatus
from stamen.transport.memory import MemoryControl


class _Failing:
    """A Control handler whose GetRun raises what the test hands it."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get_run(self, run_id: int) -> Run:
        raise self.error


@asynccontextmanager
async def _memory(handler: _Failing) -> AsyncIterator[ControlApi]:
    yield MemoryControl(cast(ControlApi, handler))


@asynccontextmanager
async def _grpc(handler: _Failing) -> AsyncIterator[ControlApi]:
    servicer = ControlServicer(cast(ControlApi, handler))
    async with ChannelFor([servicer], status_details_codec=FailureCodec()) as channel:
        yield GrpcControlClient(channel, timeout=10)


Transport = Callable[[_Failing], AbstractAsyncContextManager[ControlApi]]


@pytest.fixture(params=[_memory, _grpc], ids=["memory", "grpc"])
def transport(request: pytest.FixtureRequest) -> Transport:
    return cast(Transport, request.param)


@pytest.mark.parametrize(
    ("error", "fields"),
    [
        (NodeNotFoundError(7), {"node_id": 7}),
        (NodeNotFoundError(2**63 - 1), {"node_id": 2**63 - 1}),
        (MessageTooLargeError(20, 10), {"size": 20, "limit": 10}),
        (RunNotRunningError(4, "finished"), {"run_id": 4, "run_status": "finished"}),
        (RunLeaseHeldError(3, 12.5), {"run_id": 3, "remaining": 12.5}),
    ],
)
async def test_an_error_callers_act_on_arrives_rebuilt_with_its_typed_fields(
    transport: Transport, error: StamenError, fields: dict[str, object]
) -> None:
    async with transport(_Failing(error)) as control:
        with pytest.raises(type(error)) as caught:
            await control.get_run(1)
    assert type(caught.value) is type(error)
    assert str(caught.value) == str(error)
    assert {name: getattr(caught.value, name) for name in fields} == fields
    assert all(type(getattr(caught.value, n)) is type(v) for n, v in fields.items())


@pytest.mark.parametrize(
    ("error", "received"),
    [
        (RunNotFoundError(3), NotFoundError),
        (StorageFullError("state.db", "disk full"), ResourceExhaustedError),
        (NotFoundError("node 7 is not registered"), NotFoundError),  # prose is not parsed
    ],
)
async def test_other_errors_arrive_as_their_status_class_with_the_same_message(
    transport: Transport, error: StamenError, received: type[StamenError]
) -> None:
    async with transport(_Failing(error)) as control:
        with pytest.raises(StamenError) as caught:
            await control.get_run(1)
    assert type(caught.value) is received
    assert str(caught.value) == str(error)


def test_the_codec_writes_grpcs_rich_status_with_the_fields_as_text() -> None:
    codec = FailureCodec()
    sent = Failure(StatusCode.FAILED_PRECONDITION, "m", "RunLeaseHeldError", {"run_id": 3})
    data = codec.encode(Status.FAILED_PRECONDITION, "m", sent)
    rich = RpcStatus.FromString(data)
    assert (rich.code, rich.message) == (Status.FAILED_PRECONDITION.value, "m")
    info = ErrorInfo()
    assert rich.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "RunLeaseHeldError",
        "stamen",
        {"run_id": "3"},
    )
    received = codec.decode(Status.FAILED_PRECONDITION, "m", data)
    assert received == Failure(sent.status, "m", "RunLeaseHeldError", {"run_id": "3"})


def _rich(info: object) -> bytes:
    rich = RpcStatus(code=5, message="m")
    rich.details.add().Pack(info)
    return bytes(rich.SerializeToString())


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff",  # not a protobuf message
        bytes(RpcStatus(code=5, message="m").SerializeToString()),  # no details
        _rich(ErrorInfo(reason="NOT_FOUND", domain="example.com")),  # another domain's
    ],
    ids=["garbage", "no-details", "other-domain"],
)
def test_details_another_server_wrote_are_ignored(data: bytes) -> None:
    assert FailureCodec().decode(Status.NOT_FOUND, "m", data) is None


def test_the_codec_refuses_details_that_are_not_a_failure() -> None:
    with pytest.raises(TypeError, match="must be a Failure"):
        FailureCodec().encode(Status.NOT_FOUND, "m", {"node_id": 7})


@pytest.mark.parametrize(
    "fields",
    [{}, {"node_id": "seven"}, {"node_id": True}, {"node_id": 7.5}, {"node_id": "7.5"}],
    ids=["missing", "not-a-number", "bool", "float", "float-text"],
)
def test_a_failure_whose_fields_do_not_fit_its_error_arrives_as_its_status_class(
    fields: dict[str, int | float | str],
) -> None:
    received = Failure(
        StatusCode.NOT_FOUND, "node 7 is not registered", "NodeNotFoundError", fields
    )
    error = raised(received)
    assert type(error) is NotFoundError
    assert str(error) == "node 7 is not registered"


def test_a_name_with_another_status_is_not_rebuilt() -> None:
    received = Failure(StatusCode.INTERNAL, "odd", "NodeNotFoundError", {"node_id": 7})
    assert type(raised(received)).__name__ == "TransientError"


def test_a_status_without_details_from_another_server_still_maps() -> None:
    error = from_grpc(GRPCError(Status.NOT_FOUND, "node 7 is not registered"))
    assert type(error) is NotFoundError
