"""Three `stamen-supernode` processes against a real `stamen-superlink` on loopback.

The test plays the ServerApp over gRPC (ServerAppIo): it sends each node a train
instruction and checks every reply (the model plus one, and the node's own partition);
then SIGTERM stops each node gracefully (exit 0, unregistered).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from procs import Procs, SuperLink, start_supernodes, superlink_args, terminate_all
from stamen.codec import Envelope, collect_object, decode_message, encode_message, iter_chunks
from stamen.common.legacy import (
    FitIns,
    fitins_to_recorddict,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
    recorddict_to_fitres,
)
from stamen.common.message import Message, MessageType
from stamen.common.run import RunStatus
from stamen.transport.grpc.channel import connect
from stamen.transport.grpc.clients import GrpcServerAppIoClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

NODES = 3

CLIENT_APP = """
from stamen.client import ClientApp, NumPyClient


class PlusOne(NumPyClient):
    def __init__(self, partition):
        self.partition = partition

    def fit(self, parameters, config):
        return [p + 1 for p in parameters], 1, {"partition": self.partition}


app = ClientApp(client_fn=lambda context: PlusOne(int(context.node_config["partition-id"])))
"""


async def _chunks(data: memoryview | bytes | bytearray) -> AsyncIterator[memoryview]:
    for chunk in iter_chunks(data):
        yield chunk


async def train_every_node(serverappio: str) -> dict[int, tuple[list[float], list[float]]]:
    """Send each online node a train instruction with a model of its own; the replies,
    as partition id -> (the model sent, the model that came back)."""
    channel = connect(serverappio, root_certificates=None, insecure=True)
    try:
        api = GrpcServerAppIoClient(channel)
        run_id = await api.create_run("server:app", "client:app", {})
        await api.update_run_status(run_id, RunStatus.RUNNING)
        nodes = await api.get_nodes(run_id)
        assert len(nodes) == NODES
        sent: dict[str, list[float]] = {}
        for index, node in enumerate(nodes):
            # A model of its own for each node: replies share no object.
            model = np.arange(4, dtype=np.float32) + 10 * index
            content = fitins_to_recorddict(FitIns(ndarrays_to_parameters([model]), {}))
            message = Message(content, node.node_id, MessageType.TRAIN)
            message.metadata.run_id = run_id
            envelope, objects = encode_message(message)
            result = await api.push_messages(run_id, [envelope])
            for object_id in result.missing_object_ids:
                data = objects[object_id]
                await api.push_object(run_id, object_id, memoryview(data).nbytes, _chunks(data))
            sent[envelope.message_id] = model.tolist()
        replies: list[Envelope] = []
        async with asyncio.timeout(30):
            while len(replies) < NODES:
                waiting = set(sent) - {r.metadata.reply_to_message_id for r in replies}
                replies += await api.pull_messages(run_id, sorted(waiting), timeout=10)
        answers = {}
        for envelope in replies:
            partition, returned = await _fitted(api, run_id, envelope)
            answers[partition] = (sent[envelope.metadata.reply_to_message_id], returned)
        return answers
    finally:
        channel.close()


async def _fitted(
    api: GrpcServerAppIoClient, run_id: int, envelope: Envelope
) -> tuple[int, list[float]]:
    objects = {
        object_id: await collect_object(object_id, api.pull_object(run_id, object_id))
        for object_id in envelope.object_ids
    }
    reply = decode_message(envelope, objects)
    res = recorddict_to_fitres(reply.content)
    partition = res.metrics["partition"]
    assert isinstance(partition, int)
    return partition, parameters_to_ndarrays(res.parameters)[0].tolist()


def test_three_supernodes_answer_train_instructions_and_stop_on_sigterm(
    procs: Procs, tmp_path: Path
) -> None:
    (tmp_path / "client.py").write_text(CLIENT_APP)
    link = SuperLink.started(procs.start("superlink", superlink_args(certs=None)))
    nodes = start_supernodes(procs, NODES, "client:app", tmp_path, link.fleet, certs=None)

    models = asyncio.run(train_every_node(link.serverappio))

    assert sorted(models) == list(range(NODES))
    for model, returned in models.values():
        assert returned == [value + 1 for value in model]
    for node in nodes:
        node.wait_for(r"replied to train message \w+ in \d+\.\d+s")
    assert terminate_all(nodes) == {node.name: 0 for node in nodes}
    for node in nodes:
        assert node.matches(r"unregistered node \d+"), node.tail()
    assert link.proc.terminate() == 0, link.proc.tail()
