"""Handing an instruction to its node is a lease until the node answers it.

A lost PullMessages response must not lose the instruction: the SuperLink hands it out
again once its lease lapses, and the node (which skips what it answered already) runs it
once. The SuperLink's rules are checked on a FakeClock; the end-to-end cases drop the
first PullMessages response that carries work, in-process and over loopback gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from stamen.codec.envelope import Envelope
from stamen.common.clock import FakeClock
from stamen.common.errors import UnavailableError
from stamen.superlink import MemoryLinkState, MemoryObjectStore, SuperLink
from stamen.superlink.deliveries import Deliveries
from stamen.superlink.superlink import open_superlink
from stamen.supernode.agent import SuperNodeAgent
from stamen.transport.api import FleetApi
from stamen.transport.grpc import GrpcFleetClient, connect
from stamen.transport.grpc.server import api_server, listen, socket_address
from stamen.transport.grpc.servicers import FleetServicer
from stamen.transport.memory import MemoryFleet, MemoryServerAppIo
from superlink_support import instruction, make_link, reply, running_setup
from test_supernode_agent import (
    FAST,
    PLUS_ONE,
    CountingExecutor,
    ServerSide,
    Wrapped,
    fit_content,
    fitted,
    node_id_of,
    running,
)

pytestmark = pytest.mark.timeout(30)

LEASE = 10.0


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_an_unanswered_instruction_is_handed_out_again_once_its_lease_lapses(
    kind: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    link = make_link(kind, tmp_path, clock)
    try:
        setup = await running_setup(link)
        ins = instruction(setup.run_id, setup.node_id)
        await link.serverappio.push_messages(setup.run_id, [ins])
        assert await link.fleet.pull_messages(setup.node_id, timeout=0) == [ins]
        clock.advance(LEASE - 0.1)
        assert await link.fleet.pull_messages(setup.node_id, timeout=0) == []
        clock.advance(0.1)
        assert await link.fleet.pull_messages(setup.node_id, timeout=0) == [ins]
        clock.advance(LEASE)
        await link.fleet.push_messages(setup.node_id, [reply(ins)])
        assert await link.fleet.pull_messages(setup.node_id, timeout=0) == []  # answered
    finally:
        link.close()


@pytest.mark.parametrize("made", ["constructed", "opened"])
async def test_a_long_poll_returns_the_instruction_when_its_lease_lapses(made: str) -> None:
    # "opened": as serve() makes its SuperLink, from --delivery-lease.
    link = (
        open_superlink(":memory:", delivery_lease=0.2)
        if made == "opened"
        else SuperLink(MemoryLinkState(), MemoryObjectStore(), delivery_lease=0.2)
    )
    async with link:
        setup = await running_setup(link)
        ins = instruction(setup.run_id, setup.node_id)
        await link.serverappio.push_messages(setup.run_id, [ins])
        assert await link.fleet.pull_messages(setup.node_id, timeout=0) == [ins]
        async with asyncio.timeout(5):  # well inside the default lease, 10 s
            assert await link.fleet.pull_messages(setup.node_id, timeout=20) == [ins]


def test_deliveries_know_what_is_on_lease_and_when_it_lapses() -> None:
    deliveries = Deliveries(lease=5.0)
    deliveries.handed(["a"], now=100.0)
    deliveries.handed(["b"], now=102.0)
    assert deliveries.leased("a", 104.9)
    assert not deliveries.leased("a", 105.0)
    assert not deliveries.leased("never-handed", 100.0)
    assert deliveries.next_lapse(["a", "b"], 101.0) == 105.0
    assert deliveries.next_lapse(["a", "b"], 106.0) == 107.0
    assert deliveries.next_lapse(["a", "b"], 108.0) is None
    deliveries.forget(["b"])
    assert not deliveries.leased("b", 103.0)
    with pytest.raises(ValueError, match="must not be negative"):
        Deliveries(lease=-1.0)


class LosesFirstWork(Wrapped):
    """The SuperLink hands out the first work, but the response never reaches the node."""

    def __init__(self, inner: FleetApi) -> None:
        super().__init__(inner)
        self.lost: list[Envelope] = []

    async def pull_messages(self, node_id: int, timeout: float) -> list[Envelope]:
        envelopes = await super().pull_messages(node_id, timeout)
        if envelopes and not self.lost:
            self.lost = envelopes
            raise UnavailableError("the PullMessages response was lost (test)")
        return envelopes


async def _served_over_grpc(fleet: FleetApi, stack: AsyncExitStack) -> FleetApi:
    sock = listen("127.0.0.1:0")
    server = api_server(FleetServicer(fleet))
    await server.start(sock=sock)
    stack.push_async_callback(server.wait_closed)
    stack.callback(server.close)
    channel = connect(socket_address(sock), root_certificates=None, insecure=True)
    stack.callback(channel.close)
    return GrpcFleetClient(channel, timeout=10)


Lossy = tuple[SuperLink, LosesFirstWork, FleetApi]


@pytest.fixture(params=["memory", "grpc"])
async def lossy(request: pytest.FixtureRequest) -> AsyncIterator[Lossy]:
    """A SuperLink with a short delivery lease, whose first response with work is lost
    (over gRPC: the node gets UNAVAILABLE after the SuperLink handed the work out), and
    the Fleet API the node uses."""
    async with AsyncExitStack() as stack:
        link = await stack.enter_async_context(
            SuperLink(MemoryLinkState(), MemoryObjectStore(), delivery_lease=0.2)
        )
        if request.param == "memory":
            loses = LosesFirstWork(MemoryFleet(link.fleet))
            yield link, loses, loses
        else:
            loses = LosesFirstWork(link.fleet)
            yield link, loses, await _served_over_grpc(loses, stack)


async def test_an_instruction_whose_pull_response_was_lost_is_answered_once(
    lossy: Lossy,
) -> None:
    link, loses, fleet = lossy
    serverappio = MemoryServerAppIo(link.serverappio)
    run_id = await serverappio.create_run("server:app", "client:app", {"lr": 0.1})
    await serverappio.update_run_status(run_id, "running")
    server = ServerSide(serverappio, run_id)
    executor = CountingExecutor(PLUS_ONE)
    agent = SuperNodeAgent(fleet, executor, {"partition-id": 0}, backoff=FAST)
    async with running(agent):
        first = await server.send(fit_content([1]), node_id_of(agent), "train")
        assert fitted(await server.reply(first))[0] == [2.0]
        second = await server.send(fit_content([5]), node_id_of(agent), "train")
        assert fitted(await server.reply(second))[0] == [6.0]
    assert [e.message_id for e in loses.lost] == [first]
    assert executor.runs == 2
