"""One SuperNode on loopback: its idle memory, and how soon a pushed message reaches fit.

Starts `stamen-superlink --insecure` and one `stamen-supernode` (worker process isolation)
whose ClientApp imports torch, then:
- idle RSS: the sum over the node's process tree (the node and its app worker), once it
  has registered and sits in its long poll;
- latency: `--messages` times, one at a time, pushes a train instruction (a small model)
  over ServerAppIo and reads from the reply the wall-clock time at which the app's `fit`
  began; prints the median and 90th percentile of (fit began - push began).

    .venv/bin/python -m benchmarks.supernode_latency --messages 100
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import psutil
from stamen.codec import collect_object, decode_message, encode_message, iter_chunks
from stamen.common.legacy import (
    FitIns,
    fitins_to_recorddict,
    ndarrays_to_parameters,
    recorddict_to_fitres,
)
from stamen.common.message import Message, MessageType
from stamen.common.run import RunStatus
from stamen.transport.grpc.channel import connect
from stamen.transport.grpc.clients import GrpcServerAppIoClient

BIN = Path(sys.executable).parent
START_TIMEOUT = 120.0
SETTLE_SECONDS = 3.0

CLIENT_APP = """
import time

import torch  # what a real app costs in memory

from stamen.client import ClientApp, NumPyClient


class Timed(NumPyClient):
    def fit(self, parameters, config):
        began = time.time()
        return parameters, 1, {"fit_began": began, "torch_threads": torch.get_num_threads()}


app = ClientApp(client_fn=lambda context: Timed())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_line(log: Path, pattern: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll `log` until a line matches (a benchmark harness, not a service)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if regex.search(log.read_text(errors="replace")):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited:\n{log.read_text()}")
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {pattern!r} in {log}")


def tree_rss(pid: int) -> tuple[int, int]:
    """RSS of the process and the sum over it and all of its descendants, in bytes."""
    root = psutil.Process(pid)
    own = root.memory_info().rss
    return own, own + sum(child.memory_info().rss for child in root.children(recursive=True))


async def _chunks(data: memoryview | bytes | bytearray) -> AsyncIterator[memoryview]:
    for chunk in iter_chunks(data):
        yield chunk


async def measure_latency(serverappio: str, messages: int) -> list[float]:
    channel = connect(serverappio, root_certificates=None, insecure=True)
    try:
        api = GrpcServerAppIoClient(channel)
        run_id = await api.create_run("server:app", "client:app", {})
        await api.update_run_status(run_id, RunStatus.RUNNING)
        (node,) = await api.get_nodes(run_id)
        delays = []
        for index in range(messages):
            model = np.full(1000, index, dtype=np.float32)  # a new object every time
            content = fitins_to_recorddict(FitIns(ndarrays_to_parameters([model]), {}))
            message = Message(content, node.node_id, MessageType.TRAIN)
            message.metadata.run_id = run_id
            envelope, objects = encode_message(message)
            pushed = time.time()
            result = await api.push_messages(run_id, [envelope])
            for object_id in result.missing_object_ids:
                data = objects[object_id]
                await api.push_object(run_id, object_id, memoryview(data).nbytes, _chunks(data))
            replies = []
            while not replies:
                replies = await api.pull_messages(run_id, [envelope.message_id], timeout=30)
            (reply,) = replies
            reply_objects = {
                oid: await collect_object(oid, api.pull_object(run_id, oid))
                for oid in reply.object_ids
            }
            metrics = recorddict_to_fitres(decode_message(reply, reply_objects).content).metrics
            began = metrics["fit_began"]
            assert isinstance(began, float)
            delays.append(began - pushed)
        return delays
    finally:
        channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "client.py").write_text(CLIENT_APP)
        fleet, serverappio, control = (f"127.0.0.1:{free_port()}" for _ in range(3))
        link_log, node_log = directory / "superlink.log", directory / "supernode.log"
        with link_log.open("wb") as out:
            link = subprocess.Popen(
                [BIN / "stamen-superlink", "--insecure", "--database", ":memory:",
                 "--fleet-api-address", fleet, "--serverappio-api-address", serverappio,
                 "--control-api-address", control],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for_line(link_log, "SuperLink ready", link)
            started = time.monotonic()
            with node_log.open("wb") as out:
                node = subprocess.Popen(
                    [BIN / "stamen-supernode", "client:app", "--dir", str(directory),
                     "--insecure", "--server", fleet],
                    stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            try:
                wait_for_line(node_log, r"registered as node \d+", node)
                print(f"node registered {time.monotonic() - started:.1f}s after its start")
                time.sleep(SETTLE_SECONDS)
                own, total = tree_rss(node.pid)
                print(
                    f"idle RSS: {total / 2**20:.0f} MiB over the node's process tree "
                    f"(node {own / 2**20:.0f} MiB, app worker {(total - own) / 2**20:.0f} MiB)"
                )
                delays = asyncio.run(measure_latency(serverappio, args.messages))
                ms = sorted(d * 1000 for d in delays)
                print(
                    f"push -> fit began, {len(ms)} messages: median {statistics.median(ms):.1f} "
                    f"ms, p90 {ms[int(len(ms) * 0.9) - 1]:.1f} ms, min {ms[0]:.1f} ms, "
                    f"max {ms[-1]:.1f} ms"
                )
            finally:
                node.terminate()
                node.wait(30)
        finally:
            link.terminate()
            link.wait(30)


if __name__ == "__main__":
    main()
