"""Retry policies: how long to wait before each retry of a failed attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from scheduler.domain.durations import parse_duration

DEFAULT_INTERVAL = timedelta(seconds=30)
DEFAULT_COUNT = 4


@dataclass(frozen=True)
class RetryPolicy:
    """`none`, `fixed` (the same wait each time) or `exponential` (doubling, capped)."""

    kind: str = "fixed"
    interval: timedelta = DEFAULT_INTERVAL
    count: int = DEFAULT_COUNT
    max_interval: timedelta | None = None

    @classmethod
    def from_fields(cls, kind: str | None, interval: str | None, count: int | None,
                    max_interval: str | None) -> RetryPolicy:
        """A policy from its (already validated) fields; absent ones take Azure's defaults."""
        kind = kind or "fixed"
        if kind == "none":
            return cls("none", DEFAULT_INTERVAL, 0)
        return cls(
            kind,
            parse_duration(interval) if interval else DEFAULT_INTERVAL,
            DEFAULT_COUNT if count is None else count,
            parse_duration(max_interval) if max_interval else None,
        )

    def delay_before(self, retry: int) -> timedelta | None:
        """The wait before retry number `retry` (1 is the first), or None when none is left."""
        if retry > self.count:
            return None
        if self.kind != "exponential":
            return self.interval
        delay: timedelta = self.interval * (2 ** (retry - 1))
        if self.max_interval is not None and delay > self.max_interval:
            return self.max_interval
        return delay


NO_RETRY = RetryPolicy("none", DEFAULT_INTERVAL, 0)
