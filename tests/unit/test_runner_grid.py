"""ServerAppIoGrid over the memory transport, against the real SuperLink and fake nodes.

The grid is synchronous and is called from a worker thread, as a ServerApp calls it; the
SuperLink and the fake nodes run on the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import pytest
from serverapp_nodes import fake_nodes
from stamen.codec import encode_message, object_id
from stamen.codec import message as codec_message
from stamen.codec.envelope import Envelope
from stamen.common.clock import FakeClock
from stamen.common.errors import RunNotRunningError
from stamen.common.message import ErrorCode, Message, MessageType
from stamen.common.push import PushResult
from stamen.common.records import ArrayRecord, MetricRecord, RecordDict
from stamen.runner.grid import ServerAppIoGrid
from stamen.superlink.superlink import SuperLink, open_superlink
from stamen.transport.api import Chunk, ServerAppIoApi
from stamen.transport.memory.apis import MemoryFleet, MemoryServerAppIo

pytestmark = pytest.mark.timeout(20)


class CountingServerAppIo:
    """Passes every call through and counts the object transfers."""

    def __init__(self, inner: ServerAppIoApi) -> None:
        self._inner = inner
        self.pushed_objects: list[str] = []
        self.pulled_objects: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def push_messages(self, run_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        return await self._inner.push_messages(run_id, envelopes)

    async def push_object(self, run_id: int, object_id: str, total_size: int, chunks: Any) -> bool:
        self.pushed_objects.append(object_id)
        return await self._inner.push_object(run_id, object_id, total_size, chunks)

    def pull_object(self, run_id: int, object_id: str) -> AsyncIterator[Chunk]:
        self.pulled_objects.append(object_id)
        return self._inner.pull_object(run_id, object_id)


@pytest.fixture
async def link() -> AsyncIterator[SuperLink]:
    async with open_superlink(":memory:") as link:
        yield link


@pytest.fixture
async def io(link: SuperLink) -> CountingServerAppIo:
    return CountingServerAppIo(MemoryServerAppIo(link.serverappio))


async def make_grid(io: CountingServerAppIo, **kwargs: Any) -> ServerAppIoGrid:
    run_id = await io.create_run("server:app", "client:app", {})
    run = await io.get_run(run_id)
    return ServerAppIoGrid(io, run, asyncio.get_running_loop(), **kwargs)  # type: ignore[arg-type]


def doubled(node_id: int, instruction: Message) -> Message:
    """Replies with the instruction's arrays doubled and the node's id as a metric."""
    arrays = instruction.content["model"]
    assert isinstance(arrays, ArrayRecord)
    content = RecordDict(
        {
            "model": ArrayRecord({k: a.numpy() * 2 for k, a in arrays.items()}),
            "metrics": MetricRecord({"node": node_id}),
        }
    )
    return instruction.create_reply(content)


def model_content(value: float = 1.0) -> RecordDict:
    arrays = ArrayRecord({"w": np.full((4, 3), value, np.float32), "b": np.arange(3.0)})
    return RecordDict({"model": arrays})


async def test_nodes_are_listed_with_their_config(link: SuperLink, io: CountingServerAppIo) -> None:
    grid = await make_grid(io)
    configs = [{"partition-id": 0}, {"partition-id": 1}]
    async with fake_nodes(MemoryFleet(link.fleet), configs, doubled) as node_ids:
        nodes = await asyncio.to_thread(grid.get_nodes)
        ids = await asyncio.to_thread(grid.get_node_ids)

    assert sorted(ids) == sorted(node_ids)
    by_id = {node.node_id: node.node_config for node in nodes}
    assert [by_id[i] for i in node_ids] == configs


async def test_send_and_receive_broadcasts_a_model_once(
    link: SuperLink, io: CountingServerAppIo
) -> None:
    grid = await make_grid(io)
    configs: list[dict[str, Any]] = [{}, {}, {}]
    async with fake_nodes(MemoryFleet(link.fleet), configs, doubled) as node_ids:
        content = model_content()
        messages = [grid.create_message(content, MessageType.TRAIN, n) for n in node_ids]
        replies = await asyncio.to_thread(grid.send_and_receive, messages, timeout=10)

    assert len(io.pushed_objects) == 2  # "w" and "b", once for all three nodes
    assert [r.metadata.reply_to_message_id for r in replies] == [
        m.metadata.message_id for m in messages
    ]
    assert [r.content["metrics"]["node"] for r in replies] == node_ids  # type: ignore[index]
    for reply in replies:
        assert reply.metadata.run_id == grid.run.run_id
        model = reply.content["model"]
        assert isinstance(model, ArrayRecord)
        np.testing.assert_array_equal(model["w"].numpy(), np.full((4, 3), 2.0, np.float32))
        np.testing.assert_array_equal(model["b"].numpy(), np.arange(3.0) * 2)
    # The three replies carry equal arrays: each object was downloaded once, and is shared
    # read-only.
    assert len(io.pulled_objects) == 2
    assert not replies[0].content["model"]["w"].numpy().flags.writeable  # type: ignore[index]


def echoed(node_id: int, instruction: Message) -> Message:
    """Replies with the instruction's own arrays (a frozen model part comes back as is)."""
    return instruction.create_reply(RecordDict({"model": instruction.content["model"]}))


async def test_arrays_a_reply_echoes_are_copied_from_the_push_not_downloaded(
    link: SuperLink, io: CountingServerAppIo
) -> None:
    grid = await make_grid(io)
    async with fake_nodes(MemoryFleet(link.fleet), [{}, {}], echoed) as node_ids:
        content = model_content(3.0)
        messages = [grid.create_message(content, MessageType.TRAIN, n) for n in node_ids]
        replies = await asyncio.to_thread(grid.send_and_receive, messages, timeout=10)

    assert io.pulled_objects == []
    for reply in replies:
        model = reply.content["model"]
        assert isinstance(model, ArrayRecord)
        np.testing.assert_array_equal(model["w"].numpy(), np.full((4, 3), 3.0, np.float32))
        # A copy, read-only: the caller's arrays and the reply's do not alias.
        assert not np.shares_memory(model["w"].numpy(), content["model"]["w"].numpy())  # type: ignore[index]
        assert not model["w"].numpy().flags.writeable


async def test_an_array_changed_after_its_push_is_downloaded_as_the_node_sent_it(
    link: SuperLink, io: CountingServerAppIo
) -> None:
    grid = await make_grid(io)
    weights = np.full((4, 3), 3.0, np.float32)
    content = RecordDict({"model": ArrayRecord({"w": weights})})
    pushed = asyncio.Event()

    def echo_after_change(node_id: int, instruction: Message) -> Message:
        weights[:] = -1  # the ServerApp changes its model in place while the node works
        pushed.set()
        return echoed(node_id, instruction)

    async with fake_nodes(MemoryFleet(link.fleet), [{}], echo_after_change) as node_ids:
        messages = [grid.create_message(content, MessageType.TRAIN, node_ids[0])]
        replies = await asyncio.to_thread(grid.send_and_receive, messages, timeout=10)

    assert pushed.is_set()
    assert len(io.pulled_objects) == 1
    model = replies[0].content["model"]
    assert isinstance(model, ArrayRecord)
    np.testing.assert_array_equal(model["w"].numpy(), np.full((4, 3), 3.0, np.float32))


async def test_a_broadcast_model_is_hashed_once_per_push(
    link: SuperLink, io: CountingServerAppIo, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = await make_grid(io)
    node_ids = [(await link.fleet.register_node({})).node_id for _ in range(3)]
    hashed: list[int] = []

    def counting_object_id(data: Any) -> str:
        hashed.append(memoryview(data).nbytes)
        return object_id(data)

    monkeypatch.setattr(codec_message, "object_id", counting_object_id)
    content = model_content()
    messages = [grid.create_message(content, MessageType.TRAIN, n) for n in node_ids]
    await asyncio.to_thread(grid.push_messages, messages)

    assert sorted(hashed) == [24, 48]  # "b" and "w", once each for three messages


async def test_pull_messages_returns_only_what_has_arrived(
    link: SuperLink, io: CountingServerAppIo
) -> None:
    grid = await make_grid(io)
    fleet = MemoryFleet(link.fleet)
    node_id = (await fleet.register_node({})).node_id
    message = Message(model_content(), node_id, MessageType.EVALUATE)

    ids = await asyncio.to_thread(grid.push_messages, [message])
    before = await asyncio.to_thread(grid.pull_messages, ids)
    (envelope,) = await fleet.pull_messages(node_id, 1.0)
    instruction = Message(RecordDict(), metadata=envelope.metadata)  # arrays not needed
    reply, _ = encode_message(instruction.create_reply(RecordDict()))
    await fleet.push_messages(node_id, [reply])
    after = await asyncio.to_thread(grid.pull_messages, ids)

    assert message.metadata.run_id == grid.run.run_id  # stamped by the push
    assert ids == [message.metadata.message_id]
    assert before == []
    assert [r.metadata.reply_to_message_id for r in after] == ids


async def test_a_silent_node_leaves_its_reply_out_after_the_timeout(
    link: SuperLink, io: CountingServerAppIo
) -> None:
    grid = await make_grid(io, poll_timeout=0.05)

    def odd_nodes_only(node_id: int, instruction: Message) -> Message | None:
        return doubled(node_id, instruction) if int(instruction.metadata.group_id) % 2 else None

    async with fake_nodes(MemoryFleet(link.fleet), [{}, {}], odd_nodes_only) as node_ids:
        messages = [
            grid.create_message(model_content(), MessageType.TRAIN, n, group_id=str(i))
            for i, n in enumerate(node_ids)
        ]
        replies = await asyncio.to_thread(grid.send_and_receive, messages, timeout=0.3)

    assert [r.metadata.dst_node_id for r in replies] == [0]
    assert [r.metadata.src_node_id for r in replies] == [node_ids[1]]


async def test_an_offline_node_yields_an_error_reply() -> None:
    clock = FakeClock()
    async with open_superlink(":memory:", clock=clock) as link:
        io = CountingServerAppIo(MemoryServerAppIo(link.serverappio))
        grid = await make_grid(io)
        node_id = (await link.fleet.register_node({})).node_id
        clock.advance(60.0)
        link.sweep()  # the node missed its heartbeats: offline
        message = grid.create_message(model_content(), MessageType.TRAIN, node_id)

        replies = await asyncio.to_thread(grid.send_and_receive, [message], timeout=5)

    assert len(replies) == 1
    assert replies[0].error.code == ErrorCode.NODE_UNAVAILABLE


async def test_a_run_stopped_from_outside_ends_a_wait_without_timeout(
    link: SuperLink, io: CountingServerAppIo
) -> None:
    grid = await make_grid(io, poll_timeout=0.05)
    async with fake_nodes(MemoryFleet(link.fleet), [{}], lambda n, m: None) as node_ids:
        message = grid.create_message(model_content(), MessageType.TRAIN, node_ids[0])
        waiting = asyncio.create_task(
            asyncio.to_thread(grid.send_and_receive, [message], timeout=None)
        )
        await asyncio.sleep(0.1)
        await link.control.stop_run(grid.run.run_id)
        with pytest.raises(RunNotRunningError, match="stopped"):
            await waiting


async def test_a_closed_grid_refuses_calls_and_abandons_waits(
    link: SuperLink, io: CountingServerAppIo
) -> None:
    grid = await make_grid(io)
    async with fake_nodes(MemoryFleet(link.fleet), [{}], lambda n, m: None) as node_ids:
        message = grid.create_message(model_content(), MessageType.TRAIN, node_ids[0])
        waiting = asyncio.create_task(
            asyncio.to_thread(grid.send_and_receive, [message], timeout=None)
        )
        await asyncio.sleep(0.1)
        grid.close()
        with pytest.raises(RunNotRunningError):
            await waiting
    with pytest.raises(RunNotRunningError):
        await asyncio.to_thread(grid.get_nodes)


async def test_calling_from_the_event_loop_is_refused(io: CountingServerAppIo) -> None:
    grid = await make_grid(io)
    with pytest.raises(RuntimeError, match="worker thread"):
        grid.get_nodes()
