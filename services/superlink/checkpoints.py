"""Run checkpoints as the SuperLink keeps them: a message of the run, to node 0.

A ServerApp runner checkpoints its run after each round (the round loop's state: the
model, the History, the sampling state) so that a run can continue from its last
completed round after the runner died (`stamen-serverapp --resume RUN_ID`). The SuperLink
keeps each checkpoint as a message of its run addressed to node 0, which is no node: so
its arrays are content-addressed objects like any instruction's (pushed and pulled with
PushObject/PullObject, stored once; the next round's instructions, which carry the same
model, upload nothing new), it is never delivered, and it never expires. A new checkpoint
replaces the run's earlier one, and the latest outlives the run: resuming a failed run
needs it. Message ids say which message is a checkpoint (`CHECKPOINT_PREFIX`).
"""

from __future__ import annotations

from collections.abc import Iterable

from stamen.codec.envelope import Envelope
from stamen.common.errors import InvalidMessageError
from stamen.transport.types import CHECKPOINT_PREFIX

from .linkstate import StoredMessage

__all__ = ["NEVER", "check_checkpoint", "checkpoint_ids", "stored"]

NEVER = 1e18
"""A checkpoint's expiry (wall-clock seconds): never."""


def check_checkpoint(envelope: Envelope, run_id: int) -> None:
    """InvalidMessageError unless `envelope` is a checkpoint of run `run_id`."""
    meta = envelope.metadata
    if not meta.message_id.startswith(CHECKPOINT_PREFIX):
        raise InvalidMessageError(f"a checkpoint's id starts with {CHECKPOINT_PREFIX!r}")
    if meta.run_id != run_id:
        raise InvalidMessageError(f"the checkpoint is of run {meta.run_id}, not of run {run_id}")
    if meta.dst_node_id != 0 or meta.reply_to_message_id:
        raise InvalidMessageError("a checkpoint is addressed to node 0 and answers nothing")


def stored(envelope: Envelope) -> StoredMessage:
    """The checkpoint as the state keeps it: delivered already, so no node is sent it."""
    return StoredMessage(envelope, expires_at=NEVER, delivered=True)


def checkpoint_ids(message_ids: Iterable[str]) -> list[str]:
    return [message_id for message_id in message_ids if message_id.startswith(CHECKPOINT_PREFIX)]
