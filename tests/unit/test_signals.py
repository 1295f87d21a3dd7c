"""The signal policy's parts: `SignalPolicy` (first signal sets `stop`, the second cancels
the task) and `until_stopped` (work to its end, or cancelled once `stop` is set)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from stamen.common.signals import SignalPolicy, until_stopped

pytestmark = pytest.mark.timeout(10)


async def test_the_first_signal_sets_stop_and_the_second_cancels_the_task() -> None:
    stop = asyncio.Event()
    cancelled = False
    with SignalPolicy(stop, "the test") as policy:
        os.kill(os.getpid(), signal.SIGTERM)
        await stop.wait()
        assert policy.received == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)
        try:
            await asyncio.Event().wait()  # a graceful stop that never ends
        except asyncio.CancelledError:
            cancelled = True
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()
    assert cancelled
    assert policy.received == signal.SIGTERM  # the first one is the one reported


async def test_until_stopped_returns_what_the_work_returns() -> None:
    async def work() -> int:
        return 7

    assert await until_stopped(work(), asyncio.Event()) == 7
    assert await until_stopped(work(), None) == 7


async def test_until_stopped_cancels_the_work_once_stop_is_set() -> None:
    stop, started = asyncio.Event(), asyncio.Event()
    cleaned_up = False

    async def work() -> int:
        nonlocal cleaned_up
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up = True
        return 7

    waiting = asyncio.create_task(until_stopped(work(), stop))
    await started.wait()
    stop.set()
    assert await waiting is None
    assert cleaned_up


async def test_until_stopped_raises_what_the_work_raises() -> None:
    async def work() -> int:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await until_stopped(work(), asyncio.Event())


async def test_cancelling_the_caller_cancels_the_work() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.create_task(until_stopped(work(), asyncio.Event()))
    await started.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await cancelled.wait()
