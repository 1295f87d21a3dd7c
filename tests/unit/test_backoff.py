"""Backoff and Outage: when the SuperNode and the runner retry reaching the SuperLink."""

from __future__ import annotations

import random

import pytest
from stamen.common.backoff import Backoff, Outage
from stamen.common.errors import UnavailableError


def test_backoff_grows_to_its_maximum_with_jitter_below_each_ceiling() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, multiplier=2.0)
    rng = random.Random(7)
    delays = [backoff.delay(retry, rng) for retry in range(6)]
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.delay(10_000, rng) <= 8.0  # no overflow on a very long outage


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=0.0)
    with pytest.raises(ValueError, match="multiplier"):
        Backoff(multiplier=0.5)
    with pytest.raises(ValueError, match="max_retries"):
        Outage(Backoff(), started_at=0.0, max_retries=-1)


def test_outage_gives_up_after_max_retries_naming_the_cause() -> None:
    outage = Outage(Backoff(initial=0.1), started_at=100.0, max_retries=2, rng=random.Random(1))
    outage.next_delay(100.0, "refused")
    outage.next_delay(100.2, "refused")
    with pytest.raises(UnavailableError, match=r"after 2 retries over 0\.5s: connection refused$"):
        outage.next_delay(100.5, "connection refused")


def test_outage_clips_the_last_wait_to_max_wait_time_then_gives_up() -> None:
    outage = Outage(
        Backoff(initial=4.0, maximum=4.0), started_at=0.0, max_wait_time=5.0, rng=random.Random(3)
    )
    first = outage.next_delay(0.0, "down")
    assert 2.0 <= first <= 4.0
    assert outage.next_delay(4.5, "down") == pytest.approx(0.5)
    with pytest.raises(UnavailableError, match=r"after 2 retries over 5\.0s"):
        outage.next_delay(5.0, "down")


def test_unbounded_outage_keeps_retrying() -> None:
    outage = Outage(Backoff(initial=0.1, maximum=1.0), started_at=0.0, rng=random.Random(5))
    for step in range(1000):
        assert outage.next_delay(step * 1.0, "down") <= 1.0
    assert outage.retries == 1000


def test_zero_max_retries_gives_up_at_the_first_failure() -> None:
    outage = Outage(Backoff(), started_at=0.0, max_retries=0)
    with pytest.raises(UnavailableError, match="after 0 retries"):
        outage.next_delay(0.0, "down")
