"""A SuperLink on SQLite that is closed and opened again has lost nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from stamen.common.clock import FakeClock
from stamen.common.errors import ConfigError
from stamen.common.run import RunStatus
from stamen.superlink import open_superlink
from superlink_support import (
    HEARTBEAT,
    chunks,
    collect,
    instruction,
    oid,
    reply,
    running_setup,
)

MODEL = b"model" * 1000
UPDATE = b"update" * 1000


async def test_nodes_runs_messages_and_objects_survive_a_restart(tmp_path: Path) -> None:
    database = str(tmp_path / "link.db")
    first = open_superlink(database, heartbeat_interval=HEARTBEAT, clock=FakeClock())
    async with first:
        setup = await running_setup(first)
        run_id, node_id = setup.run_id, setup.node_id
        answered = instruction(run_id, node_id)
        waiting = instruction(run_id, node_id, objects=[MODEL])
        await first.serverappio.push_messages(run_id, [answered])
        await first.fleet.pull_messages(node_id, timeout=0)
        await first.fleet.push_messages(node_id, [reply(answered, objects=[UPDATE])])
        await first.fleet.push_object(node_id, oid(UPDATE), len(UPDATE), chunks(UPDATE))
        await first.serverappio.push_messages(run_id, [waiting])
        await first.serverappio.push_object(run_id, oid(MODEL), len(MODEL), chunks(MODEL))
    # An object file no message refers to (a crash between two steps) goes at start-up.
    orphan = tmp_path / "link.db.objects" / "ab" / ("ab" * 32)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")

    clock = FakeClock(monotonic=50.0, wall=1_700_000_010.0)
    second = open_superlink(database, heartbeat_interval=HEARTBEAT, clock=clock)
    async with second:
        assert (await second.control.get_run(run_id)).status == RunStatus.RUNNING
        assert [n.node_id for n in await second.serverappio.get_nodes(run_id)] == [node_id]
        assert not orphan.exists()
        (got,) = await second.serverappio.pull_messages(run_id, [answered.message_id], 0)
        assert got.metadata.reply_to_message_id == answered.message_id
        assert await collect(second.serverappio.pull_object(run_id, oid(UPDATE))) == UPDATE
        assert await second.fleet.pull_messages(node_id, timeout=0) == [waiting]
        assert await collect(second.fleet.pull_object(node_id, oid(MODEL))) == MODEL
        # Nodes count as alive for one deadline from the restart.
        clock.advance(HEARTBEAT * 2.5 - 0.1)
        second.sweep()
        assert second.state.get_node(node_id).online
        clock.advance(0.2)
        second.sweep()
        assert not second.state.get_node(node_id).online


async def test_an_instruction_delivered_but_unanswered_is_delivered_again(
    tmp_path: Path,
) -> None:
    # It may have been lost on its way when the SuperLink stopped.
    database = str(tmp_path / "link.db")
    async with open_superlink(database, heartbeat_interval=HEARTBEAT, clock=FakeClock()) as first:
        setup = await running_setup(first)
        run_id, node_id = setup.run_id, setup.node_id
        answered, lost = instruction(run_id, node_id), instruction(run_id, node_id)
        await first.serverappio.push_messages(run_id, [answered, lost])
        assert len(await first.fleet.pull_messages(node_id, timeout=0)) == 2
        await first.fleet.push_messages(node_id, [reply(answered)])
    async with open_superlink(database, heartbeat_interval=HEARTBEAT, clock=FakeClock()) as second:
        assert await second.fleet.pull_messages(node_id, timeout=0) == [lost]
        assert await second.fleet.pull_messages(node_id, timeout=0) == []


async def test_a_message_waiting_for_objects_before_a_restart_wakes_its_node_after(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "link.db")
    async with open_superlink(database, clock=FakeClock()) as first:
        setup = await running_setup(first)
        ins = instruction(setup.run_id, setup.node_id, objects=[MODEL])
        await first.serverappio.push_messages(setup.run_id, [ins])
    async with open_superlink(database, clock=FakeClock()) as second:
        pull = asyncio.create_task(second.fleet.pull_messages(setup.node_id, timeout=20))
        await asyncio.sleep(0)
        assert not pull.done()
        await second.serverappio.push_object(setup.run_id, oid(MODEL), len(MODEL), chunks(MODEL))
        async with asyncio.timeout(2):
            assert await pull == [ins]


async def test_an_error_inside_the_superlink_comes_out_as_itself() -> None:
    with pytest.raises(KeyError):
        async with open_superlink(":memory:"):
            raise KeyError("boom")


def test_an_unusable_database_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        open_superlink(str(tmp_path / "no-such-dir" / "link.db"))
