"""Retry policies."""

from __future__ import annotations

from datetime import timedelta

from scheduler.domain.retry import RetryPolicy


def test_default_is_four_retries_thirty_seconds_apart() -> None:
    policy = RetryPolicy.from_fields(None, None, None, None)
    assert [policy.delay_before(n) for n in range(1, 6)] == [timedelta(seconds=30)] * 4 + [None]


def test_none_never_retries() -> None:
    assert RetryPolicy.from_fields("none", "PT1M", 5, None).delay_before(1) is None


def test_exponential_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy.from_fields("exponential", "PT10S", 5, "PT1M")
    delays = [policy.delay_before(n) for n in range(1, 7)]
    assert delays == [timedelta(seconds=s) for s in (10, 20, 40, 60, 60)] + [None]
