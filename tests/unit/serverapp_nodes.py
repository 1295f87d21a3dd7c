"""Fake SuperNodes for ServerApp runner tests: coroutines that pull over Fleet and reply.

They speak the Fleet API the way a SuperNode does (pull, fetch objects, decode, answer,
encode, push, upload what is missing) but call a plain function instead of a ClientApp.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from stamen.codec import collect_object, decode_message, encode_message, iter_chunks
from stamen.common.message import Message
from stamen.common.records import UserConfig
from stamen.transport.api import FleetApi

Answer = Callable[[int, Message], Message | None]
"""(node id, instruction) -> the reply, or None to stay silent."""


async def _chunks(data: bytes | bytearray | memoryview) -> AsyncIterator[memoryview]:
    for chunk in iter_chunks(data):
        yield chunk


async def serve_node(fleet: FleetApi, node_id: int, answer: Answer) -> None:
    """Answer instructions for `node_id` until cancelled."""
    while True:
        for envelope in await fleet.pull_messages(node_id, 1.0):
            objects = {
                oid: await collect_object(oid, fleet.pull_object(node_id, oid))
                for oid in envelope.object_ids
            }
            reply = answer(node_id, decode_message(envelope, objects))
            if reply is None:
                continue
            reply_envelope, reply_objects = encode_message(reply)
            pushed = await fleet.push_messages(node_id, [reply_envelope])
            for oid in pushed.missing_object_ids:
                data = reply_objects[oid]
                await fleet.push_object(node_id, oid, memoryview(data).nbytes, _chunks(data))


@asynccontextmanager
async def fake_nodes(
    fleet: FleetApi, node_configs: Sequence[UserConfig], answer: Answer
) -> AsyncIterator[list[int]]:
    """Register one node per config and serve them while the block runs; yields their ids."""
    node_ids = [(await fleet.register_node(config)).node_id for config in node_configs]
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(serve_node(fleet, node_id, answer)) for node_id in node_ids]
        try:
            yield node_ids
        finally:
            for task in tasks:
                task.cancel()
