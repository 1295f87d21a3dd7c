"""What the gRPC transport adds on the wire: the message cap, malformed input, error
statuses, TLS set-up and its diagnosis, graceful drain, health, the h2 repr patch.

Runs a real grpclib server on 127.0.0.1 (port 0) around a small fake Fleet handler.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.protocol import Connection
from hyperframe.frame import DataFrame
from stamen.auth.signing import NODE_TOKEN_HEADER
from stamen.codec.envelope import Envelope
from stamen.common.buffers import Buffer
from stamen.common.errors import (
    ConfigError,
    MessageTooLargeError,
    NodeNotFoundError,
    NotFoundError,
    StamenError,
    TransientError,
    UnavailableError,
)
from stamen.common.message import Metadata
from stamen.common.push import PushResult
from stamen.common.run import Run
from stamen.proto.stamen import v1 as pb
from stamen.transport.grpc import h2patch
from stamen.transport.grpc.channel import check_health, connect
from stamen.transport.grpc.clients import GrpcFleetClient
from stamen.transport.grpc.limits import MAX_MESSAGE_SIZE
from stamen.transport.grpc.server import api_server, listen, socket_address
from stamen.transport.grpc.servicers import FleetServicer
from stamen.transport.grpc.tls import client_context, server_context
from stamen.transport.types import NodeRegistration

REPO = Path(__file__).resolve().parents[2]
NODE = 7


class FakeFleet:
    """Knows node 7; long-polls until its timeout; get_run has a bug."""

    def __init__(self) -> None:
        self.polling = asyncio.Event()
        self.pushed: list[bytes] = []
        self.next_node = NODE

    async def register_node(self, node_config: dict[str, Any]) -> NodeRegistration:
        return NodeRegistration(self.next_node, 5.0)

    async def unregister_node(self, node_id: int) -> None:
        self._check(node_id)

    async def heartbeat(self, node_id: int) -> float:
        self._check(node_id)
        return 5.0

    async def pull_messages(self, node_id: int, timeout: float) -> list[Envelope]:
        self.polling.set()
        await asyncio.sleep(timeout)
        return []

    async def push_messages(self, node_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        return PushResult(tuple(e.message_id for e in envelopes))

    async def push_object(
        self, node_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        if object_id == "known":
            return False  # deduplicated: leaves the chunks unread
        self.pushed = [bytes(chunk) async for chunk in chunks]
        return True

    async def pull_object(self, node_id: int, object_id: str) -> AsyncIterator[Buffer]:
        self._check(node_id)
        yield b"abc"

    async def get_run(self, node_id: int, run_id: int) -> Run:
        raise KeyError(run_id)

    def _check(self, node_id: int) -> None:
        if node_id != NODE:
            raise NodeNotFoundError(node_id)


@asynccontextmanager
async def serving(fleet: FakeFleet, tls: Any = None) -> AsyncIterator[tuple[FleetServicer, str]]:
    servicer = FleetServicer(fleet)
    sock = listen("127.0.0.1:0")
    server = api_server(servicer)
    await server.start(sock=sock, ssl=tls)
    try:
        yield servicer, socket_address(sock)
    finally:
        server.close()
        async with asyncio.timeout(5):
            await server.wait_closed()


@asynccontextmanager
async def fleet_client(address: str) -> AsyncIterator[GrpcFleetClient]:
    """A client registered as NODE (it sends that registration's token)."""
    channel = connect(address, root_certificates=None, insecure=True)
    try:
        client = GrpcFleetClient(channel, timeout=5.0)
        await client.register_node({})
        yield client
    finally:
        channel.close()


class RawCodec(CodecBase):
    """Sends and receives bytes as they are: for feeding a server what no client would."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


async def raw_call(address: str, method: str, data: bytes, token: str = "") -> bytes:
    host, port = address.rsplit(":", 1)
    channel = Channel(host, int(port), codec=RawCodec())
    metadata = {NODE_TOKEN_HEADER: token} if token else None
    try:
        async with channel.request(
            method, Cardinality.UNARY_UNARY, bytes, bytes, timeout=5, metadata=metadata
        ) as stream:
            await stream.send_message(data, end=True)
            reply = await stream.recv_message()
        assert isinstance(reply, bytes)
        return reply
    finally:
        channel.close()


def make_certs(directory: Path) -> Path:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "make-certs.sh"), str(directory)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return directory


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second CA, which did not sign the server's certificate."""
    return make_certs(tmp_path_factory.mktemp("other-certs"))


def _tls(certs: Path) -> Any:
    return server_context(certs / "ca.crt", certs / "server.pem", certs / "server.key")


# --- malformed and oversized input ------------------------------------------------------


async def test_malformed_bytes_are_invalid_argument_and_the_server_keeps_serving() -> None:
    async with serving(FakeFleet()) as (_, address), fleet_client(address) as client:
        token = client._tokens[NODE]
        with pytest.raises(GRPCError) as caught:
            await raw_call(address, "/stamen.v1.Fleet/Heartbeat", b"\x08", token)  # truncated
        assert caught.value.status == Status.INVALID_ARGUMENT
        with pytest.raises(GRPCError) as caught:  # a string sent where an int belongs
            await raw_call(address, "/stamen.v1.Fleet/Heartbeat", b"\x0a\x03abc", token)
        assert caught.value.status == Status.INVALID_ARGUMENT
        reply = await raw_call(
            address, "/stamen.v1.Fleet/Heartbeat", bytes(pb.HeartbeatRequest(node_id=NODE)), token
        )
        assert pb.HeartbeatResponse.parse(reply).heartbeat_interval == 5.0


async def test_an_oversized_request_is_resource_exhausted() -> None:
    async with serving(FakeFleet()) as (_, address), fleet_client(address) as client:
        with pytest.raises(GRPCError) as caught:
            await raw_call(
                address,
                "/stamen.v1.Fleet/PushMessages",
                bytes(MAX_MESSAGE_SIZE + 1),
                client._tokens[NODE],
            )
        assert caught.value.status == Status.RESOURCE_EXHAUSTED
        assert await client.heartbeat(NODE) == 5.0


async def test_a_client_refuses_to_send_an_oversized_message() -> None:
    fleet = FakeFleet()
    body = bytes(pb.Message(error=pb.Error(code=1, reason="x" * (MAX_MESSAGE_SIZE + 1))))
    envelope = Envelope(Metadata(1, "m", NODE, 0, "i", "", 0.0, 60.0, "train"), body)
    async with serving(fleet) as (servicer, address), fleet_client(address) as client:
        with pytest.raises(MessageTooLargeError) as caught:
            await client.push_messages(NODE, [envelope])
        assert caught.value.limit == MAX_MESSAGE_SIZE
        assert servicer.drain.calls == 0


# --- errors and streams -------------------------------------------------------------------


async def test_handler_errors_arrive_as_their_classes() -> None:
    fleet = FakeFleet()
    async with serving(fleet) as (_, address), fleet_client(address) as client:
        fleet.next_node = 8  # registered, then unknown to the handler
        await client.register_node({})
        with pytest.raises(NotFoundError, match="node 8 is not registered"):
            await client.heartbeat(8)
        with pytest.raises(NotFoundError):
            async for _ in client.pull_object(8, "a" * 64):
                pass
        with pytest.raises(StamenError, match=r"internal error in Fleet\.GetRun") as caught:
            await client.get_run(NODE, 1)
        assert type(caught.value) is TransientError  # a fault on its side: callers retry
        assert await client.heartbeat(NODE) == 5.0  # still serving


async def test_a_push_the_handler_does_not_read_still_completes() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield bytes(1 << 20)

    fleet = FakeFleet()
    async with serving(fleet) as (_, address), fleet_client(address) as client:
        assert await client.push_object(NODE, "known", 8 << 20, chunks()) is False
        assert await client.push_object(NODE, "new", 8 << 20, chunks()) is True
    assert [len(chunk) for chunk in fleet.pushed] == [1 << 20] * 8


# --- drain and health ----------------------------------------------------------------------


async def test_drain_ends_long_polls_refuses_new_calls_and_reports_not_serving() -> None:
    fleet = FakeFleet()
    async with serving(fleet) as (servicer, address), fleet_client(address) as client:
        await check_health(client.channel, timeout=5)
        async with asyncio.TaskGroup() as tg:
            poll = tg.create_task(client.pull_messages(NODE, timeout=60))
            await fleet.polling.wait()
            assert servicer.drain.calls == 1
            servicer.drain.close()
            async with asyncio.timeout(5):
                assert await poll == []
                await servicer.drain.idle()
        with pytest.raises(UnavailableError, match="shutting down"):
            await client.heartbeat(NODE)
        with pytest.raises(UnavailableError, match="not serving"):
            await check_health(client.channel, timeout=5)


# --- TLS -------------------------------------------------------------------------------------


async def test_tls_round_trip(certs: Path) -> None:
    async with serving(FakeFleet(), _tls(certs)) as (_, address):
        channel = connect(address, root_certificates=certs / "ca.crt", insecure=False)
        try:
            await check_health(channel, timeout=5)
            client = GrpcFleetClient(channel)
            await client.register_node({})
            assert await client.heartbeat(NODE) == 5.0
        finally:
            channel.close()


@pytest.mark.parametrize(
    ("server_tls", "client", "error", "hint"),
    [
        (False, "ca", ConfigError, "connect with --insecure"),
        (True, "insecure", ConfigError, "requires TLS"),
        (True, "other-ca", ConfigError, "does not trust"),
    ],
)
async def test_tls_mistakes_are_named_in_one_line(
    certs: Path,
    other_certs: Path,
    server_tls: bool,
    client: str,
    error: type[Exception],
    hint: str,
) -> None:
    async with serving(FakeFleet(), _tls(certs) if server_tls else None) as (_, address):
        channel = connect(
            address,
            root_certificates={"ca": certs / "ca.crt", "other-ca": other_certs / "ca.crt"}.get(
                client
            ),
            insecure=client == "insecure",
        )
        try:
            async with asyncio.timeout(5):
                with pytest.raises(error, match=hint) as caught:
                    await GrpcFleetClient(channel).heartbeat(NODE)
        finally:
            channel.close()
    assert "\n" not in str(caught.value)


def test_bad_certificate_files_are_config_errors_naming_the_file(
    certs: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=f"cannot read certificate file {missing}"):
        server_context(certs / "ca.crt", missing, certs / "server.key")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=f"{junk} is not a PEM certificate"):
        server_context(junk, certs / "server.pem", certs / "server.key")
    with pytest.raises(ConfigError, match=f"{junk} is not a PEM certificate"):
        client_context(junk)
    with pytest.raises(ConfigError, match="does not belong to certificate"):
        server_context(certs / "ca.crt", certs / "server.pem", certs / "ca.key")
    with pytest.raises(ConfigError, match=f"private key {junk}"):
        server_context(certs / "ca.crt", certs / "server.pem", junk)


async def test_connect_checks_its_arguments(certs: Path) -> None:
    with pytest.raises(ConfigError, match="exclude each other"):
        connect("127.0.0.1:1", root_certificates=certs / "ca.crt", insecure=True)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        connect("localhost", root_certificates=None, insecure=True)


async def test_an_unreachable_server_is_unavailable() -> None:
    sock = listen("127.0.0.1:0")
    address = socket_address(sock)
    sock.close()
    channel = connect(address, root_certificates=None, insecure=True)
    try:
        with pytest.raises(UnavailableError, match="connection refused"):
            await GrpcFleetClient(channel).heartbeat(NODE)
    finally:
        channel.close()


def test_listening_on_a_taken_port_is_a_config_error() -> None:
    sock = listen("127.0.0.1:0")
    try:
        with pytest.raises(ConfigError, match=f"cannot listen on {socket_address(sock)}"):
            listen(socket_address(sock))
    finally:
        sock.close()


# --- h2 ----------------------------------------------------------------------------------------


async def test_data_frames_are_not_hex_dumped_once_the_transport_is_used() -> None:
    async with serving(FakeFleet()):
        assert h2patch.installed()
    frame = DataFrame(1, data=bytes(1 << 20))
    assert repr(frame).endswith("<1048576 bytes>")


def test_data_frames_serialize_as_hyperframe_does_without_copying_the_payload() -> None:
    h2patch.install()
    payload = bytes(range(256)) * 8
    plain = DataFrame(1, data=payload, flags=["END_STREAM"])
    assert plain.serialize_body() is payload
    padded = DataFrame(1, data=payload, flags=["PADDED"], pad_length=3)
    for frame in (plain, padded, DataFrame(1, data=memoryview(payload))):
        assert frame.serialize_body() == h2patch._serialize_data_body(frame)  # hyperframe's own
        reread = DataFrame(1)
        reread.parse_flags(frame.serialize()[4])
        reread.parse_body(memoryview(frame.serialize()[9:]))
        assert reread.data == payload


async def test_connections_ask_their_peer_for_large_frames() -> None:
    received: list[int] = []
    async with serving(FakeFleet()) as (_, address):
        channel = connect(address, root_certificates=None, insecure=True)
        try:
            await GrpcFleetClient(channel).register_node({})
            protocol = channel._protocol  # the client's side of the one connection
            assert protocol is not None
            h2 = protocol.connection._connection
            received.append(h2.remote_settings.max_frame_size)  # what the server asked for
            received.append(h2.max_outbound_frame_size)
        finally:
            channel.close()
    assert received == [h2patch.MAX_FRAME_SIZE, h2patch.MAX_FRAME_SIZE]


async def test_a_connection_closing_as_a_request_begins_is_unavailable_not_a_crash() -> None:
    closed = Connection.__new__(Connection)  # as grpclib leaves one: no transport any more
    channel = connect("127.0.0.1:1", root_certificates=None, insecure=True)
    try:
        client = GrpcFleetClient(channel)
        with pytest.raises(UnavailableError, match="closed as a request began"):
            async with client._call():
                _ = closed._transport
        with pytest.raises(AttributeError):  # any other AttributeError is a bug: raised as is
            async with client._call():
                _ = channel.no_such_thing  # type: ignore[attr-defined]
    finally:
        channel.close()
