"""The real `stamen-superlink` process on 127.0.0.1, driven through the real gRPC clients.

- it serves three APIs and health on the ports it reports (port 0), registers 100 nodes,
  and exits 0 within seconds of SIGTERM;
- a 64 MiB array goes through it and back, and its memory grows by less than 3x that;
- over TLS (a CA from scripts/make-certs.sh) a trusting client gets in and a plaintext
  client is refused with a line that says why;
- SIGKILL and a restart on the same SQLite file keep a node's registration, a pending
  message and its array;
- a second SIGTERM forces an exit (EXIT_CANCELLED) while a call holds the graceful shutdown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
from grpclib.client import Channel
from procs import Procs, SuperLink, superlink_args
from stamen.codec import collect_object, decode_message, encode_message, iter_chunks
from stamen.codec.envelope import Envelope
from stamen.codec.objects import Buffer
from stamen.common.cli import EXIT_CANCELLED
from stamen.common.errors import ConfigError, StamenError, UnavailableError
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, RecordDict
from stamen.transport.grpc import (
    GrpcFleetClient,
    GrpcServerAppIoClient,
    check_health,
    connect,
)

pytestmark = pytest.mark.integration

MiB = 1 << 20
CALL_BOUND = 30.0
"""Seconds any one step of a test may take on a busy machine."""


@asynccontextmanager
async def channel(address: str, certs: Path | None = None) -> AsyncIterator[Channel]:
    opened = connect(
        address,
        root_certificates=None if certs is None else certs / "ca.crt",
        insecure=certs is None,
    )
    try:
        yield opened
    finally:
        opened.close()


async def _chunks(data: Buffer) -> AsyncIterator[memoryview]:
    for chunk in iter_chunks(data):
        yield chunk


async def push_instruction(
    serverappio: GrpcServerAppIoClient, node: int, array: np.ndarray
) -> tuple[int, Envelope]:
    """Create a run and send `node` a train instruction carrying `array`."""
    run_id = await serverappio.create_run("server:app", "client:app", {})
    content = RecordDict({"w": ArrayRecord([array])})
    message = Message(content, dst_node_id=node, message_type="train")
    message.metadata.run_id = run_id
    envelope, objects = encode_message(message)
    result = await serverappio.push_messages(run_id, [envelope])
    for object_id in result.missing_object_ids:
        data = memoryview(objects[object_id])
        await serverappio.push_object(run_id, object_id, data.nbytes, _chunks(data))
    return run_id, envelope


async def receive_instruction(fleet: GrpcFleetClient, node: int) -> np.ndarray:
    """Pull `node`'s instruction and its array."""
    [envelope] = await fleet.pull_messages(node, timeout=CALL_BOUND)
    [object_id] = envelope.object_ids
    data = await collect_object(object_id, fleet.pull_object(node, object_id))
    message = decode_message(envelope, {object_id: data})
    return message.content.array_records["w"]["0"].numpy()


def start(
    procs: Procs,
    *,
    certs: Path | None = None,
    database: str = ":memory:",
    extra: tuple[str, ...] = (),
) -> SuperLink:
    return SuperLink.started(
        procs.start("superlink", superlink_args(certs=certs, database=database, extra=extra))
    )


def stop(link: SuperLink) -> float:
    """SIGTERM; assert exit code 0; the seconds it took."""
    began = time.monotonic()
    assert link.proc.terminate(timeout=10) == 0, link.proc.tail()
    assert "SuperLink stopped" in link.proc.output()
    return time.monotonic() - began


async def test_serves_100_nodes_and_stops_on_sigterm(procs: Procs, tmp_path: Path) -> None:
    link = start(procs, database=str(tmp_path / "state.db"))
    async with asyncio.timeout(CALL_BOUND):
        for address in (link.fleet, link.serverappio, link.control):
            async with channel(address) as opened:
                await check_health(opened, timeout=5)
        async with channel(link.fleet) as f, channel(link.serverappio) as s:
            fleet, serverappio = GrpcFleetClient(f), GrpcServerAppIoClient(s)
            async with asyncio.TaskGroup() as tg:
                registering = [
                    tg.create_task(fleet.register_node({"partition-id": i})) for i in range(100)
                ]
            node_ids = {task.result().node_id for task in registering}
            assert len(node_ids) == 100
            run_id = await serverappio.create_run("server:app", "client:app", {})
            nodes = await serverappio.get_nodes(run_id)
    assert {n.node_id for n in nodes} == node_ids
    assert sorted(n.node_config["partition-id"] for n in nodes) == list(range(100))
    assert stop(link) < 5.0


async def test_a_64_mib_array_passes_with_bounded_memory(procs: Procs, tmp_path: Path) -> None:
    link = start(procs, database=str(tmp_path / "state.db"))
    server = psutil.Process(link.proc.pid)
    array = np.random.default_rng(0).random(64 * MiB // 8)  # float64: 64 MiB
    async with asyncio.timeout(CALL_BOUND):
        async with channel(link.fleet) as f, channel(link.serverappio) as s:
            fleet, serverappio = GrpcFleetClient(f), GrpcServerAppIoClient(s)
            node = (await fleet.register_node({})).node_id
            baseline = server.memory_info().rss
            await push_instruction(serverappio, node, array)
            received = await receive_instruction(fleet, node)
        peak = _peak_rss(server.pid)
    np.testing.assert_array_equal(received, array)
    assert peak - baseline < 3 * array.nbytes, f"grew by {(peak - baseline) / MiB:.0f} MiB"
    stop(link)


async def test_tls_admits_a_trusting_client_and_refuses_a_plaintext_one(
    procs: Procs, certs: Path
) -> None:
    link = start(procs, certs=certs)
    async with asyncio.timeout(CALL_BOUND):
        async with channel(link.fleet, certs) as secure:
            await check_health(secure, timeout=5)
            assert (await GrpcFleetClient(secure).register_node({})).node_id > 0
        async with channel(link.fleet) as plain:
            with pytest.raises(ConfigError, match="requires TLS"):
                await GrpcFleetClient(plain).register_node({})
    stop(link)


async def test_sigkill_and_restart_keep_nodes_and_pending_messages(
    procs: Procs, tmp_path: Path
) -> None:
    database = str(tmp_path / "state.db")
    extra = ("--heartbeat-interval", "60")  # the node must not be declared dead meanwhile
    array = np.arange(1000, dtype=np.int32)
    link = start(procs, database=database, extra=extra)
    async with asyncio.timeout(CALL_BOUND):
        async with channel(link.fleet) as f, channel(link.serverappio) as s:
            registration = await GrpcFleetClient(f).register_node({"name": "kept"})
            node = registration.node_id
            await push_instruction(GrpcServerAppIoClient(s), node, array)
    link.proc.kill()

    restarted = start(procs, database=database, extra=extra)
    async with asyncio.timeout(CALL_BOUND), channel(restarted.fleet) as f:
        fleet = GrpcFleetClient(f)
        fleet._tokens[node] = registration.token  # its token is good after the restart
        assert await fleet.heartbeat(node) == 60.0
        np.testing.assert_array_equal(await receive_instruction(fleet, node), array)
    stop(restarted)


async def test_a_second_sigterm_forces_exit(procs: Procs, tmp_path: Path) -> None:
    link = start(procs, extra=("--grace-period", "60"))
    sending = asyncio.Event()

    async def slow_chunks() -> AsyncIterator[bytes]:
        while True:  # holds the graceful shutdown: it never finishes
            yield bytes(8)
            sending.set()
            await asyncio.sleep(0.05)

    async with asyncio.timeout(CALL_BOUND):
        async with channel(link.fleet) as f, channel(link.serverappio) as s:
            node = (await GrpcFleetClient(f).register_node({})).node_id
            serverappio = GrpcServerAppIoClient(s)
            run_id, envelope = await push_instruction(serverappio, node, np.zeros(2))
            [object_id] = envelope.object_ids
            async with asyncio.TaskGroup() as tg:
                push = serverappio.push_object(run_id, object_id, MiB, slow_chunks())
                pushing = tg.create_task(_raised(push))
                await sending.wait()
                link.proc.popen.terminate()
                await asyncio.to_thread(link.proc.wait_for, r"waiting up to 60s for 1 call")
                link.proc.popen.terminate()
    assert isinstance(pushing.result(), UnavailableError)  # the connection went away
    assert link.proc.wait(10) == EXIT_CANCELLED
    assert "forcing exit" in link.proc.output()


async def _raised(call: Awaitable[object]) -> BaseException | None:
    try:
        await call
    except StamenError as exc:
        return exc
    return None


def _peak_rss(pid: int) -> int:
    """The process's peak resident set size (Linux: VmHWM)."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        pytest.skip("peak RSS is read from /proc (Linux)")
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")
