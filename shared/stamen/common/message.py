"""Message: what the ServerApp and the ClientApps say to each other through the SuperLink.

A Message is metadata (who, to whom, in reply to what, of which type, how long it may
wait) plus either content (a RecordDict) or an Error.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from enum import IntEnum, StrEnum
from typing import Any, overload

from .errors import InvalidMessageError, MessageContentError
from .records import RecordDict

__all__ = [
    "DEFAULT_TTL",
    "SUPERLINK_NODE_ID",
    "Error",
    "ErrorCode",
    "Message",
    "MessageType",
    "Metadata",
    "is_message_type",
    "new_message_id",
]

DEFAULT_TTL = 43200.0
"""Seconds a message may wait for delivery and its reply: 12 hours, Flower's default.
A node that goes offline turns its messages into error replies long before."""

SUPERLINK_NODE_ID = 0
"""The node id that stands for the ServerApp side (source of instructions)."""


class MessageType(StrEnum):
    """The message types a ClientApp dispatches on (a query may add ".<name>"); each is
    the string it stands for, so `Metadata.message_type` stays a plain `str`."""

    TRAIN = "train"
    EVALUATE = "evaluate"
    QUERY = "query"


@dataclass(slots=True)
class Metadata:
    """Who sent a message to whom, in reply to what, of which type, how long it may wait.

    The fields in Flower's order; `created_at` is a Unix timestamp, `ttl` seconds.
    """

    run_id: int
    message_id: str
    src_node_id: int
    dst_node_id: int
    reply_to_message_id: str
    group_id: str
    created_at: float
    ttl: float
    message_type: str
    delivered_at: str = ""


@dataclass(frozen=True, slots=True)
class Error:
    """Why a message could not be answered. `reason` holds text a person can act on."""

    code: int
    reason: str = ""


class ErrorCode(IntEnum):
    """Why a reply carries an error (`Error.code`); each is the int it stands for."""

    UNKNOWN = 0
    CLIENT_APP_RAISED = 1
    NODE_UNAVAILABLE = 2
    MESSAGE_EXPIRED = 3
    WORKER_DIED = 4
    LOAD_CLIENT_APP = 5
    RUN_STOPPED = 6


def new_message_id() -> str:
    return uuid.uuid4().hex


_TYPES = frozenset(MessageType)


def is_message_type(message_type: str) -> bool:
    """Whether `message_type` is a `MessageType`, or a query's "query.<name>"."""
    return message_type.split(".", 1)[0] in _TYPES


def _check_type(message_type: str) -> str:
    if not is_message_type(message_type):
        raise InvalidMessageError(
            f"message type {message_type!r} is not one of {', '.join(MessageType)} "
            "(a query may be 'query.<name>')"
        )
    return message_type


class Message:
    """A message with content or an error, in Flower's forms.

    Instructions: `Message(content, dst_node_id, message_type)` (keywords too).
    Replies: `Message(content, reply_to=instruction)`, `Message(error, reply_to=...)`, or
    `instruction.create_reply(content)`. A reply takes its destination, type and group
    from the instruction, and its TTL never outlives the instruction's.
    """

    __slots__ = ("_content", "_error", "metadata")

    @overload
    def __init__(
        self,
        content: RecordDict,
        dst_node_id: int,
        message_type: str,
        *,
        ttl: float | None = None,
        group_id: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self, content: RecordDict, *, reply_to: Message, ttl: float | None = None
    ) -> None: ...
    @overload
    def __init__(self, error: Error, *, reply_to: Message, ttl: float | None = None) -> None: ...
    @overload
    def __init__(
        self,
        content_or_error: RecordDict | Error | None = None,
        /,
        *,
        content: RecordDict | None = None,
        error: Error | None = None,
        dst_node_id: int | None = None,
        message_type: str | None = None,
        ttl: float | None = None,
        group_id: str | None = None,
        reply_to: Message | None = None,
        metadata: Metadata | None = None,
    ) -> None: ...

    def __init__(
        self,
        *args: Any,
        dst_node_id: int | None = None,
        message_type: str | None = None,
        content: RecordDict | None = None,
        error: Error | None = None,
        ttl: float | None = None,
        group_id: str | None = None,
        dst_task_id: int | None = None,
        reply_to: Message | None = None,
        metadata: Metadata | None = None,
    ) -> None:
        if len(args) > 3:
            raise TypeError(f"Message takes at most 3 positional arguments, got {len(args)}")
        if args:
            first, *rest = args
            if isinstance(first, Error):
                error, extra = _once("error", error, first), rest
            else:
                content, extra = _once("content", content, first), rest
            if extra:
                dst_node_id = _once("dst_node_id", dst_node_id, extra[0])
            if len(extra) > 1:
                message_type = _once("message_type", message_type, extra[1])
        if dst_task_id is not None:
            raise TypeError("Message(dst_task_id=...) is not supported by Stamen")
        if (content is None) == (error is None):
            raise TypeError("a Message has either content or an error, not both or neither")
        if content is not None and not isinstance(content, RecordDict):
            raise TypeError(f"Message content must be a RecordDict, got {type(content).__name__}")
        if error is not None and not isinstance(error, Error):
            raise TypeError(f"Message error must be an Error, got {type(error).__name__}")
        self._content = content
        self._error = error
        if metadata is not None:
            if any(x is not None for x in (dst_node_id, message_type, ttl, group_id, reply_to)):
                raise TypeError("a Message built from metadata takes no other metadata fields")
            self.metadata = metadata
        elif reply_to is not None:
            if dst_node_id is not None or message_type is not None or group_id is not None:
                raise TypeError(
                    "a reply takes its destination, type and group from reply_to: "
                    "give only content (or error), reply_to and ttl"
                )
            self.metadata = _reply_metadata(reply_to.metadata, ttl)
        else:
            if dst_node_id is None or message_type is None:
                raise TypeError("an instruction needs dst_node_id and message_type")
            self.metadata = Metadata(
                run_id=0,
                message_id=new_message_id(),
                src_node_id=SUPERLINK_NODE_ID,
                dst_node_id=dst_node_id,
                reply_to_message_id="",
                group_id=group_id or "",
                created_at=time.time(),
                ttl=DEFAULT_TTL if ttl is None else float(ttl),
                message_type=_check_type(message_type),
            )

    @property
    def content(self) -> RecordDict:
        if self._content is None:
            raise MessageContentError(
                f"message {self.metadata.message_id} carries an error, not content: {self._error}"
            )
        return self._content

    @content.setter
    def content(self, value: RecordDict) -> None:
        self._content, self._error = value, None

    @property
    def error(self) -> Error:
        if self._error is None:
            raise MessageContentError(f"message {self.metadata.message_id} carries no error")
        return self._error

    def has_content(self) -> bool:
        return self._content is not None

    def has_error(self) -> bool:
        return self._error is not None

    def create_reply(self, content: RecordDict, ttl: float | None = None) -> Message:
        return Message(content, reply_to=self, ttl=ttl)

    def create_error_reply(self, error: Error, ttl: float | None = None) -> Message:
        return Message(error=error, reply_to=self, ttl=ttl)

    def __repr__(self) -> str:
        body = f"error={self._error!r}" if self._error else f"content={self._content!r}"
        return f"Message(metadata={self.metadata!r}, {body})"


def _once(name: str, keyword: Any, positional: Any) -> Any:
    if keyword is not None:
        raise TypeError(f"Message got {name} both positionally and as a keyword")
    return positional


def _reply_metadata(instruction: Metadata, ttl: float | None) -> Metadata:
    now = time.time()
    # What is left of the instruction's lifetime: a reply never outlives it.
    left = max(instruction.created_at + instruction.ttl - now, 0.0)
    ttl = left if ttl is None else min(float(ttl), left)
    return replace(
        instruction,
        message_id=new_message_id(),
        src_node_id=instruction.dst_node_id,
        dst_node_id=instruction.src_node_id,
        reply_to_message_id=instruction.message_id,
        ttl=float(ttl),
        created_at=now,
    )
