"""Fleet and ServerAppIo handlers: routing, long-polls, objects, permissions.

Each test runs over memory state + memory objects and over SQLite + object files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from stamen.codec.envelope import Envelope
from stamen.common.clock import FakeClock
from stamen.common.errors import (
    IntegrityError,
    InvalidMessageError,
    MessageNotFoundError,
    NodeNotFoundError,
    ObjectNotFoundError,
    PermissionDeniedError,
    RunNotFoundError,
)
from stamen.common.run import RunStatus
from stamen.superlink import SuperLink, serverappio
from superlink_support import (
    Setup,
    chunks,
    collect,
    instruction,
    make_link,
    oid,
    reply,
    running_setup,
)

MODEL = b"global model bytes" * 100
UPDATE = b"a node's update" * 100


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


# --- nodes and runs --------------------------------------------------------------------


async def test_registered_nodes_are_listed_and_keep_their_config(link: SuperLink) -> None:
    reg = await link.fleet.register_node({"partition-id": 4})
    assert reg.heartbeat_interval == 1.0
    assert 0 < reg.node_id < 1 << 63
    run_id = await link.serverappio.create_run("s:a", "c:a", {"rounds": 2})
    nodes = await link.serverappio.get_nodes(run_id)
    assert [(n.node_id, n.node_config, n.online) for n in nodes] == [
        (reg.node_id, {"partition-id": 4}, True)
    ]
    assert await link.fleet.heartbeat(reg.node_id) == 1.0


async def test_unknown_nodes_and_runs_are_not_found(link: SuperLink) -> None:
    for call in (
        link.fleet.heartbeat(123),
        link.fleet.pull_messages(123, timeout=0),
        link.fleet.push_messages(123, []),
        link.fleet.unregister_node(123),
    ):
        with pytest.raises(NodeNotFoundError):
            await call
    for run_call in (
        link.serverappio.get_run(5),
        link.serverappio.get_nodes(5),
        link.serverappio.push_messages(5, []),
        link.serverappio.pull_messages(5, ["x"], timeout=0),
        link.control.get_run(5),
    ):
        with pytest.raises(RunNotFoundError):
            await run_call


async def test_a_run_is_created_pending_and_runs_with_its_first_instruction(
    link: SuperLink,
) -> None:
    node_id = (await link.fleet.register_node({})).node_id
    run_id = await link.serverappio.create_run("s:a", "c:a", {"lr": 0.1})
    run = await link.serverappio.get_run(run_id)
    assert (run.status, run.run_config, run.server_app) == (RunStatus.PENDING, {"lr": 0.1}, "s:a")
    await link.serverappio.push_messages(run_id, [instruction(run_id, node_id)])
    assert (await link.control.get_run(run_id)).status == RunStatus.RUNNING
    assert [r.run_id for r in await link.control.list_runs()] == [run_id]


# --- instructions to nodes -------------------------------------------------------------


async def test_a_node_pulls_its_instruction_once(setup: Setup) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id)
    result = await link.serverappio.push_messages(run_id, [ins])
    assert result.message_ids == (ins.message_id,)
    assert result.missing_object_ids == ()
    assert await link.fleet.pull_messages(node_id, timeout=0) == [ins]
    assert await link.fleet.pull_messages(node_id, timeout=0) == []


async def test_a_node_sees_only_messages_addressed_to_it(setup: Setup) -> None:
    link, run_id = setup.link, setup.run_id
    other = (await link.fleet.register_node({})).node_id
    await link.serverappio.push_messages(run_id, [instruction(run_id, other)])
    assert await link.fleet.pull_messages(setup.node_id, timeout=0) == []
    assert len(await link.fleet.pull_messages(other, timeout=0)) == 1


async def test_a_waiting_node_pull_wakes_when_work_arrives(setup: Setup) -> None:
    link = setup.link
    pull = asyncio.create_task(link.fleet.pull_messages(setup.node_id, timeout=20))
    await asyncio.sleep(0)  # the pull is waiting now
    assert not pull.done()
    ins = instruction(setup.run_id, setup.node_id)
    await link.serverappio.push_messages(setup.run_id, [ins])
    async with asyncio.timeout(2):
        assert await pull == [ins]


async def test_an_idle_pull_returns_nothing_after_its_timeout(setup: Setup) -> None:
    async with asyncio.timeout(2):
        assert await setup.link.fleet.pull_messages(setup.node_id, timeout=0.05) == []


async def test_pushing_checks_every_instruction(setup: Setup) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    with pytest.raises(InvalidMessageError):
        await link.serverappio.push_messages(run_id, [instruction(run_id + 1, node_id)])
    with pytest.raises(NodeNotFoundError):
        await link.serverappio.push_messages(run_id, [instruction(run_id, 424242)])
    with pytest.raises(InvalidMessageError):
        await link.serverappio.push_messages(
            run_id, [instruction(run_id, node_id, message_type="fit")]
        )
    assert await link.fleet.pull_messages(node_id, timeout=0) == []


async def test_a_repeated_push_is_idempotent_and_a_conflicting_one_refused(
    setup: Setup,
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id, message_id="fixed-id")
    await link.serverappio.push_messages(run_id, [ins])
    again = await link.serverappio.push_messages(run_id, [ins, ins])
    assert again.message_ids == ("fixed-id", "fixed-id")
    with pytest.raises(InvalidMessageError, match="taken"):
        await link.serverappio.push_messages(
            run_id, [instruction(run_id, node_id, message_id="fixed-id", ttl=5)]
        )
    assert await link.fleet.pull_messages(node_id, timeout=0) == [ins]


async def test_an_instruction_waits_for_its_objects(setup: Setup) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id, objects=[MODEL])
    result = await link.serverappio.push_messages(run_id, [ins])
    assert result.missing_object_ids == (oid(MODEL),)
    assert await link.fleet.pull_messages(node_id, timeout=0) == []
    pull = asyncio.create_task(link.fleet.pull_messages(node_id, timeout=20))
    await asyncio.sleep(0)
    assert await link.serverappio.push_object(run_id, oid(MODEL), len(MODEL), chunks(MODEL))
    async with asyncio.timeout(2):
        assert await pull == [ins]
    assert await collect(link.fleet.pull_object(node_id, oid(MODEL))) == MODEL


async def test_a_broadcast_model_is_stored_once(setup: Setup) -> None:
    link, run_id = setup.link, setup.run_id
    nodes = [(await link.fleet.register_node({})).node_id for _ in range(30)]
    messages = [instruction(run_id, n, objects=[MODEL]) for n in nodes]
    result = await link.serverappio.push_messages(run_id, messages)
    assert result.missing_object_ids == (oid(MODEL),)
    assert await link.serverappio.push_object(run_id, oid(MODEL), len(MODEL), chunks(MODEL))
    assert not await link.serverappio.push_object(run_id, oid(MODEL), len(MODEL), chunks(MODEL))
    again = await link.serverappio.push_messages(
        run_id, [instruction(run_id, nodes[0], objects=[MODEL])]
    )
    assert again.missing_object_ids == ()
    assert link.store.ids() == {oid(MODEL)}
    pulled = [len(await link.fleet.pull_messages(n, timeout=0)) for n in nodes]
    assert pulled == [2] + [1] * 29


# --- replies to the ServerApp side -----------------------------------------------------


async def test_a_reply_reaches_a_waiting_serverapp_and_the_pair_is_then_gone(
    setup: Setup,
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id)
    await link.serverappio.push_messages(run_id, [ins])
    await link.fleet.pull_messages(node_id, timeout=0)
    pull = asyncio.create_task(link.serverappio.pull_messages(run_id, [ins.message_id], 20))
    await asyncio.sleep(0)
    assert not pull.done()
    answer = reply(ins)
    result = await link.fleet.push_messages(node_id, [answer])
    assert result.message_ids == (answer.message_id,)
    async with asyncio.timeout(2):
        assert await pull == [answer]
    assert await link.serverappio.pull_messages(run_id, [ins.message_id], timeout=0) == []
    assert link.state.find_messages([ins.message_id, answer.message_id]) == {}


async def test_a_node_may_answer_only_its_own_instructions_once(setup: Setup) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    other = (await link.fleet.register_node({})).node_id
    ins = instruction(run_id, node_id)
    await link.serverappio.push_messages(run_id, [ins])
    with pytest.raises(PermissionDeniedError):
        await link.fleet.push_messages(other, [reply(ins)])
    with pytest.raises(MessageNotFoundError):
        await link.fleet.push_messages(node_id, [reply(instruction(run_id, node_id))])
    answer = reply(ins)
    await link.fleet.push_messages(node_id, [answer])
    await link.fleet.push_messages(node_id, [answer])  # a retry changes nothing
    with pytest.raises(InvalidMessageError, match="already has a reply"):
        await link.fleet.push_messages(node_id, [reply(ins, payload=b"second thoughts")])
    assert await link.serverappio.pull_messages(run_id, [ins.message_id], 0) == [answer]


async def test_reply_objects_flow_to_the_serverapp_and_are_freed_once_pulled(
    setup: Setup,
) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id, objects=[MODEL])
    await link.serverappio.push_messages(run_id, [ins])
    await link.serverappio.push_object(run_id, oid(MODEL), len(MODEL), chunks(MODEL))
    await link.fleet.pull_messages(node_id, timeout=0)
    answer = reply(ins, objects=[UPDATE])
    result = await link.fleet.push_messages(node_id, [answer])
    assert result.missing_object_ids == (oid(UPDATE),)
    assert await link.serverappio.pull_messages(run_id, [ins.message_id], 0) == []
    assert await link.fleet.push_object(node_id, oid(UPDATE), len(UPDATE), chunks(UPDATE))
    assert await link.serverappio.pull_messages(run_id, [ins.message_id], 0) == [answer]
    assert link.store.ids() == {oid(UPDATE)}  # the instruction's model went with it
    assert await collect(link.serverappio.pull_object(run_id, oid(UPDATE))) == UPDATE
    assert link.store.ids() == set()
    assert link.state.find_messages([answer.message_id]) == {}


async def test_a_late_push_of_an_object_another_reply_brought_is_not_refused(
    setup: Setup,
) -> None:
    # Two nodes reply with identical bytes (frozen layers): the first push completes
    # both replies, so the second node's own push of that object must still succeed.
    link, run_id, first = setup.link, setup.run_id, setup.node_id
    second = (await link.fleet.register_node({"partition-id": 1})).node_id
    ins_a, ins_b = instruction(run_id, first), instruction(run_id, second)
    await link.serverappio.push_messages(run_id, [ins_a, ins_b])
    for node_id in (first, second):
        await link.fleet.pull_messages(node_id, timeout=0)
    await link.fleet.push_messages(first, [reply(ins_a, objects=[UPDATE])])
    await link.fleet.push_messages(second, [reply(ins_b, objects=[UPDATE])])
    assert await link.fleet.push_object(first, oid(UPDATE), len(UPDATE), chunks(UPDATE))
    ids = [ins_a.message_id, ins_b.message_id]
    assert len(await link.serverappio.pull_messages(run_id, ids, 0)) == 2
    assert not await link.fleet.push_object(second, oid(UPDATE), len(UPDATE), chunks(UPDATE))


async def test_a_half_read_object_is_not_released(setup: Setup) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    ins = instruction(run_id, node_id)
    await link.serverappio.push_messages(run_id, [ins])
    await link.fleet.push_messages(node_id, [reply(ins, objects=[UPDATE])])
    await link.fleet.push_object(node_id, oid(UPDATE), len(UPDATE), chunks(UPDATE))
    await link.serverappio.pull_messages(run_id, [ins.message_id], 0)
    stream = link.serverappio.pull_object(run_id, oid(UPDATE))
    await anext(stream)
    await stream.aclose()
    assert oid(UPDATE) in link.store
    assert await collect(link.serverappio.pull_object(run_id, oid(UPDATE))) == UPDATE


# --- object permissions ----------------------------------------------------------------


async def test_objects_are_only_for_those_their_messages_concern(setup: Setup) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    other = (await link.fleet.register_node({})).node_id
    other_run = await link.serverappio.create_run("s:a", "c:a", {})
    ins = instruction(run_id, node_id, objects=[MODEL])
    await link.serverappio.push_messages(run_id, [ins])
    with pytest.raises(PermissionDeniedError):
        await link.serverappio.push_object(other_run, oid(MODEL), len(MODEL), chunks(MODEL))
    await link.serverappio.push_object(run_id, oid(MODEL), len(MODEL), chunks(MODEL))
    with pytest.raises(PermissionDeniedError):
        await collect(link.fleet.pull_object(other, oid(MODEL)))
    with pytest.raises(PermissionDeniedError):
        await collect(link.serverappio.pull_object(other_run, oid(MODEL)))
    with pytest.raises(PermissionDeniedError):  # no reply of this node names it
        await link.fleet.push_object(node_id, oid(UPDATE), len(UPDATE), chunks(UPDATE))
    with pytest.raises(ObjectNotFoundError):
        await collect(link.fleet.pull_object(node_id, oid(b"nobody has this")))
    with pytest.raises(InvalidMessageError):
        await collect(link.fleet.pull_object(node_id, "not-an-id"))


async def test_an_object_known_but_not_yet_pushed_is_not_found(setup: Setup) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    await link.serverappio.push_messages(run_id, [instruction(run_id, node_id, objects=[MODEL])])
    with pytest.raises(ObjectNotFoundError):
        await collect(link.fleet.pull_object(node_id, oid(MODEL)))


async def test_a_corrupt_object_is_refused_and_not_stored(setup: Setup) -> None:
    link, run_id, node_id = setup.link, setup.run_id, setup.node_id
    await link.serverappio.push_messages(run_id, [instruction(run_id, node_id, objects=[MODEL])])
    with pytest.raises(IntegrityError):
        await link.serverappio.push_object(
            run_id, oid(MODEL), len(MODEL), chunks(b"x" * len(MODEL))
        )
    assert link.store.ids() == set()
    assert await link.fleet.pull_messages(node_id, timeout=0) == []


# --- replies in batches ----------------------------------------------------------------


async def _two_nodes_answering(setup: Setup) -> tuple[list[Envelope], list[int]]:
    """Two pushed and pulled instructions, one per node, both still unanswered."""
    link, run_id = setup.link, setup.run_id
    nodes = [setup.node_id, (await link.fleet.register_node({})).node_id]
    sent = [instruction(run_id, node) for node in nodes]
    await link.serverappio.push_messages(run_id, sent)
    for node in nodes:
        await link.fleet.pull_messages(node, timeout=0)
    return sent, nodes


async def test_a_pull_waits_briefly_for_the_rest_of_its_replies(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serverappio, "BATCH", 60.0)
    link, run_id = setup.link, setup.run_id
    sent, nodes = await _two_nodes_answering(setup)
    answers = [reply(ins) for ins in sent]
    pull = asyncio.create_task(
        link.serverappio.pull_messages(run_id, [m.message_id for m in sent], 20)
    )
    await asyncio.sleep(0)
    await link.fleet.push_messages(nodes[0], [answers[0]])
    await asyncio.sleep(0)
    assert not pull.done()  # one of two: it waits a moment for the other
    await link.fleet.push_messages(nodes[1], [answers[1]])
    async with asyncio.timeout(2):  # the rest came: the window of 60 s is not waited out
        assert await pull == answers


async def test_a_pull_hands_over_what_came_once_its_batch_window_ends(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serverappio, "BATCH", 0.02)
    link, run_id = setup.link, setup.run_id
    sent, nodes = await _two_nodes_answering(setup)
    first = reply(sent[0])
    await link.fleet.push_messages(nodes[0], [first])
    async with asyncio.timeout(2):  # far below the pull's own timeout
        assert await link.serverappio.pull_messages(run_id, [m.message_id for m in sent], 20) == [
            first
        ]
        assert await link.serverappio.pull_messages(run_id, [sent[1].message_id], 0) == []


async def test_a_run_stopped_during_the_batch_window_ends_the_pull(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serverappio, "BATCH", 60.0)
    link, run_id = setup.link, setup.run_id
    sent, nodes = await _two_nodes_answering(setup)
    await link.fleet.push_messages(nodes[0], [reply(sent[0])])
    pull = asyncio.create_task(
        link.serverappio.pull_messages(run_id, [m.message_id for m in sent], 60)
    )
    await asyncio.sleep(0)
    assert not pull.done()
    await link.control.stop_run(run_id)
    async with asyncio.timeout(2):
        assert await pull == []
