"""The bounded LRU map the version, certificate and token caches share."""

from __future__ import annotations

import pytest

from scheduler.domain.caches import LruCache


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recent
    cache.put("c", 3)
    assert "b" not in cache
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)


def test_writing_an_entry_again_makes_it_the_most_recent() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (10, None, 3)


def test_a_discarded_entry_is_gone_and_discarding_an_absent_one_is_harmless() -> None:
    cache: LruCache[str, int] = LruCache(3)
    cache.put("a", 1)
    cache.discard("a")
    cache.discard("never")
    assert cache.get("a") is None and len(cache) == 0


def test_a_cache_must_hold_something() -> None:
    with pytest.raises(ValueError, match="at least one"):
        LruCache[str, int](0)
