"""Liveness, expiry and run lifecycle: error replies instead of endless waits.

Time is a FakeClock; the sweep is called directly, except where the SuperLink's own
background task is what is tested.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from stamen.codec.envelope import Envelope
from stamen.common.clock import FakeClock
from stamen.common.errors import (
    InvalidMessageError,
    MessageNotFoundError,
    NodeNotFoundError,
    RunNotRunningError,
)
from stamen.common.message import Error, ErrorCode
from stamen.common.run import RunStatus
from stamen.superlink import SuperLink, open_superlink
from stamen.superlink.core import error_reply
from superlink_support import (
    HEARTBEAT,
    Setup,
    chunks,
    error_of,
    instruction,
    make_link,
    oid,
    reply,
    running_setup,
)

DEADLINE = HEARTBEAT * 2.5
MODEL = b"model" * 64


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def link(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[SuperLink]:
    superlink = make_link(request.param, tmp_path, clock)
    yield superlink
    superlink.close()


@pytest.fixture
async def setup(link: SuperLink) -> Setup:
    return await running_setup(link)


async def test_a_silent_node_goes_offline_and_its_instructions_get_error_replies(
    setup: Setup, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    pulled, unpulled = instruction(run_id, node_id), instruction(run_id, node_id)
    await link.serverappio.push_messages(run_id, [pulled])
    await link.fleet.pull_messages(node_id, timeout=0)
    await link.serverappio.push_messages(run_id, [unpulled])
    wanted = [pulled.message_id, unpulled.message_id]
    waiting = asyncio.create_task(link.serverappio.pull_messages(run_id, wanted, 20))
    await asyncio.sleep(0)

    clock.advance(DEADLINE - 0.1)
    link.sweep()
    assert not waiting.done()
    assert [n.node_id for n in await link.serverappio.get_nodes(run_id)] == [node_id]

    clock.advance(0.2)
    with caplog.at_level(logging.INFO, logger="stamen.superlink"):
        link.sweep()
    assert f"node {node_id} went offline" in caplog.text
    assert await link.serverappio.get_nodes(run_id) == []
    async with asyncio.timeout(2):
        first = await waiting
    rest = await link.serverappio.pull_messages(run_id, wanted, timeout=0)
    replies = {e.metadata.reply_to_message_id: e for e in first + rest}
    assert set(replies) == set(wanted)
    for envelope in replies.values():
        assert envelope.metadata.src_node_id == node_id
        error = error_of(envelope)
        assert error.code == ErrorCode.NODE_UNAVAILABLE
        assert error.reason == f"node {node_id} went offline"


async def test_heartbeats_keep_a_node_online_and_bring_it_back(
    setup: Setup, clock: FakeClock
) -> None:
    link, node_id = setup.link, setup.node_id
    for _ in range(5):
        clock.advance(HEARTBEAT)
        await link.fleet.heartbeat(node_id)
        link.sweep()
    assert link.state.get_node(node_id).online
    clock.advance(DEADLINE)
    link.sweep()
    assert not link.state.get_node(node_id).online
    await link.fleet.heartbeat(node_id)
    assert link.state.get_node(node_id).online
    assert link.state.get_node(node_id).last_heartbeat == clock.time()


async def test_a_node_waiting_in_a_pull_stays_online(setup: Setup, clock: FakeClock) -> None:
    link, node_id = setup.link, setup.node_id
    pull = asyncio.create_task(link.fleet.pull_messages(node_id, timeout=20))
    await asyncio.sleep(0)
    clock.advance(10 * DEADLINE)
    link.sweep()
    assert link.state.get_node(node_id).online
    link.stop_waiting()
    async with asyncio.timeout(2):
        assert await pull == []
    clock.advance(DEADLINE)
    link.sweep()
    assert not link.state.get_node(node_id).online


async def test_an_instruction_for_an_offline_node_is_answered_at_once(
    setup: Setup, clock: FakeClock
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    clock.advance(DEADLINE)
    link.sweep()
    ins = instruction(run_id, node_id)
    await link.serverappio.push_messages(run_id, [ins])
    (answer,) = await link.serverappio.pull_messages(run_id, [ins.message_id], timeout=0)
    assert error_of(answer).code == ErrorCode.NODE_UNAVAILABLE


async def test_an_unanswered_instruction_expires_with_an_error_reply(
    setup: Setup, clock: FakeClock
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id, ttl=2.0)
    await link.serverappio.push_messages(run_id, [ins])
    clock.advance(2.0)
    await link.fleet.heartbeat(node_id)
    assert await link.fleet.pull_messages(node_id, timeout=0) == []  # too late to hand out
    link.sweep()
    (answer,) = await link.serverappio.pull_messages(run_id, [ins.message_id], timeout=0)
    error = error_of(answer)
    assert error.code == ErrorCode.MESSAGE_EXPIRED
    assert ins.message_id in error.reason


def cancelled_report(ins: Envelope, node_id: int) -> Envelope:
    """What a node sends when it cancelled the instruction's task at its expiry."""
    reason = f"node {node_id} cancelled the ClientApp's task: its message expired"
    return error_reply(ins, Error(ErrorCode.MESSAGE_EXPIRED, reason), now=5.0).envelope


async def test_a_late_cancellation_report_replaces_the_expiry_error_not_yet_collected(
    setup: Setup, clock: FakeClock
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id, ttl=2.0)
    await link.serverappio.push_messages(run_id, [ins])
    await link.fleet.pull_messages(node_id, timeout=0)
    clock.advance(2.0)
    link.sweep()
    report = cancelled_report(ins, node_id)
    result = await link.fleet.push_messages(node_id, [report])
    assert result.missing_object_ids == ()
    link.sweep()  # the node's report stands: it is complete
    (answer,) = await link.serverappio.pull_messages(run_id, [ins.message_id], timeout=0)
    assert answer == report
    assert error_of(answer).reason.startswith(f"node {node_id} cancelled the ClientApp's task")


async def test_a_late_answer_after_the_expiry_error_was_collected_is_taken_and_logged(
    setup: Setup, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    other = (await link.fleet.register_node({"partition-id": 1})).node_id
    ins = instruction(run_id, node_id, ttl=2.0)
    await link.serverappio.push_messages(run_id, [ins])
    clock.advance(2.0)
    await link.fleet.heartbeat(node_id)
    await link.fleet.heartbeat(other)
    link.sweep()
    (answer,) = await link.serverappio.pull_messages(run_id, [ins.message_id], timeout=0)
    assert error_of(answer).code == ErrorCode.MESSAGE_EXPIRED
    report = cancelled_report(ins, node_id)
    with caplog.at_level(logging.INFO, logger="stamen.superlink"):
        result = await link.fleet.push_messages(node_id, [report])
    assert result.message_ids == (report.message_id,)
    assert f"node {node_id} answered message {ins.message_id} after it expired" in caplog.text
    assert "its report: node" in caplog.text
    with pytest.raises(MessageNotFoundError):  # only the instruction's own node answers it
        await link.fleet.push_messages(other, [cancelled_report(ins, other)])


async def test_only_the_expiry_error_gives_way_to_a_late_answer(
    setup: Setup, clock: FakeClock
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id, ttl=2.0)
    await link.serverappio.push_messages(run_id, [ins])
    clock.advance(2.0)
    link.sweep()
    await link.fleet.push_messages(node_id, [cancelled_report(ins, node_id)])
    with pytest.raises(InvalidMessageError, match="already has a reply"):
        await link.fleet.push_messages(node_id, [reply(ins)])


async def test_an_uncollected_reply_and_its_objects_go_when_its_ttl_ends(
    setup: Setup, clock: FakeClock
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id, ttl=5.0)
    await link.serverappio.push_messages(run_id, [ins])
    clock.advance(2.0)
    # A reply may be collected for one instruction TTL after it arrives.
    await link.fleet.push_messages(node_id, [reply(ins, objects=[MODEL])])
    await link.fleet.push_object(node_id, oid(MODEL), len(MODEL), chunks(MODEL))
    clock.advance(3.5)
    await link.fleet.heartbeat(node_id)
    link.sweep()  # the instruction expired, but its reply stands
    assert link.store.ids() == {oid(MODEL)}
    clock.advance(2.0)
    await link.fleet.heartbeat(node_id)
    link.sweep()
    assert link.store.ids() == set()
    assert link.state.message_ids_of_run(run_id) == []


async def test_a_reply_whose_objects_never_arrive_is_replaced_when_the_node_goes(
    setup: Setup, clock: FakeClock
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id)
    await link.serverappio.push_messages(run_id, [ins])
    await link.fleet.push_messages(node_id, [reply(ins, objects=[MODEL])])
    clock.advance(DEADLINE)
    link.sweep()
    (answer,) = await link.serverappio.pull_messages(run_id, [ins.message_id], timeout=0)
    assert error_of(answer).code == ErrorCode.NODE_UNAVAILABLE


async def test_unregistering_answers_open_instructions_and_forgets_the_node(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id)
    await link.serverappio.push_messages(run_id, [ins])
    await link.fleet.pull_messages(node_id, timeout=0)
    pull = asyncio.create_task(link.fleet.pull_messages(node_id, timeout=20))
    await asyncio.sleep(0)
    with caplog.at_level(logging.INFO, logger="stamen.superlink"):
        await link.fleet.unregister_node(node_id)
    async with asyncio.timeout(2):
        with pytest.raises(NodeNotFoundError):
            await pull
    assert f"node {node_id} unregistered" in caplog.text
    (answer,) = await link.serverappio.pull_messages(run_id, [ins.message_id], timeout=0)
    assert error_of(answer).reason == f"node {node_id} unregistered"
    with pytest.raises(NodeNotFoundError):
        await link.fleet.heartbeat(node_id)


# --- run lifecycle ---------------------------------------------------------------------


async def test_stopping_a_run_drops_its_messages_and_ends_its_pulls(setup: Setup) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id, objects=[MODEL])
    await link.serverappio.push_messages(run_id, [ins])
    await link.serverappio.push_object(run_id, oid(MODEL), len(MODEL), chunks(MODEL))
    waiting = asyncio.create_task(link.serverappio.pull_messages(run_id, [ins.message_id], 20))
    await asyncio.sleep(0)
    stopped = await link.control.stop_run(run_id)
    assert (stopped.status, stopped.sub_status) == (RunStatus.FINISHED, RunStatus.STOPPED)
    async with asyncio.timeout(2):
        assert await waiting == []
    assert link.store.ids() == set()
    assert await link.fleet.pull_messages(node_id, timeout=0) == []
    with pytest.raises(RunNotRunningError):
        await link.serverappio.push_messages(run_id, [instruction(run_id, node_id)])
    with pytest.raises(RunNotRunningError):
        await link.control.stop_run(run_id)
    assert (await link.serverappio.get_run(run_id)).finished_at > 0


async def test_the_serverapp_finishes_its_run(setup: Setup) -> None:
    link, run_id = setup.link, setup.run_id
    with pytest.raises(InvalidMessageError):
        await link.serverappio.update_run_status(run_id, "finished", "great")
    await link.serverappio.update_run_status(run_id, "finished", "completed", "3 rounds")
    run = await link.control.get_run(run_id)
    assert (run.status, run.sub_status, run.details) == ("finished", "completed", "3 rounds")
    with pytest.raises(RunNotRunningError):
        await link.serverappio.update_run_status(run_id, "running")


# --- the SuperLink's lifespan ----------------------------------------------------------


async def test_the_background_sweep_runs_while_the_superlink_is_entered(
    clock: FakeClock,
) -> None:
    link = open_superlink(":memory:", heartbeat_interval=0.02, clock=clock)
    async with link:
        setup = await running_setup(link)
        ins = instruction(setup.run_id, setup.node_id)
        await link.serverappio.push_messages(setup.run_id, [ins])
        clock.advance(1.0)
        async with asyncio.timeout(5):
            (answer,) = await link.serverappio.pull_messages(setup.run_id, [ins.message_id], 10)
    assert error_of(answer).code == ErrorCode.NODE_UNAVAILABLE


async def test_leaving_the_superlink_ends_long_polls_and_closes_its_state(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(5):
        async with open_superlink(str(tmp_path / "db")) as link:
            setup = await running_setup(link)
            pull = asyncio.create_task(link.fleet.pull_messages(setup.node_id, timeout=20))
            await asyncio.sleep(0)
        assert await pull == []
    with pytest.raises(Exception, match="closed"):
        link.state.list_runs()
    with pytest.raises(RuntimeError):
        await link.__aenter__()
