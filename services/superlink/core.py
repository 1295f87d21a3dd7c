"""The SuperLink's rules, without I/O: who may send what to whom, and when things expire.

Everything here is a pure function of its arguments (state read by the caller, plus
`now`), or, for liveness, a small class that is fed events and asked for decisions. The
handlers in `router`, `fleet`, `serverappio` and `control` read the state, call these
rules, and carry out what they decide. Tests drive the rules with plain values and a
fake time, no event loop.

Time: liveness deadlines use the monotonic clock (`Clock.now`); message expiry and run
timestamps use wall-clock seconds (`Clock.time`), because they are stored and must mean
the same after a restart.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import struct
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from stamen.codec.envelope import Envelope
from stamen.codec.message import encode_message
from stamen.common.errors import (
    ConfigError,
    InvalidMessageError,
    PermissionDeniedError,
    RunNotRunningError,
)
from stamen.common.message import (
    SUPERLINK_NODE_ID,
    Error,
    Message,
    MessageType,
    is_message_type,
    reply_metadata,
)
from stamen.common.run import Run, RunStatus

from .linkstate import StoredMessage

__all__ = [
    "DEADLINE_FACTOR",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "MAX_PULL_WAIT",
    "Liveness",
    "Settlement",
    "check_instruction",
    "check_object_id",
    "check_reference",
    "check_reply",
    "deliverable",
    "error_reply",
    "new_id",
    "plan_expiry",
    "settle",
    "transition_run",
]

DEFAULT_HEARTBEAT_INTERVAL = 5.0
"""Seconds between a node's heartbeats, unless the SuperLink is told otherwise."""

DEADLINE_FACTOR = 2.5
"""A node is offline after this many heartbeat intervals without a sign of life."""

MAX_PULL_WAIT = 30.0
"""The longest a long-polling pull waits for work, whatever timeout it asks for."""

_MAX_ID = (1 << 63) - 1
_OBJECT_ID = re.compile(r"[0-9a-f]{64}")


# Random ids drawn from the OS 512 at a time: registering a simulation's 100,000 nodes
# made one system call per id. A forked child draws its own.
_ID_BATCH = struct.Struct("<512Q")
_random_ids: list[int] = []
os.register_at_fork(after_in_child=_random_ids.clear)


def new_id(taken: Callable[[int], bool]) -> int:
    """A random positive 63-bit id (never 0: that stands for the ServerApp side)."""
    while True:
        try:
            candidate = _random_ids.pop() >> 1
        except IndexError:
            _random_ids.extend(_ID_BATCH.unpack(secrets.token_bytes(_ID_BATCH.size)))
            continue
        if candidate and not taken(candidate):
            return candidate


# --- liveness --------------------------------------------------------------------------


class Liveness:
    """Which nodes count as online, by monotonic deadline.

    A heartbeat (or any request from the node) moves its deadline to `now` plus
    DEADLINE_FACTOR intervals. A node waiting in a long-poll pull is alive for as long as
    the pull lasts; its deadline starts again when the pull ends.
    """

    __slots__ = ("_deadlines", "_pulling", "interval", "span")

    def __init__(self, interval: float, factor: float = DEADLINE_FACTOR) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ConfigError(f"heartbeat interval must be a positive number, got {interval}")
        self.interval = interval
        self.span = interval * factor
        self._deadlines: dict[int, float] = {}
        self._pulling: dict[int, int] = {}

    def seen(self, node_id: int, now: float) -> bool:
        """Record a sign of life; True when the node was not online before."""
        was_online = node_id in self._deadlines
        self._deadlines[node_id] = now + self.span
        return not was_online

    def is_online(self, node_id: int) -> bool:
        return node_id in self._deadlines

    def forget(self, node_id: int) -> None:
        """The node left (unregistered): stop tracking it."""
        self._deadlines.pop(node_id, None)
        self._pulling.pop(node_id, None)

    def pull_started(self, node_id: int, now: float) -> bool:
        self._pulling[node_id] = self._pulling.get(node_id, 0) + 1
        return self.seen(node_id, now)

    def pull_ended(self, node_id: int, now: float) -> None:
        count = self._pulling.get(node_id, 0) - 1
        if count > 0:
            self._pulling[node_id] = count
        else:
            self._pulling.pop(node_id, None)
        if node_id in self._deadlines:
            self._deadlines[node_id] = now + self.span

    def overdue(self, now: float) -> list[int]:
        """Nodes past their deadline, in deadline order; they stop counting as online."""
        late = sorted(
            (deadline, node_id)
            for node_id, deadline in self._deadlines.items()
            if deadline <= now and node_id not in self._pulling
        )
        for _, node_id in late:
            del self._deadlines[node_id]
        return [node_id for _, node_id in late]


# --- runs ------------------------------------------------------------------------------

_NEXT_STATUS = {
    RunStatus.PENDING: (RunStatus.RUNNING, RunStatus.FINISHED),
    RunStatus.RUNNING: (RunStatus.RUNNING, RunStatus.FINISHED),
    RunStatus.FINISHED: (),
}
_SUB_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED)


def transition_run(run: Run, status: str, sub_status: str, details: str, now: float) -> Run:
    """The run after a status change; pending -> running -> finished (with a sub-status).

    Running again while running changes nothing. A finished run is final:
    RunNotRunningError. Anything else that does not follow the lifecycle:
    InvalidMessageError.
    """
    if run.status == RunStatus.FINISHED:
        raise RunNotRunningError(run.run_id, run.status)
    if status not in _NEXT_STATUS:
        raise InvalidMessageError(f"run status {status!r} is not one of {', '.join(_NEXT_STATUS)}")
    if status not in _NEXT_STATUS[run.status]:
        raise InvalidMessageError(f"run {run.run_id} cannot go from {run.status} to {status}")
    if status == RunStatus.FINISHED:
        if sub_status not in _SUB_STATUSES:
            raise InvalidMessageError(
                f"a finished run needs a sub-status, one of {', '.join(_SUB_STATUSES)}; "
                f"got {sub_status!r}"
            )
        return replace(
            run,
            status=RunStatus.FINISHED,
            sub_status=sub_status,
            details=details,
            started_at=run.started_at or now,
            finished_at=now,
        )
    if sub_status:
        raise InvalidMessageError(f"only a finished run has a sub-status, got {sub_status!r}")
    if status == run.status:
        return run
    return replace(run, status=RunStatus(status), details=details, started_at=now)


# --- messages --------------------------------------------------------------------------


def check_object_id(object_id: str) -> None:
    """Object ids are sha256 hex digests; anything else is refused (and never becomes a
    file name)."""
    if not _OBJECT_ID.fullmatch(object_id):
        raise InvalidMessageError(f"object id {object_id!r} is not a sha256 hex digest")


MAX_REFERENCE = 1024
"""Characters an app reference (server_app, client_app) may have."""


def check_reference(field: str, value: str) -> None:
    """An app reference a run records: bounded, and no control characters (it is logged)."""
    if len(value) > MAX_REFERENCE or not value.isprintable():
        raise InvalidMessageError(
            f"{field} must be at most {MAX_REFERENCE} printable characters, got {value[:40]!r}"
        )


def _check_common(envelope: Envelope, *, reply: bool = False) -> None:
    """A reply's TTL may be zero: it lives what is left of its instruction's
    (`reply_metadata`), nothing when it answers one that expired (a late answer)."""
    md = envelope.metadata
    if not md.message_id:
        raise InvalidMessageError("message has no message id")
    if not (math.isfinite(md.ttl) and (md.ttl >= 0 if reply else md.ttl > 0)):
        least = "not be negative" if reply else "be positive"
        raise InvalidMessageError(f"message {md.message_id}: ttl must {least}, got {md.ttl}")
    for object_id in envelope.object_ids:
        check_object_id(object_id)


def check_instruction(envelope: Envelope, run_id: int) -> None:
    """An instruction the ServerApp side of `run_id` may push (its destination node's
    registration is checked by the caller)."""
    md = envelope.metadata
    _check_common(envelope)
    if md.run_id != run_id:
        raise InvalidMessageError(
            f"message {md.message_id} is for run {md.run_id}, pushed to run {run_id}"
        )
    if md.src_node_id != SUPERLINK_NODE_ID:
        raise InvalidMessageError(
            f"message {md.message_id}: an instruction comes from node {SUPERLINK_NODE_ID}, "
            f"not {md.src_node_id}"
        )
    if md.reply_to_message_id:
        raise InvalidMessageError(f"message {md.message_id} is a reply, not an instruction")
    if md.dst_node_id == SUPERLINK_NODE_ID or md.dst_node_id > _MAX_ID:
        raise InvalidMessageError(f"message {md.message_id}: {md.dst_node_id} is not a node id")
    if not is_message_type(md.message_type):
        raise InvalidMessageError(
            f"message {md.message_id}: type {md.message_type!r} is not one of "
            f"{', '.join(MessageType)} (a query may be 'query.<name>')"
        )


def check_reply(envelope: Envelope, node_id: int, instruction: Envelope) -> None:
    """A reply node `node_id` may push to `instruction`."""
    md, ins = envelope.metadata, instruction.metadata
    _check_common(envelope, reply=True)
    if ins.dst_node_id != node_id:
        raise PermissionDeniedError(
            f"node {node_id} cannot answer message {ins.message_id}: it was sent to node "
            f"{ins.dst_node_id}"
        )
    if md.src_node_id != node_id:
        raise PermissionDeniedError(
            f"node {node_id} cannot push message {md.message_id} as node {md.src_node_id}"
        )
    expected = (ins.run_id, ins.src_node_id, ins.message_type)
    if (md.run_id, md.dst_node_id, md.message_type) != expected:
        raise InvalidMessageError(
            f"reply {md.message_id} must have run {ins.run_id}, destination "
            f"{ins.src_node_id} and type {ins.message_type!r} like message {ins.message_id}"
        )


def deliverable(
    instructions: Iterable[StoredMessage],
    *,
    answered: Collection[str],
    leased: Callable[[str], bool],
    running: Callable[[int], bool],
    complete: Callable[[Envelope], bool],
    now: float,
) -> list[StoredMessage]:
    """What a node's pull hands out: unanswered, unexpired instructions of running runs
    whose objects are all stored, but for those handed out less than a lease ago (see
    `deliveries`)."""
    return [
        message
        for message in instructions
        if not leased(message.message_id)
        and message.message_id not in answered
        and message.expires_at > now
        and running(message.run_id)
        and complete(message.envelope)
    ]


def error_reply(instruction: Envelope, error: Error, now: float) -> StoredMessage:
    """The reply the SuperLink writes for a node when the node cannot: it answers the
    instruction as if from its destination (`reply_metadata`'s TTL rule), and is kept for
    the ServerApp one instruction TTL from now, as a node's reply would be."""
    metadata = reply_metadata(instruction.metadata, now)
    envelope, _ = encode_message(Message(error=error, metadata=metadata))
    return StoredMessage(envelope, expires_at=now + instruction.metadata.ttl)


@dataclass(frozen=True, slots=True)
class Settlement:
    """How to close instructions that will get no reply from their node: discard the
    messages in `discard` (unfinished replies), then answer `fail` with errors."""

    fail: tuple[StoredMessage, ...] = ()
    discard: tuple[str, ...] = ()


def settle(
    instructions: Iterable[StoredMessage],
    replies: Mapping[str, StoredMessage],
    complete: Callable[[Envelope], bool],
) -> Settlement:
    """For instructions whose node is gone (or whose time is up): those with a complete
    (or delivered) reply stand; the others get an error reply, replacing any reply whose
    objects never all arrived."""
    fail: list[StoredMessage] = []
    discard: list[str] = []
    for instruction in instructions:
        reply = replies.get(instruction.message_id)
        if reply is not None:
            if reply.delivered or complete(reply.envelope):
                continue
            discard.append(reply.message_id)
        fail.append(instruction)
    return Settlement(tuple(fail), tuple(discard))


def plan_expiry(
    expired: Sequence[StoredMessage],
    replies: Mapping[str, StoredMessage],
    complete: Callable[[Envelope], bool],
) -> Settlement:
    """What the sweep does with expired messages (`replies`: the replies to the expired
    instructions). An expired reply goes, with its instruction: nobody collected it in
    time. An expired instruction without a usable reply is answered MESSAGE_EXPIRED."""
    discard: dict[str, None] = {}
    for message in expired:
        if message.is_reply:
            discard[message.message_id] = None
            discard[message.reply_to] = None
    open_instructions = [
        message for message in expired if not message.is_reply and message.message_id not in discard
    ]
    settlement = settle(open_instructions, replies, complete)
    discard.update(dict.fromkeys(settlement.discard))
    return Settlement(settlement.fail, tuple(discard))
