"""The worker side of an `AppExecutor`: decode a task, run the ClientApp, encode the reply.

Every executor (a SuperNode's worker process, a thread, the simulation pool) calls
`run_task` where the user code is allowed to run, so decoding, training and encoding all
stay off the agent's event loop. It returns a reply for every task: what the app
answered, its error reply, or an error reply saying the task could not be decoded or the
app's reply could not be encoded.
"""

from __future__ import annotations

import logging

from stamen.codec import decode_message, encode_message
from stamen.common.errors import InvalidMessageError
from stamen.common.message import Error, ErrorCode, Message
from stamen.common.records import RecordDict

from .client_app import ClientApp
from .task import AppResult, AppTask

__all__ = ["run_task"]

logger = logging.getLogger(__name__)


def run_task(app: ClientApp, task: AppTask) -> AppResult:
    """Run `app` on one task; the result carries the reply and the node's updated state."""
    try:
        message = decode_message(task.envelope, task.objects)
    except InvalidMessageError as exc:  # IntegrityError included
        reply = _failure(task, ErrorCode.UNKNOWN, f"the message could not be decoded: {exc}")
    else:
        reply = app(message, task.context)
    try:
        envelope, objects = encode_message(reply)
    except InvalidMessageError as exc:
        reason = f"the ClientApp's reply could not be encoded: {exc}"
        envelope, objects = encode_message(_failure(task, ErrorCode.CLIENT_APP_RAISED, reason))
    return AppResult(envelope=envelope, objects=objects, state=task.context.state)


def _failure(task: AppTask, code: int, reason: str) -> Message:
    """An error reply built from the envelope's metadata, all that is sure to be known."""
    context = task.context
    logger.error(
        "node %d (run %d), message %s: %s",
        context.node_id,
        context.run_id,
        task.envelope.message_id,
        reason,
        extra={"run_id": context.run_id, "node_id": context.node_id},
    )
    instruction = Message(RecordDict(), metadata=task.envelope.metadata)
    return instruction.create_error_reply(Error(code=code, reason=reason))
