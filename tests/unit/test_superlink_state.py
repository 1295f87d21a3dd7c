"""One LinkState behaviour suite, run over the memory and the SQLite implementations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import pytest
from stamen.codec.envelope import Envelope
from stamen.common.errors import (
    ConfigError,
    InvalidMessageError,
    NodeNotFoundError,
    RunNotFoundError,
    StorageFaultError,
)
from stamen.common.message import Metadata
from stamen.common.node import Node
from stamen.common.run import Run, RunStatus
from stamen.superlink import LinkState, MemoryLinkState, SqliteLinkState, StoredMessage

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture(params=["memory", "sqlite"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LinkState]:
    link_state: LinkState
    if request.param == "memory":
        link_state = MemoryLinkState()
    else:
        link_state = SqliteLinkState(tmp_path / "state.db")
    yield link_state
    link_state.close()


def message(
    message_id: str,
    *,
    run_id: int = 1,
    src: int = 0,
    dst: int = 7,
    reply_to: str = "",
    objects: tuple[str, ...] = (),
    expires_at: float = 100.0,
) -> StoredMessage:
    metadata = Metadata(
        run_id=run_id,
        message_id=message_id,
        src_node_id=src,
        dst_node_id=dst,
        reply_to_message_id=reply_to,
        group_id="round-1",
        message_type="train",
        ttl=30.0,
        created_at=12.5,
    )
    return StoredMessage(Envelope(metadata, b"\x00body", objects), expires_at=expires_at)


def reply(instruction: StoredMessage, message_id: str, **kw: object) -> StoredMessage:
    md = instruction.envelope.metadata
    return message(
        message_id,
        run_id=md.run_id,
        src=md.dst_node_id,
        dst=0,
        reply_to=md.message_id,
        **kw,  # type: ignore[arg-type]
    )


# --- nodes -----------------------------------------------------------------------------


def test_nodes_are_added_found_updated_and_removed(state: LinkState) -> None:
    node = Node(5, {"partition-id": 3, "name": "a", "w": 0.5, "gpu": True}, True, 1.0, 1.0)
    state.add_node(node)
    state.add_node(Node(6))
    assert state.get_node(5) == node
    assert isinstance(state.get_node(5).node_config["gpu"], bool)
    state.update_node(replace(node, online=False, last_heartbeat=9.0))
    assert state.get_node(5).online is False
    assert state.get_node(5).last_heartbeat == 9.0
    assert {n.node_id for n in state.list_nodes()} == {5, 6}
    state.remove_node(5)
    with pytest.raises(NodeNotFoundError):
        state.get_node(5)
    with pytest.raises(NodeNotFoundError):
        state.remove_node(5)
    with pytest.raises(NodeNotFoundError):
        state.update_node(node)


def test_node_ids_use_all_63_bits(state: LinkState) -> None:
    big = (1 << 63) - 1
    state.add_node(Node(big))
    assert state.get_node(big).node_id == big


def test_the_node_copy_knows_every_field_of_node() -> None:
    # memorystate._copy_node names Node's fields one by one: a new field must be added there.
    assert [f.name for f in fields(Node)] == [
        "node_id",
        "node_config",
        "online",
        "last_heartbeat",
        "registered_at",
    ]


def test_returned_records_are_copies(state: LinkState) -> None:
    state.add_node(Node(5, {"k": 1}))
    state.get_node(5).node_config["k"] = 2
    assert state.get_node(5).node_config == {"k": 1}
    state.add_messages([message("m1")])
    state.find_messages(["m1"])["m1"].envelope.metadata.dst_node_id = 99
    assert state.find_messages(["m1"])["m1"].envelope.metadata.dst_node_id == 7


# --- runs ------------------------------------------------------------------------------


def test_runs_are_added_found_listed_in_order_and_updated(state: LinkState) -> None:
    first = Run(9, "server:app", "client:app", {"lr": 0.1, "rounds": 3}, created_at=1.0)
    state.add_run(first)
    state.add_run(Run(4, created_at=2.0))
    assert state.get_run(9) == first
    assert [r.run_id for r in state.list_runs()] == [9, 4]
    done = replace(first, status=RunStatus.FINISHED, sub_status=RunStatus.STOPPED, details="x")
    state.update_run(done)
    assert state.get_run(9) == done
    with pytest.raises(RunNotFoundError):
        state.get_run(1)
    with pytest.raises(RunNotFoundError):
        state.update_run(Run(1))


# --- messages --------------------------------------------------------------------------


def test_messages_round_trip_and_are_found_by_node_run_and_instruction(state: LinkState) -> None:
    ins = message("m1", objects=(A, B))
    other = message("m2", dst=8, run_id=2)
    ans = reply(ins, "r1", objects=(C,))
    state.add_messages([ins, other, ans])
    assert state.find_messages(["m1", "nope", "r1"]) == {"m1": ins, "r1": ans}
    assert state.instructions_for_node(7) == [ins]
    assert state.instructions_for_node(0) == []
    assert state.find_replies(["m1", "m2"]) == {"m1": ans}
    assert sorted(state.message_ids_of_run(1)) == ["m1", "r1"]
    assert state.message_ids_of_run(3) == []


def test_adding_is_all_or_nothing(state: LinkState) -> None:
    ins = message("m1")
    state.add_messages([ins, reply(ins, "r1")])
    with pytest.raises(InvalidMessageError):
        state.add_messages([message("m2"), message("m1")])  # id taken
    with pytest.raises(InvalidMessageError):
        state.add_messages([message("m3"), message("m3")])
    with pytest.raises(InvalidMessageError):
        state.add_messages([message("m4"), reply(ins, "r2")])  # m1 already answered
    assert state.find_messages(["m2", "m3", "m4", "r2"]) == {}


def test_delivery_is_remembered(state: LinkState) -> None:
    state.add_messages([message("m1"), message("m2")])
    state.mark_delivered(["m1", "unknown"])
    found = state.find_messages(["m1", "m2"])
    assert (found["m1"].delivered, found["m2"].delivered) == (True, False)
    assert [m.message_id for m in state.undelivered_messages()] == ["m2"]


def test_expired_messages_are_those_at_or_past_their_time(state: LinkState) -> None:
    state.add_messages(
        [message("early", expires_at=10.0), message("edge", expires_at=20.0), message("late")]
    )
    assert [m.message_id for m in state.expired_messages(20.0)] == ["early", "edge"]


# --- object references -----------------------------------------------------------------


def test_deleting_messages_frees_objects_only_when_nobody_refers_to_them(
    state: LinkState,
) -> None:
    one, two = message("m1", objects=(A, B)), message("m2", dst=8, objects=(A,))
    state.add_messages([one, two])
    assert state.referenced_object_ids() == {A, B}
    assert sorted(state.delete_messages(["m1", "unknown"])) == [B]
    assert state.delete_messages(["m2"]) == [A]
    assert state.referenced_object_ids() == set()
    assert state.find_messages(["m1", "m2"]) == {}


def test_an_object_shared_by_many_messages_is_one_reference_each(state: LinkState) -> None:
    state.add_messages([message(f"m{i}", dst=i + 1, objects=(A, A)) for i in range(20)])
    assert len(state.referrers(A)) == 20
    assert len(state.referrers(A, limit=3)) == 3
    freed = [state.delete_messages([f"m{i}"]) for i in range(20)]
    assert freed[:-1] == [[]] * 19
    assert freed[-1] == [A]


def test_referrers_say_who_refers_to_an_object(state: LinkState) -> None:
    ins = message("m1", run_id=3, objects=(A,))
    ans = reply(ins, "r1", objects=(A,))
    state.add_messages([ins, ans])
    state.mark_delivered(["r1"])
    refs = {r.message_id: r for r in state.referrers(A)}
    assert (refs["m1"].is_reply, refs["m1"].dst_node_id, refs["m1"].delivered) == (
        False,
        7,
        False,
    )
    assert (refs["r1"].is_reply, refs["r1"].src_node_id, refs["r1"].delivered) == (True, 7, True)
    assert {r.run_id for r in refs.values()} == {3}
    assert state.referrers(A, run_id=4) == []
    assert state.referrers(B) == []


def test_dropping_one_reference_frees_the_object_with_the_last(state: LinkState) -> None:
    state.add_messages([message("m1", objects=(A, B)), message("m2", objects=(A,))])
    assert state.drop_ref("m1", A) is False
    assert state.drop_ref("m1", A) is False  # already dropped
    assert sorted(state.held_objects("m1")) == [B]
    assert state.drop_ref("m2", A) is True
    assert state.held_objects("m2") == []
    assert state.referrers(A) == []
    assert state.delete_messages(["m1"]) == [B]


def test_a_reply_outlives_its_deleted_instruction(state: LinkState) -> None:
    ins = message("m1")
    state.add_messages([ins, reply(ins, "r1")])
    state.delete_messages(["m1"])
    assert set(state.find_replies(["m1"])) == {"m1"}
    state.delete_messages(["r1"])
    assert state.find_replies(["m1"]) == {}


# --- SQLite specifics ------------------------------------------------------------------


def test_sqlite_keeps_everything_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SqliteLinkState(path)
    ins = message("m1", objects=(A,))
    first.add_node(Node(5, {"p": 1}))
    first.add_run(Run(9, "s:a", "c:a", {"x": "y"}))
    first.add_messages([ins, reply(ins, "r1")])
    first.mark_delivered(["m1"])
    first.close()
    second = SqliteLinkState(path)
    try:
        assert second.get_node(5).node_config == {"p": 1}
        assert second.get_run(9).run_config == {"x": "y"}
        assert second.find_messages(["m1"])["m1"].delivered is True
        assert set(second.find_replies(["m1"])) == {"m1"}
        assert second.referenced_object_ids() == {A}
    finally:
        second.close()


def test_sqlite_refuses_a_database_of_another_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(ConfigError, match="schema version 99"):
        SqliteLinkState(path)


def test_sqlite_is_for_one_process_at_a_time(tmp_path: Path) -> None:
    first = SqliteLinkState(tmp_path / "state.db")
    try:
        with pytest.raises(StorageFaultError, match="locked"):
            SqliteLinkState(tmp_path / "state.db", lock_timeout=0.01)
    finally:
        first.close()
    SqliteLinkState(tmp_path / "state.db", lock_timeout=0.01).close()


def test_sqlite_batches_long_id_lists(tmp_path: Path) -> None:
    state = SqliteLinkState(":memory:")
    try:
        state.add_messages([message(f"m{i}", objects=(f"{i:064x}",)) for i in range(1200)])
        ids = [f"m{i}" for i in range(1200)]
        assert len(state.find_messages(ids)) == 1200
        assert len(state.delete_messages(ids)) == 1200
    finally:
        state.close()


def test_sqlite_stores_run_statuses_as_their_strings_and_loads_them_typed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    first = SqliteLinkState(path)
    first.add_run(Run(9, status=RunStatus.FINISHED, sub_status=RunStatus.COMPLETED))
    first.close()
    with sqlite3.connect(path) as raw:  # as a state written before the enum would hold them
        assert raw.execute("SELECT status, sub_status FROM runs").fetchall() == [
            ("finished", "completed")
        ]
        raw.execute("UPDATE runs SET status = 'running', sub_status = ''")
    raw.close()
    second = SqliteLinkState(path)
    try:
        assert second.get_run(9).status is RunStatus.RUNNING
    finally:
        second.close()
