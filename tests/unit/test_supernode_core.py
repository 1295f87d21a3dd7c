"""NodeCore: the SuperNode's decisions, driven synchronously with plain values and `now`."""

from __future__ import annotations

import random

import pytest
from stamen.common.backoff import Backoff
from stamen.common.errors import NodeNotFoundError, UnavailableError
from stamen.common.message import ErrorCode, Metadata
from stamen.common.run import Run, RunStatus
from stamen.supernode.core import (
    EXPIRY_SLACK,
    MAX_ANSWERED,
    MAX_RUNS,
    MIN_HEARTBEAT_INTERVAL,
    NodeCore,
    RegisterAgain,
    Retry,
    Stopping,
)


def core(
    *, backoff: Backoff | None = None, max_retries: int | None = None, grace_period: float = 8.0
) -> NodeCore:
    node = NodeCore(
        {"partition": 3},
        backoff=backoff,
        max_retries=max_retries,
        grace_period=grace_period,
        rng=random.Random(1),
    )
    node.registered(7, heartbeat_interval=5.0)
    return node


def instruction(run_id: int = 1, created_at: float = 1_000.0, ttl: float = 60.0) -> Metadata:
    return Metadata(
        run_id=run_id,
        message_id="m1",
        src_node_id=0,
        dst_node_id=7,
        reply_to_message_id="",
        group_id="",
        created_at=created_at,
        ttl=ttl,
        message_type="train",
    )


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_retries must not be negative, got -1"):
        NodeCore({}, max_retries=-1)
    with pytest.raises(ValueError, match="max_wait_time must not be negative, got -2"):
        NodeCore({}, max_wait_time=-2)


def test_registration_and_unregistration() -> None:
    node = core()
    assert node.node_id == 7
    assert node.unregistering() == 7
    assert node.node_id is None
    assert node.unregistering() is None  # nothing left to unregister


def test_the_heartbeat_delay_has_a_floor() -> None:
    node = core()
    assert node.heartbeat_delay() == 5.0
    node.registered(8, heartbeat_interval=0.0)
    assert node.heartbeat_delay() == MIN_HEARTBEAT_INTERVAL


def test_answered_ids_are_remembered_up_to_a_bound() -> None:
    node = core()
    assert not node.was_answered("a")
    node.answered("a")
    assert node.was_answered("a")
    for index in range(MAX_ANSWERED):
        node.answered(f"later-{index}")
    assert not node.was_answered("a")  # the oldest is forgotten
    assert node.was_answered(f"later-{MAX_ANSWERED - 1}")


def test_a_runs_context_is_made_once_and_kept_with_its_state() -> None:
    node = core()
    assert node.context(1, 7) is None
    made = node.run_fetched(Run(run_id=1, run_config={"lr": 0.1}), 7)
    assert (made.run_id, made.node_id) == (1, 7)
    assert made.node_config == {"partition": 3}
    assert made.run_config == {"lr": 0.1}
    again = node.context(1, 9)  # registered again meanwhile
    assert again is made
    assert again.node_id == 9


def test_the_least_recently_served_run_is_dropped() -> None:
    node = core()
    for run_id in range(MAX_RUNS):
        node.run_fetched(Run(run_id=run_id), 7)
    assert node.context(0, 7) is not None  # run 0 is now the most recent
    node.run_fetched(Run(run_id=MAX_RUNS), 7)
    assert node.context(1, 7) is None
    assert node.context(0, 7) is not None


def test_an_unreachable_superlink_starts_one_outage_with_backoff() -> None:
    node = core(backoff=Backoff(initial=1.0, maximum=4.0))
    first = node.call_failed(UnavailableError("refused"), 7, False, None, now=10.0)
    assert isinstance(first, Retry)
    assert first.began
    assert 0.5 <= first.delay <= 1.0
    second = node.call_failed(UnavailableError("refused"), 7, False, first.outage, now=11.0)
    assert isinstance(second, Retry)
    assert not second.began
    assert second.outage is first.outage
    assert 1.0 <= second.delay <= 2.0
    assert node.node_id == 7  # still registered: only the link is down


def test_a_lost_registration_registers_again_at_once() -> None:
    node = core()
    step = node.call_failed(NodeNotFoundError(7), 7, False, None, now=10.0)
    assert isinstance(step, RegisterAgain)
    assert node.node_id is None


def test_a_registration_lost_at_once_waits_out_the_backoff() -> None:
    node = core()
    step = node.call_failed(NodeNotFoundError(7), 7, True, None, now=10.0)
    assert isinstance(step, Retry)
    assert node.node_id is None


def test_another_nodes_unknown_id_is_not_ours_to_mend() -> None:
    node = core()
    failure = NodeNotFoundError(99)
    with pytest.raises(NodeNotFoundError) as raised:
        node.call_failed(failure, 7, False, None, now=10.0)
    assert raised.value is failure
    assert node.node_id == 7


def test_a_stopping_node_does_not_retry() -> None:
    node = core()
    node.stop()
    with pytest.raises(Stopping):
        node.call_failed(UnavailableError("refused"), 7, False, None, now=10.0)


def test_the_node_gives_up_after_max_retries_naming_the_failure() -> None:
    node = core(max_retries=1)
    failure = UnavailableError("refused")
    step = node.call_failed(failure, 7, False, None, now=10.0)
    assert isinstance(step, Retry)
    with pytest.raises(UnavailableError, match=r"after 1 retry over 2\.0s: refused") as raised:
        node.call_failed(failure, 7, False, step.outage, now=12.0)
    assert raised.value.__cause__ is failure


def test_a_task_expires_with_its_instruction_on_the_local_clock() -> None:
    node = core()
    # Sent at wall time 1,000 with a TTL of 60; started at wall 1,010 = monotonic 500.
    expires = node.task_started(instruction(created_at=1_000.0, ttl=60.0), 500.0, 1_010.0)
    assert expires == pytest.approx(550.0 + EXPIRY_SLACK)
    assert node.task_run == 1
    code, reason = node.task_cancelled(instruction(), expired=True)
    assert code == ErrorCode.MESSAGE_EXPIRED
    assert reason == "node 7 cancelled the ClientApp's task: its message expired (TTL 60s)"
    node.task_ended()
    assert node.task_run is None


def test_stopping_gives_the_task_in_hand_a_grace_period() -> None:
    node = core(grace_period=8.0)
    node.stop()
    assert node.stopping
    assert node.grace_deadline(100.0, 500.0) == 108.0
    assert node.grace_deadline(100.0, 104.0) == 104.0  # its own deadline comes first
    assert node.grace_deadline(100.0, None) == 108.0
    code, reason = node.task_cancelled(instruction(), expired=False)
    assert code == ErrorCode.NODE_UNAVAILABLE
    assert reason.endswith("the node stopped (grace period 8s)")


def test_a_task_whose_run_stopped_is_cancelled_with_run_stopped() -> None:
    node = core()
    node.task_started(instruction(run_id=4), 500.0, 1_010.0)
    assert not node.run_checked(Run(run_id=4, status=RunStatus.RUNNING))
    assert not node.run_checked(Run(run_id=5, status=RunStatus.FINISHED))  # another run
    assert node.run_checked(Run(run_id=4, status=RunStatus.FINISHED, sub_status="stopped"))
    code, reason = node.task_cancelled(instruction(run_id=4), expired=True)
    assert code == ErrorCode.RUN_STOPPED
    assert reason.endswith("run 4 is stopped")
    node.task_started(instruction(run_id=4), 600.0, 1_110.0)  # the next task starts afresh
    assert node.task_cancelled(instruction(), expired=True)[0] == ErrorCode.MESSAGE_EXPIRED
