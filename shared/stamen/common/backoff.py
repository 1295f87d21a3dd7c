"""When to try reaching the SuperLink again, and when to give up (sans-IO).

`Backoff` is the shape of the waits: exponential, with jitter. `Outage` applies it to one
period without the SuperLink (unreachable, or answering with a `TransientError`), bounded
by a number of retries and a total wait, both unbounded by default: a SuperNode agent and
the ServerApp runner ask it for the next delay, passing `now`, and either wait that long
or get the `UnavailableError` that ends them. Nothing here sleeps or reads a clock, so
every decision is tested without an event loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from stamen.common.errors import UnavailableError

__all__ = ["Backoff", "Outage"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays grow from `initial` by `multiplier` up to `maximum`; each is jittered into
    [d/2, d] so that nodes cut off together do not all come back at the same instant."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(f"need 0 < initial <= maximum, got {self.initial}, {self.maximum}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")

    def delay(self, retry: int, rng: random.Random) -> float:
        """The jittered wait before retry number `retry` (0 for the first)."""
        ceiling = min(self.maximum, self.initial * self.multiplier ** min(retry, 64))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(slots=True)
class Outage:
    """One period without the SuperLink: the retries so far and when it began.

    `max_retries` / `max_wait_time` bound it (None: unbounded). The random generator is
    made only when an outage happens, so an idle node carries none.
    """

    backoff: Backoff
    started_at: float
    max_retries: int | None = None
    max_wait_time: float | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)
    retries: int = 0

    def __post_init__(self) -> None:
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {self.max_retries}")
        if self.max_wait_time is not None and self.max_wait_time < 0:
            raise ValueError(f"max_wait_time must not be negative, got {self.max_wait_time}")

    def next_delay(self, now: float, cause: str) -> float:
        """How long to wait before the next retry; raises UnavailableError (naming
        `cause`, the last failure) once the retries or the wait time are used up."""
        waited = now - self.started_at
        if self.max_retries is not None and self.retries >= self.max_retries:
            raise self._give_up(waited, cause)
        delay = self.backoff.delay(self.retries, self.rng)
        if self.max_wait_time is not None:
            left = self.max_wait_time - waited
            if left <= 0:
                raise self._give_up(waited, cause)
            delay = min(delay, left)
        self.retries += 1
        return delay

    def _give_up(self, waited: float, cause: str) -> UnavailableError:
        retries = "1 retry" if self.retries == 1 else f"{self.retries} retries"
        return UnavailableError(
            f"gave up reaching the SuperLink after {retries} over {waited:.1f}s: {cause}"
        )
