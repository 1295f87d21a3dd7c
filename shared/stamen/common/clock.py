"""Clock: the one seam through which services read time.

Deadlines (heartbeats, liveness) use the monotonic `now()`, which never jumps; timestamps
that outlive the process or cross machines (created_at, TTL expiry) use the wall-clock
`time()`. Injecting a `FakeClock` lets tests move both in virtual time, without sleeping.
"""

from __future__ import annotations

import time as _time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds, for deadlines within this process."""
        ...

    def time(self) -> float:
        """Wall-clock unix seconds, for timestamps that are stored or sent."""
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def now(self) -> float:
        return _time.monotonic()

    def time(self) -> float:
        return _time.time()


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when told to; `advance` moves both readings together."""

    __slots__ = ("_monotonic", "_wall")

    def __init__(self, monotonic: float = 1_000.0, wall: float = 1_700_000_000.0) -> None:
        self._monotonic = monotonic
        self._wall = wall

    def now(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds} s)")
        self._monotonic += seconds
        self._wall += seconds
