"""The runner over gRPC against an in-process SuperLink on 127.0.0.1: `stop` (the first
signal's effect) stops the run, marked stopped, a run outlives a SuperLink restart
(SQLite state, same address), a run waiting for nodes names the Fleet API and gives up,
--save-final-arrays, and the round table the runner prints at the end."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stamen.common.context import Context
from stamen.common.errors import ServerAppError, StamenError, UnavailableError
from stamen.common.node import Node
from stamen.common.records import ArrayRecord
from stamen.common.run import Run, RunStatus
from stamen.runner import cli
from stamen.runner.retry import RetryingServerAppIo
from stamen.runner.runner import run_serverapp
from stamen.runner.settings import ServerAppSettings
from stamen.server import (
    Grid,
    History,
    ServerApp,
    ServerAppComponents,
    ServerConfig,
)
from stamen.server.strategy import FedAvg
from stamen.superlink.serve import Listening, serve
from stamen.superlink.settings import SuperLinkSettings
from stamen.transport.api import ServerAppIoApi
from stamen.transport.grpc.channel import connect
from stamen.transport.grpc.clients import GrpcServerAppIoClient

pytestmark = pytest.mark.timeout(30)


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def running_superlink(
    database: str = ":memory:", serverappio: str = "127.0.0.1:0"
) -> AsyncIterator[Listening]:
    settings = SuperLinkSettings(
        fleet_api_address="127.0.0.1:0",
        serverappio_api_address=serverappio,
        control_api_address="127.0.0.1:0",
        insecure=True,
        database=database,
        grace_period=0.2,
    )
    ready: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(settings, ready=ready, stop=stop))
    try:
        await asyncio.wait([ready, serving], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)


async def get_run(address: str, run_id: int) -> Run:
    channel = connect(address, root_certificates=None, insecure=True)
    try:
        return await GrpcServerAppIoClient(channel).get_run(run_id)
    finally:
        channel.close()


async def test_stop_marks_the_run_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()
    run_ids: list[int] = []

    def app(grid: Grid, context: Context) -> History:
        run_ids.append(context.run_id)
        started.set()
        while True:  # until the runner closes the grid
            grid.get_nodes()
            threading.Event().wait(0.01)

    async with running_superlink() as listening:
        monkeypatch.setattr(cli, "load_app", lambda *_args: app)
        settings = ServerAppSettings(app="server:app", server=listening.serverappio, insecure=True)
        ready, stop = asyncio.Event(), asyncio.Event()
        serving = asyncio.create_task(cli.serve(settings, ready=ready, stop=stop))
        assert await asyncio.to_thread(started.wait, 10)
        assert ready.is_set()
        stop.set()
        assert await asyncio.wait_for(serving, 10) is None

        run = await get_run(listening.serverappio, run_ids[0])
    assert (run.status, run.sub_status) == (RunStatus.FINISHED, RunStatus.STOPPED)


class SpiedServerAppIo:
    """Passes calls through; sets `failed` when one finds the SuperLink unavailable."""

    def __init__(self, inner: ServerAppIoApi) -> None:
        self._inner = inner
        self.failed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get_nodes(self, run_id: int) -> list[Node]:
        try:
            return await self._inner.get_nodes(run_id)
        except UnavailableError:
            self.failed.set()
            raise


async def test_a_run_outlives_a_superlink_restart(tmp_path: Path) -> None:
    database = str(tmp_path / "superlink.db")
    address = free_address()
    before_restart, go_on = threading.Event(), threading.Event()
    nodes_seen: list[Sequence[Node]] = []
    run_ids: list[int] = []

    def app(grid: Grid, context: Context) -> History:
        run_ids.append(context.run_id)
        nodes_seen.append(grid.get_nodes())
        before_restart.set()
        go_on.wait(10)
        nodes_seen.append(grid.get_nodes())  # while the SuperLink is away: retried
        return History()

    channel = connect(address, root_certificates=None, insecure=True)
    spy = SpiedServerAppIo(GrpcServerAppIoClient(channel))
    io = RetryingServerAppIo(
        spy,  # type: ignore[arg-type]
        max_wait_time=10,
        initial_delay=0.02,
        max_delay=0.1,
    )
    try:
        async with running_superlink(database, address):
            runner = asyncio.create_task(
                run_serverapp(io, app, server_app_ref="server:app", run_config={})
            )
            assert await asyncio.to_thread(before_restart.wait, 10)
        # A stopped in-process server leaves accepted connections open; a SuperLink process
        # that exits takes them down with it. Drop ours as its exit would.
        channel.close()
        go_on.set()
        await asyncio.wait_for(spy.failed.wait(), 10)
        async with running_superlink(database, address):
            await asyncio.wait_for(runner, 10)
            run = await get_run(address, run_ids[0])
    finally:
        channel.close()

    assert nodes_seen == [[], []]
    assert (run.status, run.sub_status) == (RunStatus.FINISHED, RunStatus.COMPLETED)


def needs_two_nodes(_context: Context) -> ServerAppComponents:
    strategy = FedAvg(min_available_clients=2, min_fit_clients=2)
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=1))


async def test_waiting_for_nodes_names_the_fleet_api_and_times_out(
    caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="stamen")
    app = ServerApp(server_fn=needs_two_nodes)
    monkeypatch.setattr(cli, "load_app", lambda *_args: app)
    async with running_superlink() as listening:
        settings = ServerAppSettings(
            app="server:app",
            server=listening.serverappio,
            insecure=True,
            node_wait_timeout=0.3,
            fleet_address=listening.fleet,
        )
        with pytest.raises(ServerAppError) as info:
            await cli.serve(settings)
        run = await get_run(listening.serverappio, info.value.run_id)

    assert "only 0 of the 2 nodes needed are online after waiting 0.3s" in str(info.value)
    assert (run.status, run.sub_status) == (RunStatus.FINISHED, RunStatus.FAILED)
    assert (
        f"waiting for nodes: 0 of 2 online (start SuperNodes with --superlink "
        f"{listening.fleet}, the Fleet API)" in caplog.text
    )


def test_the_fleet_address_defaults_to_the_superlinks_host() -> None:
    settings = ServerAppSettings(app="server:app", server="10.0.0.5:9091", insecure=True)
    assert settings.nodes_connect_to == "10.0.0.5:9092"
    settings = ServerAppSettings(app="server:app", server="[::1]:9091", insecure=True)
    assert settings.nodes_connect_to == "[::1]:9092"


async def test_save_final_arrays_writes_the_final_model(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def app(grid: Grid, context: Context) -> History:
        history = History()
        history.add_loss_distributed(1, 0.5)
        history.add_failures(1, 2)
        history.final_arrays = ArrayRecord([np.arange(3.0), np.ones((2, 2))])
        return history

    monkeypatch.setattr(cli, "load_app", lambda *_args: app)
    path = tmp_path / "model.npz"
    async with running_superlink() as listening:
        settings = ServerAppSettings(
            app="server:app",
            server=listening.serverappio,
            insecure=True,
            save_final_arrays=path,
        )
        assert await cli.serve(settings) is not None

    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["0"], np.arange(3.0))
        np.testing.assert_array_equal(saved["1"], np.ones((2, 2)))
    # the round table on stdout (a launched run's log), with its failures column
    assert capsys.readouterr().out.splitlines() == ["round  loss  failures", "1      0.5   2"]


async def test_save_final_arrays_of_a_run_without_a_model_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def app(grid: Grid, context: Context) -> History:
        return History()  # a loop that did not know its model

    monkeypatch.setattr(cli, "load_app", lambda *_args: app)
    async with running_superlink() as listening:
        settings = ServerAppSettings(
            app="server:app",
            server=listening.serverappio,
            insecure=True,
            save_final_arrays=tmp_path / "model.npz",
        )
        with pytest.raises(StamenError, match="--save-final-arrays: the run left no final arrays"):
            await cli.serve(settings)
    assert not (tmp_path / "model.npz").exists()
