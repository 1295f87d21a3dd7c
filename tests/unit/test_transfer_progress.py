"""Progress lines for large transfers, in virtual time: silent under the threshold, at
most one line per interval, and a closing line with the rate."""

from __future__ import annotations

import logging

import pytest
from stamen.common.transfer import INTERVAL, THRESHOLD, TransferProgress, tracked

MiB = 1 << 20
log = logging.getLogger("stamen.test.transfer")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_a_small_transfer_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = TransferProgress(("uploading", "uploaded"), "x", THRESHOLD - 1, log, clock=clock)
    clock.now = 100.0
    progress.advance(THRESHOLD - 1)
    progress.done()
    assert lines(caplog) == []


def test_a_large_transfer_reports_every_interval_then_its_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    total = 1024 * MiB
    progress = TransferProgress(("uploading", "uploaded"), "model", total, log, clock=clock)
    for _ in range(16):  # 64 MiB each second: a line every INTERVAL seconds
        clock.now += 1.0
        progress.advance(64 * MiB)
    progress.done()

    assert lines(caplog) == [
        f"uploading model: {64 * int(INTERVAL)} MiB of 1.0 GiB (31%), 64 MiB/s",
        f"uploading model: {64 * int(2 * INTERVAL)} MiB of 1.0 GiB (62%), 64 MiB/s",
        "uploading model: 960 MiB of 1.0 GiB (94%), 64 MiB/s",
        "uploaded model: 1.0 GiB in 16.0s (64 MiB/s)",
    ]


async def test_tracked_counts_a_stream_of_unknown_size(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = TransferProgress(("downloading", "downloaded"), "m", None, log, clock=clock)

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(3):
            clock.now += INTERVAL
            yield memoryview(bytes(THRESHOLD))

    got = [len(c) async for c in tracked(chunks(), progress)]

    assert got == [THRESHOLD] * 3
    assert lines(caplog)[0] == "downloading m: 64 MiB so far, 13 MiB/s"
    assert lines(caplog)[-1] == "downloaded m: 192 MiB in 15.0s (13 MiB/s)"
