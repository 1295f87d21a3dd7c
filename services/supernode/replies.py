"""What a SuperNode sends back when it has no ClientApp reply.

Helpers of the agent (`agent.py`): the error reply to an instruction known only by its
metadata, and the error code a failure maps to.
"""

from __future__ import annotations

from collections.abc import Mapping

from stamen.codec import encode_message
from stamen.codec.envelope import Envelope
from stamen.common.buffers import Buffer
from stamen.common.errors import AppLoadError, StamenError, WorkerDiedError
from stamen.common.message import Error, ErrorCode, Message, Metadata, reply_metadata

__all__ = ["Reply", "error_code", "error_reply"]

Reply = tuple[Envelope, Mapping[str, Buffer]]


def error_code(exc: StamenError) -> int:
    if isinstance(exc, WorkerDiedError):
        return ErrorCode.WORKER_DIED
    if isinstance(exc, AppLoadError):
        return ErrorCode.LOAD_CLIENT_APP
    return ErrorCode.UNKNOWN


def error_reply(instruction: Metadata, code: int, reason: str, now: float) -> Reply:
    """An error reply, made at `now` (unix seconds), to an instruction known only by its
    metadata."""
    return encode_message(
        Message(error=Error(code, reason), metadata=reply_metadata(instruction, now))
    )
