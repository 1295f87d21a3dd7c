"""ObjectCache: objects recently fetched, kept for reuse within a byte budget.

Consecutive messages often carry the same arrays (the global model that one round
evaluates is the one the next round trains; replies echo frozen layers), so whoever
fetches objects (a SuperNode agent, the ServerApp's grid) fetches each once and keeps it
while the budget allows, evicting the least recently used first. An object larger than
the whole budget is not kept, and evicts nothing. Agents in one process may share one
cache (each fetches what it misses; all reuse what any of them fetched).
"""

from __future__ import annotations

from collections import OrderedDict

from stamen.common.buffers import Buffer

__all__ = ["DEFAULT_CACHE_BYTES", "ObjectCache"]

DEFAULT_CACHE_BYTES = 512 << 20
"""A node keeps up to 512 MiB of fetched objects: the last model or two of mid size.
Many agents in one process (a simulation) should share one cache instead."""


class ObjectCache:
    """Object id -> bytes, least recently used first out once over `max_bytes`.

    It keeps what it is given, as given: a caller whose hand-outs must not be changed in
    place puts read-only views.
    """

    __slots__ = ("_entries", "_size", "max_bytes")

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Buffer] = OrderedDict()
        self._size = 0

    @property
    def nbytes(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._entries

    def get(self, object_id: str) -> Buffer | None:
        """The object's bytes, marked as just used; None when the cache does not hold it."""
        data = self._entries.get(object_id)
        if data is not None:
            self._entries.move_to_end(object_id)
        return data

    def put(self, object_id: str, data: Buffer) -> Buffer:
        """Keep `data` (unless it alone is over budget), evict the least recently used
        until within budget, and return `data`."""
        size = memoryview(data).nbytes
        if size > self.max_bytes:
            return data
        previous = self._entries.pop(object_id, None)
        if previous is not None:
            self._size -= memoryview(previous).nbytes
        self._entries[object_id] = data
        self._size += size
        while self._size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= memoryview(evicted).nbytes
        return data
