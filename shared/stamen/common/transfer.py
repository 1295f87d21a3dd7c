"""Progress lines for long transfers: a large model on its way up or down.

    uploading object 3f2a..c1 to the SuperLink: 768 MiB of 2.0 GiB (37%), 310 MiB/s
    uploaded object 3f2a..c1 to the SuperLink: 2.0 GiB in 6.6s (310 MiB/s)

Nothing is logged for a transfer under THRESHOLD bytes, and at most one line every
INTERVAL seconds: small models, the common case, stay silent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Mapping
from typing import Any

from .buffers import Buffer

__all__ = ["INTERVAL", "THRESHOLD", "TransferProgress", "tracked"]

THRESHOLD = 64 << 20
"""Bytes a transfer must reach before it reports progress."""
INTERVAL = 5.0
"""Seconds between two progress lines of one transfer."""


def _size(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.0f} MiB"
    return f"{n / (1 << 10):.0f} KiB" if n >= 1 << 10 else f"{n:.0f} B"


class TransferProgress:
    """Counts one transfer's bytes and logs progress (see the module's doc)."""

    def __init__(
        self,
        verbs: tuple[str, str],
        what: str,
        total: int | None,
        logger: logging.Logger,
        *,
        extra: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._going, self._gone = verbs
        self._what = what
        self._total = total
        self._logger = logger
        self._extra = dict(extra or {})
        self._clock = clock
        self._started = clock()
        self._last = self._started
        self._moved = 0
        self._reported = False

    def advance(self, nbytes: int) -> None:
        self._moved += nbytes
        now = self._clock()
        if self._moved < THRESHOLD or now - self._last < INTERVAL:
            return
        self._last = now
        self._reported = True
        rate = self._moved / max(now - self._started, 1e-9)
        if self._total:
            share = (
                f"{_size(self._moved)} of {_size(self._total)} ({self._moved / self._total:.0%})"
            )
        else:
            share = f"{_size(self._moved)} so far"
        self._logger.info(
            "%s %s: %s, %s/s", self._going, self._what, share, _size(rate), extra=self._extra
        )

    def done(self) -> None:
        """The last line, for a transfer that reported progress."""
        if not self._reported:
            return
        took = self._clock() - self._started
        self._logger.info(
            "%s %s: %s in %.1fs (%s/s)",
            self._gone,
            self._what,
            _size(self._moved),
            took,
            _size(self._moved / max(took, 1e-9)),
            extra=self._extra,
        )


async def tracked(
    chunks: AsyncIterable[Buffer], progress: TransferProgress
) -> AsyncGenerator[Buffer, None]:
    """`chunks`, counted by `progress` as they pass (done when they end)."""
    async for chunk in chunks:
        yield chunk
        progress.advance(memoryview(chunk).nbytes)
    progress.done()
