"""The SuperLink's sans-IO rules: plain values and a fake time, no event loop."""

from __future__ import annotations

import math
import os

import pytest
from stamen.codec.envelope import Envelope
from stamen.codec.message import decode_message
from stamen.common.clock import FakeClock
from stamen.common.errors import (
    ConfigError,
    InvalidMessageError,
    PermissionDeniedError,
    RunNotRunningError,
)
from stamen.common.message import SUPERLINK_NODE_ID, Error, ErrorCode, Metadata
from stamen.common.run import Run, RunStatus
from stamen.superlink.arrivals import Arrivals
from stamen.superlink.core import (
    DEADLINE_FACTOR,
    Liveness,
    check_instruction,
    check_object_id,
    check_reply,
    deliverable,
    error_reply,
    new_id,
    plan_expiry,
    settle,
    transition_run,
)
from stamen.superlink.linkstate import StoredMessage

OBJ_A = "a" * 64
OBJ_B = "b" * 64


def instruction(message_id: str = "m1", *, dst: int = 7, run_id: int = 1, **kw: object) -> Envelope:
    fields: dict[str, object] = {
        "run_id": run_id,
        "message_id": message_id,
        "src_node_id": SUPERLINK_NODE_ID,
        "dst_node_id": dst,
        "reply_to_message_id": "",
        "group_id": "g",
        "message_type": "train",
        "ttl": 60.0,
        "created_at": 1.0,
    }
    object_ids = kw.pop("object_ids", ())
    fields.update(kw)
    return Envelope(Metadata(**fields), b"payload", tuple(object_ids))  # type: ignore[arg-type]


def reply_to(ins: Envelope, message_id: str = "r1", **kw: object) -> Envelope:
    md = ins.metadata
    fields: dict[str, object] = {
        "run_id": md.run_id,
        "message_id": message_id,
        "src_node_id": md.dst_node_id,
        "dst_node_id": md.src_node_id,
        "reply_to_message_id": md.message_id,
        "group_id": md.group_id,
        "message_type": md.message_type,
        "ttl": md.ttl,
        "created_at": 2.0,
    }
    fields.update(kw)
    return Envelope(Metadata(**fields), b"reply")  # type: ignore[arg-type]


# --- clock -----------------------------------------------------------------------------


def test_fake_clock_moves_both_readings_and_never_back() -> None:
    clock = FakeClock(monotonic=5.0, wall=100.0)
    clock.advance(2.5)
    assert (clock.now(), clock.time()) == (7.5, 102.5)
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)


# --- liveness --------------------------------------------------------------------------


def test_node_goes_overdue_after_deadline_factor_intervals() -> None:
    live = Liveness(interval=2.0)
    assert live.seen(1, now=0.0) is True
    assert live.overdue(2.0 * DEADLINE_FACTOR - 0.01) == []
    assert live.overdue(2.0 * DEADLINE_FACTOR) == [1]
    assert not live.is_online(1)
    assert live.overdue(100.0) == []  # reported once


def test_heartbeat_moves_the_deadline_and_reports_a_return() -> None:
    live = Liveness(interval=1.0)
    live.seen(1, now=0.0)
    assert live.seen(1, now=2.0) is False
    assert live.overdue(3.0) == []
    assert live.overdue(4.5) == [1]
    assert live.seen(1, now=5.0) is True  # back online


def test_a_node_in_a_long_poll_is_alive_until_the_pull_ends() -> None:
    live = Liveness(interval=1.0)
    live.pull_started(1, now=0.0)
    assert live.overdue(100.0) == []
    live.pull_ended(1, now=100.0)
    assert live.overdue(102.0) == []
    assert live.overdue(102.5) == [1]


def test_overdue_nodes_come_in_deadline_order_and_forgotten_ones_never() -> None:
    live = Liveness(interval=1.0)
    live.seen(3, now=1.0)
    live.seen(2, now=0.0)
    live.seen(9, now=0.0)
    live.forget(9)
    assert live.overdue(10.0) == [2, 3]


@pytest.mark.parametrize("interval", [0.0, -1.0, math.inf, math.nan])
def test_liveness_refuses_a_nonsense_interval(interval: float) -> None:
    with pytest.raises(ConfigError):
        Liveness(interval)


# --- runs ------------------------------------------------------------------------------


def test_run_lifecycle_pending_running_finished() -> None:
    run = Run(1, created_at=1.0)
    running = transition_run(run, RunStatus.RUNNING, "", "", now=2.0)
    assert (running.status, running.started_at) == (RunStatus.RUNNING, 2.0)
    assert transition_run(running, RunStatus.RUNNING, "", "", now=3.0) is running
    done = transition_run(running, RunStatus.FINISHED, RunStatus.COMPLETED, "ok", now=4.0)
    assert (done.status, done.sub_status, done.details) == ("finished", "completed", "ok")
    assert (done.started_at, done.finished_at) == (2.0, 4.0)
    with pytest.raises(RunNotRunningError):
        transition_run(done, RunStatus.RUNNING, "", "", now=5.0)


@pytest.mark.parametrize(
    ("status", "sub_status"),
    [
        ("paused", ""),
        (RunStatus.PENDING, ""),
        (RunStatus.FINISHED, ""),
        (RunStatus.FINISHED, "exploded"),
        (RunStatus.RUNNING, RunStatus.COMPLETED),
    ],
)
def test_run_transitions_outside_the_lifecycle_are_refused(status: str, sub_status: str) -> None:
    running = Run(1, status=RunStatus.RUNNING)
    with pytest.raises(InvalidMessageError):
        transition_run(running, status, sub_status, "", now=1.0)


def test_a_pending_run_may_finish_directly() -> None:
    done = transition_run(Run(1), RunStatus.FINISHED, RunStatus.FAILED, "no nodes", now=9.0)
    assert (done.status, done.sub_status, done.started_at) == ("finished", "failed", 9.0)


# --- message checks --------------------------------------------------------------------


def test_a_well_formed_instruction_passes() -> None:
    check_instruction(instruction(object_ids=(OBJ_A,)), run_id=1)
    check_instruction(instruction(message_type="query.stats"), run_id=1)


@pytest.mark.parametrize(
    "changes",
    [
        {"run_id": 2},
        {"src_node_id": 5},
        {"reply_to_message_id": "x"},
        {"dst_node_id": 0},
        {"dst_node_id": 1 << 63},
        {"message_type": "fit"},
        {"ttl": 0.0},
        {"ttl": math.inf},
        {"message_id": ""},
        {"object_ids": ("../../etc/passwd",)},
    ],
)
def test_malformed_instructions_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidMessageError):
        check_instruction(instruction(**changes), run_id=1)


def test_object_ids_must_be_sha256_hex() -> None:
    check_object_id(OBJ_A)
    for bad in ("A" * 64, "a" * 63, "", "g" * 64):
        with pytest.raises(InvalidMessageError):
            check_object_id(bad)


def test_only_the_destination_may_reply_and_only_as_itself() -> None:
    ins = instruction(dst=7)
    check_reply(reply_to(ins), node_id=7, instruction=ins)
    with pytest.raises(PermissionDeniedError):
        check_reply(reply_to(ins, src_node_id=8), node_id=8, instruction=ins)
    with pytest.raises(PermissionDeniedError):
        check_reply(reply_to(ins, src_node_id=8), node_id=7, instruction=ins)


@pytest.mark.parametrize(
    "changes", [{"run_id": 2}, {"dst_node_id": 3}, {"message_type": "evaluate"}]
)
def test_a_reply_must_match_its_instruction(changes: dict[str, object]) -> None:
    ins = instruction(dst=7)
    with pytest.raises(InvalidMessageError):
        check_reply(reply_to(ins, **changes), node_id=7, instruction=ins)


# --- delivery, settlement, expiry ------------------------------------------------------


def stored(envelope: Envelope, expires_at: float = 100.0, delivered: bool = False) -> StoredMessage:
    return StoredMessage(envelope, expires_at=expires_at, delivered=delivered)


def test_deliverable_filters_what_a_node_must_not_get_yet() -> None:
    ready = stored(instruction("ready"))
    candidates = [
        ready,
        stored(instruction("leased"), delivered=True),
        stored(instruction("answered")),
        stored(instruction("expired"), expires_at=50.0),
        stored(instruction("other-run", run_id=2)),
        stored(instruction("incomplete", object_ids=(OBJ_A,))),
    ]
    out = deliverable(
        candidates,
        answered={"answered"},
        leased=lambda message_id: message_id == "leased",
        running=lambda run_id: run_id == 1,
        complete=lambda env: not env.object_ids,
        now=50.0,
    )
    assert out == [ready]


def test_settle_keeps_usable_replies_and_replaces_unfinished_ones() -> None:
    kept, unfinished, bare = instruction("kept"), instruction("unfinished"), instruction("bare")
    replies = {
        "kept": stored(reply_to(kept, "r-kept")),
        "unfinished": stored(reply_to(unfinished, "r-unfinished")),
    }
    plan = settle(
        [stored(kept), stored(unfinished), stored(bare)],
        replies,
        complete=lambda env: env.metadata.message_id != "r-unfinished",
    )
    assert [m.message_id for m in plan.fail] == ["unfinished", "bare"]
    assert plan.discard == ("r-unfinished",)


def test_expiry_drops_expired_replies_with_their_instruction_and_fails_the_rest() -> None:
    old, late = instruction("old"), instruction("late")
    old_reply = stored(reply_to(old, "r-old"), delivered=True)
    plan = plan_expiry(
        [stored(old), old_reply, stored(late)],
        replies={"old": old_reply},
        complete=lambda env: True,
    )
    assert set(plan.discard) == {"r-old", "old"}
    assert [m.message_id for m in plan.fail] == ["late"]


def test_error_reply_answers_the_instruction_as_its_destination() -> None:
    ins = instruction("m1", dst=7)
    err = Error(ErrorCode.NODE_UNAVAILABLE, "node 7 went offline")
    reply = error_reply(ins, err, now=500.0)
    md = reply.envelope.metadata
    assert (md.src_node_id, md.dst_node_id, md.reply_to_message_id) == (7, 0, "m1")
    assert (md.run_id, md.message_type, md.created_at) == (1, "train", 500.0)
    assert md.message_id != "m1"
    assert reply.expires_at == 560.0
    assert decode_message(reply.envelope, {}).error == err


# --- ids and arrivals ------------------------------------------------------------------


def test_new_ids_are_positive_63_bit_and_avoid_taken_ones() -> None:
    seen: set[int] = set()
    for _ in range(200):
        value = new_id(seen.__contains__)
        assert 0 < value < 1 << 63
        assert value not in seen
        seen.add(value)


def test_new_ids_stay_distinct_past_a_batch_of_random_bits() -> None:
    ids = [new_id(lambda _: False) for _ in range(2000)]  # several batches of 512
    assert len(set(ids)) == len(ids)
    assert all(0 < value < 1 << 63 for value in ids)


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    new_id(lambda _: False)  # the parent holds a batch now
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(writer, new_id(lambda _: False).to_bytes(8, "little"))
        os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    reported = os.read(reader, 8)
    os.close(reader)
    assert len(reported) == 8
    assert int.from_bytes(reported, "little") != new_id(lambda _: False)


def test_arrivals_report_a_message_complete_with_its_last_object() -> None:
    arrivals: Arrivals[str] = Arrivals()
    assert arrivals.expect("m0", [], "wake-0") is True
    assert arrivals.expect("m1", [OBJ_A, OBJ_B], "wake-1") is False
    assert arrivals.expect("m2", [OBJ_A], "wake-2") is False
    assert arrivals.arrived(OBJ_A) == ["wake-2"]
    assert not arrivals.is_complete("m1")
    assert arrivals.arrived(OBJ_B) == ["wake-1"]
    assert arrivals.is_complete("m1")


def test_forgotten_messages_wait_for_nothing() -> None:
    arrivals: Arrivals[str] = Arrivals()
    arrivals.expect("m1", [OBJ_A], "wake-1")
    arrivals.forget(["m1", "unknown"])
    assert arrivals.is_complete("m1")
    assert arrivals.arrived(OBJ_A) == []
