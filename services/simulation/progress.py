"""Progress of a run, round by round, as the ServerApp's messages cross the SuperLink.

`ObservedServerAppIo` wraps the runner's ServerAppIo API and tells a `RunObserver` what
went out and what came back; it adds no logic of its own. `RoundProgress` counts
instructions and replies per round (the message group id) and phase (train, evaluate,
...), and hands one line per round to a display: `StatusLine` keeps it at the bottom of a
terminal, redrawn in place, with log records printed above it. A round's line stays once
its evaluation is answered (the default loop's last phase), or else when the next round
starts; then a new one begins.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TextIO, cast

from stamen.common.message import MessageType

if TYPE_CHECKING:  # the CLI imports this module before the codec: keep start-up short
    from stamen.codec.envelope import Envelope
    from stamen.common.node import Node
    from stamen.common.push import PushResult
    from stamen.common.records import UserConfig
    from stamen.common.run import Run
    from stamen.transport.api import Chunk, ServerAppIoApi

__all__ = [
    "Display",
    "ObservedServerAppIo",
    "RoundProgress",
    "RunObserver",
    "StatusLine",
    "stderr_above",
]

_ERASE = "\r\x1b[K"  # back to the line's start, then clear it
_EVALUATE = MessageType.EVALUATE


class RunObserver(Protocol):
    """Told about each batch of instructions pushed and of replies pulled."""

    def sent(self, envelopes: Sequence[Envelope]) -> None: ...

    def received(self, envelopes: Sequence[Envelope]) -> None: ...


class Display(Protocol):
    def show(self, text: str) -> None:
        """Replace the line in progress with `text`."""
        ...

    def commit(self, text: str) -> None:
        """Replace the line in progress with `text` and keep it; a new line begins."""
        ...


class ObservedServerAppIo:
    """A `ServerAppIoApi` that reports pushed instructions and pulled replies."""

    def __init__(self, inner: ServerAppIoApi, observer: RunObserver) -> None:
        self._inner = inner
        self._observer = observer

    async def create_run(self, server_app: str, client_app: str, run_config: UserConfig) -> int:
        return await self._inner.create_run(server_app, client_app, run_config)

    async def get_run(self, run_id: int) -> Run:
        return await self._inner.get_run(run_id)

    async def get_nodes(self, run_id: int) -> list[Node]:
        return await self._inner.get_nodes(run_id)

    async def push_messages(self, run_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        result = await self._inner.push_messages(run_id, envelopes)
        self._observer.sent(envelopes)
        return result

    async def pull_messages(
        self, run_id: int, message_ids: Sequence[str], timeout: float
    ) -> list[Envelope]:
        replies = await self._inner.pull_messages(run_id, message_ids, timeout)
        if replies:
            self._observer.received(replies)
        return replies

    async def push_object(
        self, run_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Chunk]
    ) -> bool:
        return await self._inner.push_object(run_id, object_id, total_size, chunks)

    def pull_object(self, run_id: int, object_id: str) -> AsyncIterator[Chunk]:
        return self._inner.pull_object(run_id, object_id)

    async def update_run_status(
        self, run_id: int, status: str, sub_status: str = "", details: str = ""
    ) -> None:
        await self._inner.update_run_status(run_id, status, sub_status, details)

    async def renew_run_lease(self, run_id: int, holder: str) -> float:
        return await self._inner.renew_run_lease(run_id, holder)

    async def push_checkpoint(self, run_id: int, envelope: Envelope) -> PushResult:
        return await self._inner.push_checkpoint(run_id, envelope)

    async def pull_checkpoint(self, run_id: int) -> list[Envelope]:
        return await self._inner.pull_checkpoint(run_id)

    async def report_round(
        self, run_id: int, server_round: int, seconds: float, metrics: Mapping[str, float]
    ) -> None:
        await self._inner.report_round(run_id, server_round, seconds, metrics)


@dataclass(slots=True)
class _Round:
    group: str
    started: float
    phases: dict[str, list[int]] = field(default_factory=dict)
    """Message type -> [replies, instructions]."""

    def complete(self) -> bool:
        return all(replied >= sent for replied, sent in self.phases.values())


class RoundProgress:
    """Counts one run's instructions and replies per round; draws a line per round."""

    def __init__(self, display: Display, clock: Callable[[], float] = time.monotonic) -> None:
        self._display = display
        self._clock = clock
        self._round: _Round | None = None
        self._pending: dict[str, str] = {}  # instruction id -> its message type
        self._committed = True

    def sent(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            meta = envelope.metadata
            if self._round is None or meta.group_id != self._round.group:
                self.close()
                self._round = _Round(meta.group_id, self._clock())
            counts = self._round.phases.setdefault(meta.message_type, [0, 0])
            counts[1] += 1
            self._pending[meta.message_id] = meta.message_type
        if envelopes:
            self._committed = False
            self._draw()

    def received(self, envelopes: Sequence[Envelope]) -> None:
        current = self._round
        for envelope in envelopes:
            message_type = self._pending.pop(envelope.metadata.reply_to_message_id, None)
            if current is not None and message_type in current.phases:
                current.phases[message_type][0] += 1
        if current is not None and current.complete() and _EVALUATE in current.phases:
            self.close()
        else:
            self._draw()

    def close(self) -> None:
        """Keep the line of the round in progress (call it when the run ends)."""
        if self._round is not None and not self._committed:
            self._display.commit(self._text(self._round))
        self._committed = True
        self._pending.clear()

    def _draw(self) -> None:
        if self._round is not None and not self._committed:
            self._display.show(self._text(self._round))

    def _text(self, current: _Round) -> str:
        label = f"round {current.group}" if current.group.isdigit() else current.group or "run"
        phases = ", ".join(
            f"{message_type} {replied}/{sent}"
            for message_type, (replied, sent) in current.phases.items()
        )
        mark = "done" if current.complete() else "..."
        return f"{label}: {phases} replies, {self._clock() - current.started:.2f}s {mark}"


class StatusLine:
    """One line at the bottom of a terminal, redrawn in place.

    Write log output through `stream`: each write erases the line, writes, and draws it
    again below, so the line always stays last. Safe to use from several threads.
    """

    def __init__(self, terminal: TextIO) -> None:
        self._terminal = terminal
        self._text = ""
        self._lock = threading.Lock()

    @property
    def stream(self) -> TextIO:
        """A text stream for everything else that goes to the terminal (the log handler)."""
        return cast(TextIO, _Above(self))

    def show(self, text: str) -> None:
        with self._lock:
            self._text = _fit(text)
            self._terminal.write(_ERASE + self._text)
            self._terminal.flush()

    def commit(self, text: str) -> None:
        with self._lock:
            self._text = ""
            self._terminal.write(_ERASE + _fit(text) + "\n")
            self._terminal.flush()

    def _write_above(self, text: str) -> None:
        with self._lock:
            if self._text:
                self._terminal.write(_ERASE)
            self._terminal.write(text)
            if self._text and text.endswith("\n"):
                self._terminal.write(self._text)
            self._terminal.flush()

    def isatty(self) -> bool:
        try:
            return self._terminal.isatty()
        except (AttributeError, ValueError):
            return False


@contextlib.contextmanager
def stderr_above(line: StatusLine) -> Iterator[None]:
    """Route file descriptor 2, and with it the stderr of every process started in the
    block (worker processes, their forkserver), through `line`: what they print comes out
    above it, not through it. `line` writes to its own copy of the terminal."""
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    saved = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(target=_pump, args=(read_fd, line), name="stamen-stderr", daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pump ends once every process holding the pipe has exited
        os.close(saved)
        pump.join(PUMP_JOIN_TIMEOUT)


PUMP_JOIN_TIMEOUT = 1.0
"""Seconds to wait for the last lines of processes that printed as they ended."""


def _pump(read_fd: int, line: StatusLine) -> None:
    with os.fdopen(read_fd, encoding="utf-8", errors="replace") as pipe:
        for text in pipe:
            line._write_above(text)


class _Above(io.TextIOBase):
    def __init__(self, line: StatusLine) -> None:
        self._line = line

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._line.isatty()

    def write(self, text: str) -> int:
        self._line._write_above(text)
        return len(text)


def _fit(text: str) -> str:
    """`text` cut to the terminal's width: a wrapped line could not be redrawn in place."""
    width = shutil.get_terminal_size().columns
    return text if len(text) < width else text[: max(width - 2, 1)] + "~"
