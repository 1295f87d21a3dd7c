"""Runs have an owner: the runner's lease, refused to a second runner, failing its run
when it lapses. The SuperLink's side in virtual time; the runner's over the memory
transport and over gRPC."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from grpclib.testing import ChannelFor
from stamen.common.clock import FakeClock
from stamen.common.context import Context
from stamen.common.errors import RunLeaseHeldError, RunNotRunningError, StamenError
from stamen.common.run import RunStatus
from stamen.runner.runner import run_serverapp
from stamen.server import Grid, History
from stamen.superlink import MemoryLinkState
from stamen.superlink.leases import RunLeases
from stamen.superlink.objectstore import MemoryObjectStore
from stamen.superlink.superlink import SuperLink
from stamen.transport.grpc.clients import GrpcServerAppIoClient
from stamen.transport.grpc.errors import FailureCodec
from stamen.transport.grpc.servicers import ServerAppIoServicer
from stamen.transport.memory import MemoryServerAppIo

pytestmark = pytest.mark.timeout(30)


def test_a_lease_is_its_holders_until_it_lapses() -> None:
    leases = RunLeases(duration=10)
    assert leases.renew(1, "a", now=0) == 10
    assert leases.renew(1, "a", now=5) == 10  # renewed: lasts to 15
    with pytest.raises(RunLeaseHeldError, match=r"run 1 is driven by another ServerApp runner"):
        leases.renew(1, "b", now=14)
    assert leases.lapsed(now=14.9) == []
    assert leases.lapsed(now=15) == [1]
    assert leases.renew(1, "b", now=16) == 10  # lapsed: anyone may take it


def test_a_run_found_running_at_start_gives_its_runner_one_lease_to_come_back() -> None:
    leases = RunLeases(duration=10)
    leases.adopt(7, now=0)
    leases.renew(7, "any", now=3)  # the first runner to renew takes it
    with pytest.raises(RunLeaseHeldError):
        leases.renew(7, "other", now=4)
    leases.adopt(8, now=0)
    assert leases.lapsed(now=10) == [8]


@pytest.fixture
async def clock_and_link() -> AsyncIterator[tuple[FakeClock, SuperLink]]:
    clock = FakeClock()
    link = SuperLink(
        MemoryLinkState(), MemoryObjectStore(), clock=clock, run_lease=10, sweep_interval=3600
    )
    async with link:
        yield clock, link


async def test_a_run_whose_runner_stops_renewing_fails_with_the_reason(
    clock_and_link: tuple[FakeClock, SuperLink],
) -> None:
    clock, link = clock_and_link
    io = MemoryServerAppIo(link.serverappio)
    run_id = await io.create_run("server:app", "", {})
    await io.renew_run_lease(run_id, "runner-a")
    await io.update_run_status(run_id, RunStatus.RUNNING)
    with pytest.raises(StamenError, match="driven by another ServerApp runner"):
        await io.renew_run_lease(run_id, "runner-b")

    clock.advance(9)
    await io.renew_run_lease(run_id, "runner-a")  # back in time: it continues
    clock.advance(9)
    link.sweep()
    assert (await io.get_run(run_id)).status == RunStatus.RUNNING
    clock.advance(2)
    link.sweep()
    run = await io.get_run(run_id)
    assert (run.status, run.sub_status) == (RunStatus.FINISHED, RunStatus.FAILED)
    assert "ServerApp runner stopped responding" in run.details
    with pytest.raises(RunNotRunningError):
        await io.renew_run_lease(run_id, "runner-a")


async def test_two_runners_cannot_drive_one_run(
    clock_and_link: tuple[FakeClock, SuperLink],
) -> None:
    _, link = clock_and_link
    io = MemoryServerAppIo(link.serverappio)
    started, go_on = threading.Event(), threading.Event()

    def app(grid: Grid, context: Context) -> History:
        started.set()
        go_on.wait(10)
        return History()

    run_id = await io.create_run("server:app", "", {})
    first = asyncio.create_task(
        run_serverapp(io, app, server_app_ref="server:app", run_config={}, run_id=run_id)
    )
    assert await asyncio.to_thread(started.wait, 10)
    with pytest.raises(RunLeaseHeldError, match=f"run {run_id} is driven by another"):
        await run_serverapp(io, app, server_app_ref="server:app", run_config={}, run_id=run_id)
    go_on.set()
    await first
    run = await io.get_run(run_id)
    assert (run.status, run.sub_status) == (RunStatus.FINISHED, RunStatus.COMPLETED)


async def test_the_lease_crosses_grpc(clock_and_link: tuple[FakeClock, SuperLink]) -> None:
    _, link = clock_and_link
    async with ChannelFor(
        [ServerAppIoServicer(link.serverappio)], status_details_codec=FailureCodec()
    ) as channel:
        io = GrpcServerAppIoClient(channel)
        run_id = await io.create_run("server:app", "", {})
        assert await io.renew_run_lease(run_id, "a") == 10
        with pytest.raises(RunLeaseHeldError, match="driven by another ServerApp runner"):
            await io.renew_run_lease(run_id, "b")
