"""A node acts only as itself: the attacks of issue 15 on the Fleet API, in-process.

An attacker who can reach the Fleet API but did not make a node's registration cannot
pull that node's instructions, answer them, heartbeat for it or unregister it: over the
memory transport and over gRPC (where the SuperLink knows a node by its registration
token, and, with node authentication on, by the key that signs each request). A reply
is accepted only from the node the instruction was sent to, and only once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import numpy as np
import pytest
from stamen.auth.authority import FleetAuthority
from stamen.auth.keys import fingerprint, generate_key
from stamen.auth.signing import RequestSigner, SignatureVerifier
from stamen.auth.tokens import NodeTokens
from stamen.codec import decode_message, encode_message
from stamen.codec.envelope import Envelope
from stamen.codec.objects import Buffer
from stamen.common.errors import (
    InvalidMessageError,
    NodeNotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, MetricRecord, RecordDict
from stamen.superlink.superlink import SuperLink, open_superlink
from stamen.transport.api import FleetApi
from stamen.transport.grpc import (
    FleetServicer,
    GrpcFleetClient,
    api_server,
    connect,
    listen,
    socket_address,
)
from stamen.transport.grpc.guard import sign_requests
from stamen.transport.memory import MemoryFleet, MemoryServerAppIo

SECRET = b"k" * 32


async def _grpc_fleet(
    link: SuperLink, stack: AsyncExitStack, authority: FleetAuthority | None = None
) -> str:
    sock = listen("127.0.0.1:0")
    server = api_server(FleetServicer(link.fleet, authority=authority))
    await server.start(sock=sock)
    stack.push_async_callback(server.wait_closed)
    stack.callback(server.close)
    return socket_address(sock)


def _client(address: str, stack: AsyncExitStack, signer: RequestSigner | None = None) -> FleetApi:
    channel = connect(address, root_certificates=None, insecure=True)
    stack.callback(channel.close)
    if signer is not None:
        sign_requests(channel, signer)
    return GrpcFleetClient(channel, timeout=10)


class World:
    """A SuperLink, the victim node's Fleet connection and the attacker's own."""

    def __init__(self, link: SuperLink, victim: FleetApi, attacker: FleetApi) -> None:
        self.link = link
        self.victim = victim
        self.attacker = attacker
        self.serverappio = MemoryServerAppIo(link.serverappio)


@pytest.fixture(params=["memory", "grpc"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    async with AsyncExitStack() as stack:
        link = await stack.enter_async_context(open_superlink(":memory:", heartbeat_interval=30))
        if request.param == "memory":
            yield World(link, MemoryFleet(link.fleet), MemoryFleet(link.fleet))
        else:
            address = await _grpc_fleet(link, stack)
            yield World(link, _client(address, stack), _client(address, stack))


async def _instruct(world: World, node_id: int) -> tuple[int, Envelope, dict[str, Buffer]]:
    run_id = await world.serverappio.create_run("s:a", "c:a", {})
    content = RecordDict({"model": ArrayRecord({"w": np.arange(4.0)})})
    message = Message(content, dst_node_id=node_id, message_type="train", ttl=600)
    message.metadata.run_id = run_id
    envelope, objects = encode_message(message)
    await world.serverappio.push_messages(run_id, [envelope])
    for object_id in envelope.object_ids:
        data = memoryview(objects[object_id])

        async def chunks(data: memoryview = data) -> AsyncIterator[memoryview]:
            yield data

        await world.serverappio.push_object(run_id, object_id, data.nbytes, chunks())
    return run_id, envelope, objects


async def test_an_attacker_cannot_act_as_a_node_it_did_not_register(world: World) -> None:
    victim = (await world.victim.register_node({})).node_id
    run_id, instruction, _objects = await _instruct(world, victim)
    attacks = [
        world.attacker.pull_messages(victim, 0),
        world.attacker.heartbeat(victim),
        world.attacker.unregister_node(victim),
        world.attacker.get_run(victim, run_id),
        world.attacker.push_messages(victim, [instruction]),
    ]
    for attack in attacks:
        with pytest.raises(UnauthenticatedError, match="no node token"):
            await attack
    with pytest.raises(UnauthenticatedError):
        async for _ in world.attacker.pull_object(victim, instruction.object_ids[0]):
            pass
    # The victim is still registered and still gets its instruction: nothing was stolen.
    [received] = await world.victim.pull_messages(victim, 5)
    assert received.message_id == instruction.message_id


async def test_a_registered_attacker_cannot_name_another_node(world: World) -> None:
    victim = (await world.victim.register_node({})).node_id
    attacker = (await world.attacker.register_node({})).node_id
    _, _instruction, objects = await _instruct(world, victim)
    # The attacker's own credentials with the victim's id in the request: refused.
    if isinstance(world.attacker, GrpcFleetClient):
        world.attacker._tokens[victim] = world.attacker._tokens[attacker]
        with pytest.raises(PermissionDeniedError, match=f"node {attacker} cannot act as"):
            await world.attacker.pull_messages(victim, 0)
        with pytest.raises(PermissionDeniedError, match=f"node {attacker} cannot act as"):
            await world.attacker.unregister_node(victim)
    else:
        with pytest.raises(UnauthenticatedError):
            await world.attacker.pull_messages(victim, 0)
    # Its own pull sees nothing of the victim's.
    assert await world.attacker.pull_messages(attacker, 0) == []
    [received] = await world.victim.pull_messages(victim, 5)
    # A reply it makes up for the victim's instruction, as itself: refused.
    reply = decode_message(received, objects).create_reply(RecordDict())
    reply.metadata.src_node_id = attacker
    forged, _ = encode_message(reply)
    with pytest.raises(PermissionDeniedError, match="it was sent to node"):
        await world.attacker.push_messages(attacker, [forged])


async def test_a_reply_counts_once(world: World) -> None:
    node = (await world.victim.register_node({})).node_id
    _, _instruction, objects = await _instruct(world, node)
    [received] = await world.victim.pull_messages(node, 5)
    message = decode_message(received, objects)
    first, _ = encode_message(message.create_reply(RecordDict({"m": MetricRecord({"a": 1})})))
    await world.victim.push_messages(node, [first])
    await world.victim.push_messages(node, [first])  # the same reply again: no change
    second, _ = encode_message(message.create_reply(RecordDict({"m": MetricRecord({"a": 2})})))
    with pytest.raises(InvalidMessageError, match="already has a reply"):
        await world.victim.push_messages(node, [second])


# --- node authentication (signed requests) over in-process gRPC ------------------------------


async def test_only_listed_keys_join_and_a_token_is_bound_to_its_key() -> None:
    allowed, other_allowed, stranger = generate_key(), generate_key("ecdsa-p256"), generate_key()
    keys = {fingerprint(k.public_key()): k.public_key() for k in (allowed, other_allowed)}
    authority = FleetAuthority(NodeTokens(SECRET), SignatureVerifier(keys))
    async with AsyncExitStack() as stack:
        link = await stack.enter_async_context(open_superlink(":memory:", heartbeat_interval=30))
        address = await _grpc_fleet(link, stack, authority)
        node = _client(address, stack, RequestSigner(allowed))
        node_id = (await node.register_node({})).node_id
        assert await node.heartbeat(node_id) == 30
        assert await node.pull_messages(node_id, 0) == []

        with pytest.raises(UnauthenticatedError, match="not on the SuperLink's list"):
            await _client(address, stack, RequestSigner(stranger)).register_node({})
        with pytest.raises(UnauthenticatedError, match="not signed"):
            await _client(address, stack).register_node({})
        # Another allowed node holding the first one's token: the token is not its own.
        thief = _client(address, stack, RequestSigner(other_allowed))
        assert isinstance(thief, GrpcFleetClient)
        assert isinstance(node, GrpcFleetClient)
        thief._tokens[node_id] = node._tokens[node_id]
        with pytest.raises(PermissionDeniedError, match="with this key"):
            await thief.heartbeat(node_id)
        # Revoked: its next request is refused, and the SuperLink keeps serving others.
        assert authority.verifier is not None
        del keys[fingerprint(allowed.public_key())]
        authority.verifier.replace_keys(keys)
        with pytest.raises(UnauthenticatedError, match="revoked"):
            await node.heartbeat(node_id)
        assert (await thief.register_node({})).node_id != node_id


async def test_a_token_from_a_superlink_that_lost_its_state_means_register_again() -> None:
    async with AsyncExitStack() as stack:
        link = await stack.enter_async_context(open_superlink(":memory:", heartbeat_interval=30))
        address = await _grpc_fleet(link, stack, FleetAuthority(NodeTokens(SECRET)))
        node = _client(address, stack)
        assert isinstance(node, GrpcFleetClient)
        node_id = (await node.register_node({})).node_id
        node._tokens[node_id] = NodeTokens(b"o" * 32).issue(node_id)
        with pytest.raises(NodeNotFoundError):
            async with asyncio.timeout(5):
                await node.heartbeat(node_id)
