"""The allowance of runs started by hand, held against a token bucket that forgets nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from scheduler.domain.run_limits import RunAllowance, wait_before_next_run

START = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def bucket_has_a_token(burst: int, interval: timedelta, taken: list[datetime],
                       now: datetime) -> bool:
    """The rule itself: a bucket of `burst` tokens, one back every `interval` up to `burst`,
    that remembers every run in `taken` (oldest first, each taking a token, even one it
    did not have), has a token at `now`."""
    tokens, at = float(burst), START
    for moment in [*taken, now]:
        tokens = min(burst, tokens + (moment - at) / interval)
        at = moment
        if moment is now:
            return tokens >= 1 - 1e-9
        tokens -= 1
    raise AssertionError("unreachable")


def decide(allowance: RunAllowance, started: list[datetime], now: datetime) -> timedelta:
    """The wait the service works out from the runs it would read, `started` oldest first."""
    recent = [moment for moment in reversed(started) if moment > now - allowance.lookback]
    chosen = recent[allowance.runs_to_skip:allowance.runs_to_skip + allowance.runs_to_read]
    return wait_before_next_run(chosen, now, allowance)


requests = st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=40)


@given(burst=st.integers(min_value=1, max_value=5), gaps=requests)
def test_within_the_lookback_the_allowance_is_the_token_bucket(burst: int, gaps: list[int]
                                                               ) -> None:
    allowance = RunAllowance(burst, HOUR, max_open=100)
    started: list[datetime] = []
    now = START
    for gap in gaps:
        now += timedelta(minutes=gap)
        fits = decide(allowance, started, now) == timedelta(0)
        has_token = bucket_has_a_token(burst, HOUR, started, now)
        if now - START <= allowance.lookback:
            assert fits == has_token
        elif has_token:  # later it may forget a run, but never refuse one the bucket takes
            assert fits
        if fits:
            started.append(now)


@given(burst=st.integers(min_value=1, max_value=5), gaps=requests)
def test_the_wait_is_when_the_next_run_fits(burst: int, gaps: list[int]) -> None:
    allowance = RunAllowance(burst, HOUR, max_open=100)
    started: list[datetime] = []
    now = START
    for gap in gaps:
        now += timedelta(minutes=gap)
        wait = decide(allowance, started, now)
        if wait:
            assert decide(allowance, started, now + wait) == timedelta(0)
            assert decide(allowance, started, now + wait - timedelta(seconds=1)) > timedelta(0)
        else:
            started.append(now)


def test_no_interval_puts_no_limit_on_runs() -> None:
    allowance = RunAllowance(1, timedelta(0), max_open=100)
    assert wait_before_next_run([START] * 5, START, allowance) == timedelta(0)
