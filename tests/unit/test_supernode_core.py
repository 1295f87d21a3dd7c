"""The SuperNode's sans-IO parts: reconnection backoff and the object cache."""

from __future__ import annotations

import random

import pytest
from stamen.common.backoff import Backoff, Outage
from stamen.common.errors import UnavailableError
from stamen.supernode.cache import ObjectCache


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


def test_cache_evicts_least_recently_used_by_bytes() -> None:
    cache = ObjectCache(max_bytes=10)
    cache.put("a", b"1234")
    cache.put("b", b"5678")
    assert cache.get("a") == b"1234"  # a is now the most recently used
    cache.put("c", b"90ab")  # 12 bytes: b goes
    assert "b" not in cache
    assert "a" in cache
    assert "c" in cache
    assert cache.nbytes == 8
    assert cache.get("b") is None


def test_cache_does_not_keep_an_object_larger_than_its_budget() -> None:
    cache = ObjectCache(max_bytes=4)
    cache.put("small", b"12")
    cache.put("big", memoryview(bytearray(5)))
    assert len(cache) == 0
    assert cache.nbytes == 0


def test_cache_replacing_an_object_counts_its_bytes_once() -> None:
    cache = ObjectCache(max_bytes=100)
    cache.put("a", b"12345")
    cache.put("a", b"12345")
    assert cache.nbytes == 5
    assert len(cache) == 1
