"""What a push of messages stored, as the store and both transports report it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PushResult"]


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push stored: the message ids, and the objects the store still lacks."""

    message_ids: tuple[str, ...]
    missing_object_ids: tuple[str, ...] = ()
