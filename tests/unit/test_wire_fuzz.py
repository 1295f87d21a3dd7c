"""Fuzzing the SuperLink's APIs on the wire (issue 15, item 5), with a bounded budget.

A real SuperLink (`serve()`, SQLite state, gRPC on 127.0.0.1) runs in a thread of its
own. Hypothesis sends every method of Fleet, ServerAppIo, Control and NodeKeys requests
built from its message type (ids, strings, NaN and infinite floats, lists, any bytes), valid
requests with bytes flipped, raw bytes, and malformed frames (compressed flag, truncated
body, oversized headers). Every answer must be OK or a status that names the caller's
mistake, never UNKNOWN or INTERNAL, and never a dropped connection; afterwards the
SuperLink is healthy and a legitimate exchange (instruction, reply) still completes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpclib.client import Channel
from grpclib.const import Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stamen.auth.signing import NODE_TOKEN_HEADER
from stamen.codec import decode_message, encode_message, iter_chunks
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, MetricRecord, RecordDict
from stamen.proto.stamen import v1 as pb
from stamen.superlink.serve import Listening, serve
from stamen.superlink.settings import SuperLinkSettings
from stamen.transport.grpc import GrpcFleetClient, GrpcServerAppIoClient, check_health, connect

ALLOWED = {
    Status.OK,
    Status.INVALID_ARGUMENT,
    Status.NOT_FOUND,
    Status.PERMISSION_DENIED,
    Status.UNAUTHENTICATED,
    Status.FAILED_PRECONDITION,
    Status.RESOURCE_EXHAUSTED,
}
"""What a malformed or hostile request may be answered with: never UNKNOWN or INTERNAL."""

EXAMPLES = 10
"""Examples per method and kind of input (22 methods, 2 kinds): about 450 calls in all.
Derandomized, so that `make test` sends the same requests every time; a wider random
search (60 examples each, 2,600 calls) found nothing more when this was written."""


def _methods() -> list[tuple[str, Handler]]:
    found: list[tuple[str, Handler]] = []
    for base in (pb.FleetBase, pb.ServerAppIoBase, pb.ControlBase, pb.NodeKeysBase):
        mapping: dict[str, Handler] = base.__mapping__(base())  # type: ignore[abstract]
        found.extend(sorted(mapping.items()))
    return found


METHODS = _methods()


class Raw(CodecBase):
    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


class Server:
    """A SuperLink serving in a background thread, and a node registered with it."""

    def __init__(self, database: Path) -> None:
        self.settings = SuperLinkSettings(
            insecure=True,
            database=str(database),
            fleet_api_address="127.0.0.1:0",
            serverappio_api_address="127.0.0.1:0",
            control_api_address="127.0.0.1:0",
            grace_period=0.5,
        )
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.ready: asyncio.Future[Listening] = self.loop.create_future()
        self.thread.start()
        self.listening = asyncio.run_coroutine_threadsafe(self._wait_ready(), self.loop).result(30)
        self.node_id, self.token = asyncio.run(self._register())

    async def _wait_ready(self) -> Listening:
        return await self.ready

    def _serve(self) -> None:
        self.loop.run_until_complete(serve(self.settings, ready=self.ready, stop=self.stop))

    async def _register(self) -> tuple[int, str]:
        channel = connect(self.listening.fleet, root_certificates=None, insecure=True)
        try:
            registration = await GrpcFleetClient(channel).register_node({})
        finally:
            channel.close()
        return registration.node_id, registration.token

    def address(self, method: str) -> str:
        service = method.split("/")[1].split(".")[-1]
        return {
            "Fleet": self.listening.fleet,
            "ServerAppIo": self.listening.serverappio,
            "Control": self.listening.control,
            "NodeKeys": self.listening.control,
        }[service]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("fuzz") / "state.db")
    try:
        yield running
    finally:
        running.close()


async def _call(
    server: Server,
    method: str,
    handler: Handler,
    bodies: list[bytes],
    *,
    metadata: dict[str, str] | None = None,
    frame: bytes | None = None,
) -> Status:
    """Send `bodies` (or the raw `frame`) to `method`; the status it is answered with."""
    host, port = server.address(method).rsplit(":", 1)
    channel = Channel(host, int(port), codec=Raw())
    try:
        async with asyncio.timeout(10):
            async with channel.request(
                method, handler.cardinality, bytes, bytes, metadata=metadata
            ) as stream:
                if frame is not None:
                    await stream.send_request()
                    await stream._stream.send_data(frame, end_stream=True)
                else:
                    for index, body in enumerate(bodies):
                        await stream.send_message(body, end=index == len(bodies) - 1)
                async for _ in stream:
                    pass
        return Status.OK
    except GRPCError as exc:
        return exc.status
    finally:
        channel.close()


def _check(status: Status, what: str) -> None:
    assert status in ALLOWED, f"{what}: answered {status.name}"


# --- request messages built from their types -----------------------------------------------


def _field_strategy(hint: Any, known: list[int], depth: int) -> st.SearchStrategy[Any]:
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is list:
        return st.lists(_field_strategy(args[0], known, depth), max_size=3)
    if len(args) == 1 and typing.get_origin(hint) is not dict:  # X | None: X, or left out
        return st.none() | _field_strategy(args[0], known, depth)
    if hint is int:
        return st.one_of(
            st.sampled_from([0, 1, *known, (1 << 63) - 1, (1 << 64) - 1]),
            st.integers(0, (1 << 64) - 1),
        )
    if hint is float:
        return st.floats(allow_nan=True, allow_infinity=True)
    if hint is str:
        return st.one_of(
            st.text(max_size=40), st.sampled_from(["", "a" * 64, "s:a", "running", "finished"])
        )
    if hint is bool:
        return st.booleans()
    if hint is bytes:
        return st.binary(max_size=64)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _message(hint, known, depth - 1) if depth > 0 else st.builds(hint)
    return st.nothing()  # maps and enums: left at their defaults


def _message(cls: type[Any], known: list[int], depth: int = 2) -> st.SearchStrategy[Any]:
    """Instances of the message `cls` with every field drawn from its type."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for field in dataclasses.fields(cls):
        strategy = _field_strategy(hints[field.name], known, depth)
        if field.name == "timeout":  # a long-poll's wait: odd values, but short ones
            strategy = st.sampled_from([math.nan, -math.inf, -1.0, 0.0]) | st.floats(-1e9, 0.01)
        if not strategy.is_empty:
            fields[field.name] = strategy
    return st.builds(cls, **fields)


@pytest.mark.parametrize(("method", "handler"), METHODS, ids=[m for m, _ in METHODS])
def test_typed_requests_get_a_named_status(server: Server, method: str, handler: Handler) -> None:
    metadata = {NODE_TOKEN_HEADER: server.token}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(body=_message(handler.request_type, [server.node_id]).map(bytes), as_node=st.booleans())
    def fuzz(body: bytes, as_node: bool) -> None:
        status = asyncio.run(
            _call(server, method, handler, [body], metadata=metadata if as_node else None)
        )
        _check(status, f"{method} {body!r}")

    fuzz()


@pytest.mark.parametrize(("method", "handler"), METHODS, ids=[m for m, _ in METHODS])
def test_malformed_bytes_get_a_named_status(server: Server, method: str, handler: Handler) -> None:
    metadata = {NODE_TOKEN_HEADER: server.token}
    valid = bytes(
        pb.PushMessagesRequest(
            node_id=server.node_id,
            messages=[pb.Message(metadata=pb.Metadata(run_id=1, dst_node_id=server.node_id))],
        )
    )

    def flip(at: int, bits: int) -> bytes:
        return valid[:at] + bytes([valid[at] ^ bits]) + valid[at + 1 :]

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True)
    @given(
        body=st.one_of(
            st.binary(max_size=200),
            st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)).map(
                lambda flip: (
                    valid[: flip[0]] + bytes([valid[flip[0]] ^ flip[1]]) + valid[flip[0] + 1 :]
                )
            ),
        )
    )
    def fuzz(body: bytes) -> None:
        status = asyncio.run(_call(server, method, handler, [body], metadata=metadata))
        _check(status, f"{method} {body!r}")

    fuzz()


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"\x01\x00\x00\x00\x00", Status.INVALID_ARGUMENT),  # compressed flag
        (b"\x00\x00\x00\x01\x00abc", Status.INVALID_ARGUMENT),  # 256 bytes announced, 3 sent
        (b"\x00\x00\x00", Status.INVALID_ARGUMENT),  # a cut-off length prefix
    ],
)
def test_malformed_frames_are_invalid_argument(
    server: Server, frame: bytes, expected: Status
) -> None:
    for method, handler in METHODS:
        metadata = {NODE_TOKEN_HEADER: server.token}
        status = asyncio.run(_call(server, method, handler, [], metadata=metadata, frame=frame))
        if status != Status.UNAUTHENTICATED:  # refused before reading: fine too
            assert status == expected, f"{method}: {status.name}"


def test_oversized_headers_are_resource_exhausted(server: Server) -> None:
    method, handler = METHODS[0]
    status = asyncio.run(
        _call(server, method, handler, [b""], metadata={"x-padding": "a" * (100 << 10)})
    )
    assert status == Status.RESOURCE_EXHAUSTED


def test_after_the_fuzz_the_superlink_serves_a_legitimate_exchange(server: Server) -> None:
    asyncio.run(_legitimate_exchange(server))


async def _legitimate_exchange(server: Server) -> None:
    listening = server.listening
    fleet_channel = connect(listening.fleet, root_certificates=None, insecure=True)
    io_channel = connect(listening.serverappio, root_certificates=None, insecure=True)
    try:
        await check_health(fleet_channel, timeout=5)
        fleet, io = GrpcFleetClient(fleet_channel), GrpcServerAppIoClient(io_channel)
        node = (await fleet.register_node({"partition-id": 0})).node_id
        run_id = await io.create_run("server:app", "client:app", {})
        content = RecordDict({"model": ArrayRecord({"w": np.arange(3.0)})})
        instruction = Message(content, dst_node_id=node, message_type="train", ttl=60)
        instruction.metadata.run_id = run_id
        envelope, objects = encode_message(instruction)
        await io.push_messages(run_id, [envelope])
        for object_id in envelope.object_ids:
            await io.push_object(
                run_id, object_id, len(objects[object_id]), _chunks(objects[object_id])
            )
        [received] = await fleet.pull_messages(node, 5)
        reply = decode_message(received, objects).create_reply(
            RecordDict({"metrics": MetricRecord({"num-examples": 10})})
        )
        reply_envelope, _ = encode_message(reply)
        await fleet.push_messages(node, [reply_envelope])
        [answer] = await io.pull_messages(run_id, [envelope.message_id], 5)
        assert answer.metadata.reply_to_message_id == envelope.message_id
    finally:
        fleet_channel.close()
        io_channel.close()


async def _chunks(data: Any) -> AsyncIterator[memoryview]:
    for chunk in iter_chunks(data):
        yield chunk
