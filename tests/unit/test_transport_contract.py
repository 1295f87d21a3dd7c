"""One behaviour suite for the three APIs, run over both transports.

The same assertions hold whether a caller holds the SuperLink's handlers through the
memory transport or gRPC clients talking to servicers on 127.0.0.1 (port 0): same
results, same error classes and messages, no aliasing between caller and SuperLink.
The SuperLink is the real one, over in-memory state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace

import numpy as np
import pytest
from stamen.codec import collect_object, decode_message, encode_message, iter_chunks
from stamen.codec.envelope import Envelope
from stamen.codec.objects import Buffer
from stamen.common.errors import (
    InvalidMessageError,
    NodeNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    RunNotRunningError,
    UnauthenticatedError,
)
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, ConfigRecord, RecordDict
from stamen.common.run import RunStatus
from stamen.superlink.superlink import SuperLink, open_superlink
from stamen.transport.api import ControlApi, FleetApi, ServerAppIoApi
from stamen.transport.grpc import (
    ControlServicer,
    FleetServicer,
    GrpcControlClient,
    GrpcFleetClient,
    GrpcServerAppIoClient,
    ServerAppIoServicer,
    api_server,
    connect,
    listen,
    socket_address,
)
from stamen.transport.memory import MemoryControl, MemoryFleet, MemoryServerAppIo

HEARTBEAT = 30.0
MISSING = "0" * 64


@dataclass
class Apis:
    fleet: FleetApi
    serverappio: ServerAppIoApi
    control: ControlApi
    link: SuperLink | None = None


async def _grpc(link: SuperLink, stack: AsyncExitStack) -> Apis:
    addresses = []
    for servicer in (
        FleetServicer(link.fleet),
        ServerAppIoServicer(link.serverappio),
        ControlServicer(link.control),
    ):
        sock = listen("127.0.0.1:0")
        server = api_server(servicer)
        await server.start(sock=sock)
        stack.push_async_callback(server.wait_closed)
        stack.callback(server.close)
        addresses.append(socket_address(sock))
    channels = [connect(a, root_certificates=None, insecure=True) for a in addresses]
    for channel in channels:
        stack.callback(channel.close)
    return Apis(
        GrpcFleetClient(channels[0], timeout=10),
        GrpcServerAppIoClient(channels[1], timeout=10),
        GrpcControlClient(channels[2], timeout=10),
    )


@pytest.fixture(params=["memory", "grpc"])
async def apis(request: pytest.FixtureRequest) -> AsyncIterator[Apis]:
    async with AsyncExitStack() as stack:
        link = await stack.enter_async_context(
            open_superlink(":memory:", heartbeat_interval=HEARTBEAT)
        )
        if request.param == "memory":
            yield Apis(
                MemoryFleet(link.fleet),
                MemoryServerAppIo(link.serverappio),
                MemoryControl(link.control),
                link,
            )
        else:
            async with asyncio.timeout(10):
                yield replace(await _grpc(link, stack), link=link)


async def _chunks(data: Buffer, chunk_size: int = 1 << 20) -> AsyncIterator[memoryview]:
    for chunk in iter_chunks(data, chunk_size):
        yield chunk


async def _push_objects(
    push: object, owner: int, envelope: Envelope, objects: dict[str, Buffer]
) -> None:
    for object_id in envelope.object_ids:
        data = memoryview(objects[object_id])
        assert await push(owner, object_id, data.nbytes, _chunks(data))


def _instruction(
    run_id: int, node_id: int, weights: np.ndarray
) -> tuple[Envelope, dict[str, Buffer]]:
    content = RecordDict({"model": ArrayRecord({"w": weights}), "cfg": ConfigRecord({"lr": 0.1})})
    message = Message(content, dst_node_id=node_id, message_type="train", ttl=600)
    message.metadata.run_id = run_id
    return encode_message(message)


# --- nodes ---------------------------------------------------------------------------------


async def test_nodes_register_heartbeat_and_unregister(apis: Apis) -> None:
    registration = await apis.fleet.register_node({"partition-id": 3, "name": "a"})
    assert registration.node_id > 0
    assert registration.heartbeat_interval == HEARTBEAT
    assert await apis.fleet.heartbeat(registration.node_id) == HEARTBEAT
    run_id = await apis.serverappio.create_run("server:app", "client:app", {})
    nodes = await apis.serverappio.get_nodes(run_id)
    assert [(n.node_id, n.node_config, n.online) for n in nodes] == [
        (registration.node_id, {"partition-id": 3, "name": "a"}, True)
    ]
    await apis.fleet.unregister_node(registration.node_id)
    assert await apis.serverappio.get_nodes(run_id) == []
    with pytest.raises(NodeNotFoundError) as caught:
        await apis.fleet.heartbeat(registration.node_id)
    assert caught.value.node_id == registration.node_id
    assert str(caught.value) == f"node {registration.node_id} is not registered"


# --- runs ----------------------------------------------------------------------------------


async def test_runs_are_created_read_listed_and_stopped(apis: Apis) -> None:
    node = (await apis.fleet.register_node({})).node_id
    run_id = await apis.serverappio.create_run("server:app", "client:app", {"rounds": 3, "x": 0.5})
    run = await apis.serverappio.get_run(run_id)
    assert (run.run_id, run.server_app, run.client_app) == (run_id, "server:app", "client:app")
    assert run.run_config == {"rounds": 3, "x": 0.5}
    assert run.status == RunStatus.PENDING
    assert await apis.control.get_run(run_id) == run
    assert await apis.fleet.get_run(node, run_id) == run
    assert await apis.control.list_runs() == [run]
    await apis.serverappio.update_run_status(run_id, RunStatus.RUNNING)
    assert (await apis.control.get_run(run_id)).status == RunStatus.RUNNING
    stopped = await apis.control.stop_run(run_id)
    assert (stopped.status, stopped.sub_status) == (RunStatus.FINISHED, RunStatus.STOPPED)
    assert await apis.serverappio.get_run(run_id) == stopped
    with pytest.raises(RunNotRunningError) as caught:
        await apis.control.stop_run(run_id)
    assert (caught.value.run_id, caught.value.run_status) == (run_id, RunStatus.FINISHED)


async def test_rounds_reported_are_kept_in_order_for_a_running_run(apis: Apis) -> None:
    assert apis.link is not None
    run_id = await apis.serverappio.create_run("server:app", "client:app", {})
    await apis.serverappio.update_run_status(run_id, RunStatus.RUNNING)

    await apis.serverappio.report_round(run_id, 1, 0.5, {"loss/distributed": 2.0})
    await apis.serverappio.report_round(run_id, 2, 0.25, {"loss/distributed": 1.0, "n": 3})

    rounds = apis.link.rounds.rounds(run_id)
    assert [(r.server_round, r.seconds, dict(r.metrics)) for r in rounds] == [
        (1, 0.5, {"loss/distributed": 2.0}),
        (2, 0.25, {"loss/distributed": 1.0, "n": 3.0}),
    ]
    with pytest.raises(InvalidMessageError, match="round >= 1"):
        await apis.serverappio.report_round(run_id, 0, 0.5, {})
    with pytest.raises(NotFoundError, match="run 12345 does not exist"):
        await apis.serverappio.report_round(12345, 1, 0.5, {})
    await apis.control.stop_run(run_id)
    with pytest.raises(RunNotRunningError):
        await apis.serverappio.report_round(run_id, 3, 0.5, {})


async def test_unknown_runs_are_not_found_on_every_api(apis: Apis) -> None:
    node = (await apis.fleet.register_node({})).node_id
    for call in (
        apis.serverappio.get_run(12345),
        apis.control.get_run(12345),
        apis.control.stop_run(12345),
        apis.fleet.get_run(node, 12345),
        apis.serverappio.get_nodes(12345),
    ):
        with pytest.raises(NotFoundError, match="run 12345 does not exist") as caught:
            await call
        assert type(caught.value) is NotFoundError


async def test_what_crosses_does_not_alias_the_superlinks_objects(apis: Apis) -> None:
    node_config: dict[str, bool | int | float | str] = {"zone": "a"}
    await apis.fleet.register_node(node_config)
    run_config: dict[str, bool | int | float | str] = {"rounds": 3}
    run_id = await apis.serverappio.create_run("s:a", "c:a", run_config)
    node_config["zone"] = run_config["rounds"] = "changed by the caller"
    run = await apis.serverappio.get_run(run_id)
    run.run_config["rounds"] = 99
    [node] = await apis.serverappio.get_nodes(run_id)
    node.node_config["zone"] = "b"
    assert (await apis.serverappio.get_run(run_id)).run_config == {"rounds": 3}
    assert [n.node_config for n in await apis.serverappio.get_nodes(run_id)] == [{"zone": "a"}]


# --- messages and objects ------------------------------------------------------------------


async def test_an_instruction_and_its_reply_travel_with_their_arrays(apis: Apis) -> None:
    node = (await apis.fleet.register_node({})).node_id
    run_id = await apis.serverappio.create_run("s:a", "c:a", {})
    weights = np.arange(3 << 18, dtype=np.float32)  # 3 MiB: several chunks
    instruction, objects = _instruction(run_id, node, weights)

    async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
        pulled = tg.create_task(apis.fleet.pull_messages(node, timeout=10))  # long-poll first
        pushed = await apis.serverappio.push_messages(run_id, [instruction])
        assert pushed.message_ids == (instruction.message_id,)
        assert pushed.missing_object_ids == instruction.object_ids
        await _push_objects(apis.serverappio.push_object, run_id, instruction, objects)
        instruction.metadata.ttl = 1.0  # the SuperLink keeps its own copy
    [received] = pulled.result()
    assert received.metadata.ttl == 600
    assert (received.payload, received.object_ids) == (instruction.payload, instruction.object_ids)

    [object_id] = received.object_ids
    again = await apis.serverappio.push_object(run_id, object_id, weights.nbytes, _chunks(weights))
    assert again is False  # deduplicated
    chunks = [chunk async for chunk in apis.fleet.pull_object(node, object_id)]
    assert len(chunks) == 3
    assert all(memoryview(chunk).readonly for chunk in chunks)  # nobody can alter the store
    data = b"".join(chunks)
    task = decode_message(received, {object_id: data})
    np.testing.assert_array_equal(task.content.array_records["model"]["w"].numpy(), weights)

    reply, reply_objects = encode_message(
        task.create_reply(RecordDict({"model": ArrayRecord({"w": weights * 2})}))
    )
    result = await apis.fleet.push_messages(node, [reply])
    assert result.missing_object_ids == reply.object_ids
    await _push_objects(apis.fleet.push_object, node, reply, reply_objects)
    async with asyncio.timeout(10):
        [answer] = await apis.serverappio.pull_messages(run_id, [instruction.message_id], 10)
    assert answer.metadata.reply_to_message_id == instruction.message_id
    [reply_object] = answer.object_ids
    reply_data = await collect_object(
        reply_object, apis.serverappio.pull_object(run_id, reply_object)
    )
    decoded = decode_message(answer, {reply_object: reply_data})
    np.testing.assert_array_equal(decoded.content.array_records["model"]["w"].numpy(), weights * 2)


async def test_an_empty_poll_returns_after_its_timeout(apis: Apis) -> None:
    node = (await apis.fleet.register_node({})).node_id
    run_id = await apis.serverappio.create_run("s:a", "c:a", {})
    async with asyncio.timeout(5):
        assert await apis.fleet.pull_messages(node, timeout=0.05) == []
        assert await apis.serverappio.pull_messages(run_id, ["nope"], 0.05) == []


async def test_nodes_cannot_touch_what_is_not_addressed_to_them(apis: Apis) -> None:
    owner = (await apis.fleet.register_node({})).node_id
    other = (await apis.fleet.register_node({})).node_id
    run_id = await apis.serverappio.create_run("s:a", "c:a", {})
    instruction, objects = _instruction(run_id, owner, np.ones(4, dtype=np.float64))
    await apis.serverappio.push_messages(run_id, [instruction])
    await _push_objects(apis.serverappio.push_object, run_id, instruction, objects)
    [object_id] = instruction.object_ids

    with pytest.raises(PermissionDeniedError) as caught:
        async for _ in apis.fleet.pull_object(other, object_id):
            pass
    assert type(caught.value) is PermissionDeniedError

    [received] = await apis.fleet.pull_messages(owner, timeout=5)
    forged = decode_message(received, {object_id: objects[object_id]}).create_reply(RecordDict())
    forged.metadata.src_node_id = other
    envelope, _ = encode_message(forged)
    with pytest.raises(
        PermissionDeniedError, match=f"cannot answer message {instruction.message_id}"
    ):
        await apis.fleet.push_messages(other, [envelope])
    with pytest.raises(NotFoundError, match=MISSING):
        async for _ in apis.fleet.pull_object(owner, MISSING):
            pass


async def test_invalid_messages_are_refused_with_their_reason(apis: Apis) -> None:
    node = (await apis.fleet.register_node({})).node_id
    run_id = await apis.serverappio.create_run("s:a", "c:a", {})
    instruction, _ = _instruction(run_id, node, np.zeros(2))
    bad = replace(instruction, metadata=replace(instruction.metadata, ttl=0.0))
    with pytest.raises(InvalidMessageError, match="ttl must be positive") as caught:
        await apis.serverappio.push_messages(run_id, [bad])
    assert type(caught.value) is InvalidMessageError
    with pytest.raises(InvalidMessageError, match="not a sha256 hex digest"):
        await apis.serverappio.push_object(run_id, "not-an-id", 1, _chunks(b"x"))


async def test_acting_as_a_node_the_caller_did_not_register_is_unauthenticated(
    apis: Apis,
) -> None:
    with pytest.raises(UnauthenticatedError, match="carries no node token"):
        await apis.fleet.unregister_node(424242)
