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
from stamen.common.message import Error, ErrorCode, Message, Metadata

__all__ = ["Reply", "error_code", "error_reply"]

Reply = tuple[Envelope, Mapping[str, Buffer]]


def error_code(exc: StamenError) -> int:
    if isinstance(exc, WorkerDiedError):
        return ErrorCode.WORKER_DIED
    if isinstance(exc, AppLoadError):
        return ErrorCode.LOAD_CLIENT_APP
    return ErrorCode.UNKNOWN


def error_reply(instruction: Metadata, code: int, reason: str) -> Reply:
    """An error reply to an instruction known only by its metadata."""
    instruction_message = Message(error=Error(ErrorCode.UNKNOWN), metadata=instruction)
    return encode_message(instruction_message.create_error_reply(Error(code, reason)))
