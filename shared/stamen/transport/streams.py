"""Closing async iterators that the protocols type as plain `AsyncIterator`s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

__all__ = ["aclose"]


async def aclose(iterator: AsyncIterator[Any]) -> None:
    """Close an async generator that was not run to its end (others have nothing to close).

    `pull_object` returns an async generator holding a stream or a store cursor; the
    protocol types it as `AsyncIterator`, which `contextlib.aclosing` does not accept.
    """
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
