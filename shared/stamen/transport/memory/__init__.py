"""The memory transport: the SuperLink's handlers called directly, in one event loop."""

from .apis import MemoryControl, MemoryFleet, MemoryServerAppIo

__all__ = ["MemoryControl", "MemoryFleet", "MemoryServerAppIo"]
