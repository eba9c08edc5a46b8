"""Runs started by hand (a job run now, an inline definition run once): how many may start.

A token bucket of `burst` runs, refilled by one run every `interval` (the shortest recurrence
the collection's plan and quota allow), worked out from the times of the runs already
started rather than kept anywhere: the k-th newest run holds its token until `k * interval`
after it started, and one more run fits once the latest of those is at most `burst - 1`
intervals away (so the `burst - 1` newest never stand in its way). Only the runs of the last
`2 * burst` intervals are read: a bucket that has had no run for that long is full, and in a
longer busy stretch at most half again as many runs may start as a bucket with a perfect
memory would let.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

ZERO = timedelta(0)


@dataclass(frozen=True)
class RunAllowance:
    """`burst` runs at once, then one more per `interval`; at most `max_open` open at once.
    An `interval` of zero puts no limit on how often runs start."""

    burst: int
    interval: timedelta
    max_open: int

    @property
    def lookback(self) -> timedelta:
        """How far back the runs that decide the next one started."""
        return 2 * self.burst * self.interval

    @property
    def runs_to_skip(self) -> int:
        """How many of the newest runs cannot stand in the way of the next one."""
        return self.burst - 1

    @property
    def runs_to_read(self) -> int:
        """How many runs, after those skipped, decide the next one: that many in the
        lookback refuse it already, whenever they started."""
        return 2 * self.burst + 2

    @property
    def limited(self) -> bool:
        """Whether how often runs start is limited at all."""
        return self.interval > ZERO


def wait_before_next_run(started: Sequence[datetime], now: datetime,
                         allowance: RunAllowance) -> timedelta:
    """How long from `now` until one more run fits the allowance; zero if it fits now.
    `started`: when the runs of the lookback started, newest first, but for the newest
    `runs_to_skip`."""
    if not allowance.limited or not started:
        return ZERO
    held_until = max(moment + rank * allowance.interval
                     for rank, moment in enumerate(started, start=allowance.burst))
    return max(ZERO, held_until - (allowance.burst - 1) * allowance.interval - now)


def whole_seconds(wait: timedelta) -> int:
    """A wait in whole seconds, rounded up, at least one: what `Retry-After` says."""
    return max(1, math.ceil(wait.total_seconds()))


def describe_interval(interval: timedelta) -> str:
    """An interval in words: `1 hour`, `30 minutes`, `45 seconds`."""
    seconds = math.ceil(interval.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
