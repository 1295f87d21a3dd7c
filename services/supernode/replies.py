"""What a SuperNode sends back when it has no ClientApp reply, and how it streams objects.

Helpers of the agent (`agent.py`): the error reply to an instruction known only by its
metadata, the error code a failure maps to, and chunk streams whose deadline moves with
each chunk, so that a large object is bounded per chunk rather than as a whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TypeVar

from stamen.codec import encode_message, iter_chunks
from stamen.codec.envelope import Envelope
from stamen.common.buffers import Buffer
from stamen.common.errors import AppLoadError, StamenError, WorkerDiedError
from stamen.common.message import Error, ErrorCode, Message, Metadata

__all__ = ["Reply", "aiter_chunks", "error_code", "error_reply", "extending"]

T = TypeVar("T")
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


async def aiter_chunks(data: Buffer) -> AsyncIterator[memoryview]:
    for chunk in iter_chunks(data):
        yield chunk


async def extending(
    chunks: AsyncIterator[T], scope: asyncio.Timeout, idle: float
) -> AsyncGenerator[T, None]:
    """The chunks, pushing `scope`'s deadline `idle` seconds past each one."""
    loop = asyncio.get_running_loop()
    try:
        async for chunk in chunks:
            scope.reschedule(loop.time() + idle)
            yield chunk
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
