"""Lru: bounded by count, forgetting the least recently used entry."""

import pytest
from stamen.common.lru import Lru


def test_putting_past_capacity_forgets_the_least_recently_used() -> None:
    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # "a" is now the most recently used
    lru.put("c", 3)
    assert "b" not in lru
    assert ("a" in lru, "c" in lru, len(lru)) == (True, True, 2)


def test_putting_a_key_again_replaces_it_and_marks_it_used() -> None:
    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    lru.put("a", 10)
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (10, None, 3)


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity of at least 1"):
        Lru(0)
