"""ObjectCache: the one LRU byte cache of fetched objects (SuperNode agent and grid)."""

from __future__ import annotations

import pytest
from stamen.codec.cache import ObjectCache


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
    big = memoryview(bytearray(5))
    assert cache.put("big", big) is big  # handed back, not kept
    assert "big" not in cache
    assert "small" in cache  # and it evicted nothing
    assert cache.nbytes == 2


def test_cache_replacing_an_object_counts_its_bytes_once() -> None:
    cache = ObjectCache(max_bytes=100)
    cache.put("a", b"12345")
    cache.put("a", b"12345")
    assert cache.nbytes == 5
    assert len(cache) == 1


def test_cache_keeps_what_it_is_given_as_given() -> None:
    cache = ObjectCache(max_bytes=100)
    view = memoryview(bytearray(b"abc")).toreadonly()
    assert cache.put("a", view) is view
    assert cache.get("a") is view


def test_cache_rejects_a_negative_budget() -> None:
    with pytest.raises(ValueError, match="max_bytes must not be negative, got -1"):
        ObjectCache(max_bytes=-1)
