"""CoalescingTransport: a turn's small writes leave together, in order, and nothing is lost."""

from __future__ import annotations

import asyncio

from stamen.transport.grpc.coalesce import SMALL_WRITE, CoalescingTransport


class Recording(asyncio.Transport):
    """A transport that records each write it is given (one per system call)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


async def test_small_writes_of_one_turn_leave_in_one_write_in_order() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw)
    transport.write(b"headers")
    transport.write(bytearray(b"data"))
    transport.write(b"")
    transport.write(memoryview(b"trailers"))
    assert raw.writes == []
    await asyncio.sleep(0)
    assert raw.writes == [b"headersdatatrailers"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert raw.writes == [b"headersdatatrailers", b"next"]


async def test_a_large_write_sends_what_was_kept_first_and_goes_as_it_is() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw)
    chunk = memoryview(bytes(SMALL_WRITE))
    transport.write(b"headers")
    transport.write(chunk)
    transport.write(b"trailers")
    await asyncio.sleep(0)
    assert raw.writes == [b"headers", bytes(chunk), b"trailers"]
    assert transport.get_write_buffer_size() == 0


async def test_close_sends_what_was_written_and_abort_drops_it() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw)
    transport.write(b"goaway")
    assert transport.get_write_buffer_size() == len(b"goaway")
    transport.close()
    assert raw.writes == [b"goaway"]
    assert raw.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing to send
    assert raw.writes == [b"goaway"]

    raw = Recording()
    transport = CoalescingTransport(raw)
    transport.write(b"frames")
    transport.abort()
    await asyncio.sleep(0)
    assert raw.writes == []
    assert raw.aborted
    assert transport.is_closing()


async def test_a_write_kept_when_the_connection_is_lost_is_not_sent() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw)
    transport.write(b"late")
    raw.closed = True  # the peer went away before the turn ended
    await asyncio.sleep(0)
    assert raw.writes == []
