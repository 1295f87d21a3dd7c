"""A small TCP proxy on loopback that can stall or drop the connections through it.

The chaos suite puts it between the SuperNodes and the SuperLink's Fleet API: `stall(s)`
holds every byte for `s` seconds (a slow or congested network), `drop()` closes every
open connection at once (a flaky one). It runs its own event loop in a thread, so the
suite's blocking code can call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["ChaosProxy"]

_CHUNK = 1 << 16


class ChaosProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port` until `close()`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()  # cleared while stalled
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the chaos proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._open.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(_CHUNK):
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    def stall(self, seconds: float) -> None:
        """Hold all traffic for `seconds` (returns at once)."""

        def begin() -> None:
            self._open.clear()
            self._loop.call_later(seconds, self._open.set)

        self._loop.call_soon_threadsafe(begin)

    def drop(self) -> None:
        """Close every connection through the proxy now."""

        def close_all() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(close_all)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
