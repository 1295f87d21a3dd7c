"""The one signal policy of every service's CLI: stop gracefully, then cancel.

The first SIGINT or SIGTERM sets the `stop` event that `serve(settings, *, ready, stop)`
watches: the service shuts down in stages. A second one cancels the task serving it
(cleanup awaits are bounded; work in flight is dropped), which the CLI reports as
EXIT_CANCELLED. Only CLIs install signal handlers (STYLE.md): services take the event.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .cli import run

__all__ = ["Served", "SignalPolicy", "serve_until_signalled", "until_stopped"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalPolicy:
    """Handlers for SIGINT/SIGTERM on the running loop, for the current task; a context
    manager that removes them on exit. `received` is the first signal (None: none came)."""

    def __init__(self, stop: asyncio.Event, what: str) -> None:
        self.received: signal.Signals | None = None
        self._stop = stop
        self._what = what
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()

    def __enter__(self) -> SignalPolicy:
        for signum in SIGNALS:
            self._loop.add_signal_handler(signum, self._on_signal, signum)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum in SIGNALS:
            self._loop.remove_signal_handler(signum)

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.received is None:
            self.received = signum
            logger.warning(
                "%s: stopping %s gracefully (send it again to force exit)", signum.name, self._what
            )
            self._stop.set()
            return
        logger.warning("%s again: forcing exit, work in flight is dropped", signum.name)
        if self._task is not None:
            self._task.cancel(f"{signum.name} again: forced exit")


@dataclass(frozen=True, slots=True)
class Served(Generic[T]):
    """What `serve()` returned, and the first signal received while it ran (or None)."""

    result: T
    signal: signal.Signals | None


def serve_until_signalled(
    serve: Callable[[asyncio.Event], Coroutine[Any, Any, T]], what: str
) -> Served[T]:
    """Run `serve(stop)` in a fresh event loop under the signal policy.

    Raises asyncio.CancelledError when a second signal forced the exit.
    """

    async def main() -> Served[T]:
        stop = asyncio.Event()
        with SignalPolicy(stop, what) as policy:
            result = await serve(stop)
        return Served(result, policy.received)

    return run(main())


async def until_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event | None) -> T | None:
    """`work` to its end, or None once `stop` is set first: `work` is then cancelled
    (a run marks itself stopped) and awaited. Cancelling the caller cancels `work` too."""
    if stop is None:
        return await work
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    stopping = loop.create_task(stop.wait())
    try:
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the caller was cancelled too: a forced exit
        return None
