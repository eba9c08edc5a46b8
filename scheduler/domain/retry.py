"""Retry policies: how long to wait before each retry of a failed attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from scheduler.domain.durations import Duration

DEFAULT_INTERVAL = timedelta(seconds=30)
DEFAULT_COUNT = 4


@dataclass(frozen=True)
class RetryPolicy:
    """`none`, `fixed` (the same wait each time) or `exponential` (doubling, capped).

    A field the job did not give is None, and Azure's default stands in for it."""

    kind: str = "fixed"
    interval: Duration | None = None
    count: int | None = None
    max_interval: Duration | None = None

    @classmethod
    def from_fields(cls, kind: str | None, interval: str | None, count: int | None,
                    max_interval: str | None) -> RetryPolicy:
        """A policy from its (already validated) fields; absent ones are None."""
        return cls(kind or "fixed", Duration.parse(interval) if interval else None, count,
                   Duration.parse(max_interval) if max_interval else None)

    @property
    def retries(self) -> int:
        """How many retries follow a failed attempt."""
        if self.kind == "none":
            return 0
        return DEFAULT_COUNT if self.count is None else self.count

    @property
    def wait(self) -> timedelta:
        """The wait before the first retry."""
        return DEFAULT_INTERVAL if self.interval is None else self.interval.value

    def delay_before(self, retry: int) -> timedelta | None:
        """The wait before retry number `retry` (1 is the first), or None when none is left."""
        if retry > self.retries:
            return None
        if self.kind != "exponential":
            return self.wait
        delay: timedelta = self.wait * (2 ** (retry - 1))
        if self.max_interval is not None and delay > self.max_interval.value:
            return self.max_interval.value
        return delay


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy("none")
