"""Arrivals: which messages still wait for which of their objects.

A message is handed out only once every object it names is stored. Rather than checking
the store for each object on every pull, the SuperLink records what a message lacks when
it is pushed, ticks objects off as they arrive, and learns in one step which messages an
object completed (and so whom to wake). The index lives in memory; `SuperLink` rebuilds it
from the state and the store when it starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["Arrivals"]

T = TypeVar("T")


class Arrivals(Generic[T]):
    """Messages waiting for objects; each carries a token (whom to wake) given back when
    its last object arrives."""

    def __init__(self) -> None:
        self._missing: dict[str, tuple[set[str], T]] = {}  # message id -> (objects, token)
        self._awaited: dict[str, set[str]] = {}  # object id -> message ids

    def expect(self, message_id: str, missing: Iterable[str], token: T) -> bool:
        """Record what the message lacks; True when it lacks nothing (complete now)."""
        lacking = set(missing)
        if not lacking:
            return True
        self._missing[message_id] = (lacking, token)
        for object_id in lacking:
            self._awaited.setdefault(object_id, set()).add(message_id)
        return False

    def is_complete(self, message_id: str) -> bool:
        return message_id not in self._missing

    def arrived(self, object_id: str) -> list[T]:
        """The object is stored: the tokens of the messages it completed."""
        completed = []
        for message_id in self._awaited.pop(object_id, ()):
            lacking, token = self._missing[message_id]
            lacking.discard(object_id)
            if not lacking:
                del self._missing[message_id]
                completed.append(token)
        return completed

    def forget(self, message_ids: Iterable[str]) -> None:
        """The messages are gone: stop waiting on their behalf."""
        for message_id in message_ids:
            entry = self._missing.pop(message_id, None)
            if entry is None:
                continue
            for object_id in entry[0]:
                waiting = self._awaited[object_id]
                waiting.discard(message_id)
                if not waiting:
                    del self._awaited[object_id]
