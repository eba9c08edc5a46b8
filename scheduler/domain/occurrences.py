"""When a job fires: the occurrences of its recurrence, to the second, in any time zone.

Periods of `second`, `minute` and `hour` are elapsed time, with a schedule as without one;
longer periods step in wall-clock time in the recurrence's zone. Each period expands into
wall-clock candidates by the schedule, in the manner of an RFC 5545 rule; a candidate then
becomes an instant by its zone's offset *before* any transition, which gives the two DST
rules at once: a time inside a spring-forward gap fires the gap's length later (02:30 ->
03:30), and an ambiguous time fires at its first instance.
"""

from __future__ import annotations

import calendar
import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler.domain.cron import cron_occurrences
from scheduler.domain.recurrence import WEEK_DAYS, Recurrence, Schedule
from scheduler.domain.wallclock import to_instant

ABSOLUTE_UNITS = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
}
# A schedule that matches nothing in this many periods never fires (e.g. the 31st of every
# February): scanning stops rather than looping.
MAX_EMPTY_PERIODS = 2000
ONE_MICROSECOND = timedelta(microseconds=1)


def occurrences(
    recurrence: Recurrence | None, start: datetime | None, created: datetime,
    since: datetime | None = None, job_id: str = "",
) -> Iterator[datetime]:
    """A job's fire times in order, from creation (or `since`, if later) on.

    `count` limits the occurrences from creation on and `endTime` ends them; occurrences before
    the job was created are dropped. With a `jitter`, each fires its own delay later (see
    `jitter_delay`; `job_id` and `created` name the job it is fixed by).
    """
    return _occurrences(recurrence, start, created, since,
                        None if recurrence is None else recurrence.count, job_id)


def _occurrences(
    recurrence: Recurrence | None, start: datetime | None, created: datetime,
    since: datetime | None, count: int | None, job_id: str,
) -> Iterator[datetime]:
    """`occurrences`, limited by `count` in place of the recurrence's own."""
    first = start or created
    if recurrence is None:
        if since is None or max(first, created) >= since:
            yield max(first, created)
        return
    floor = max(created, since or created)
    jitter = None if recurrence.jitter is None else recurrence.jitter.value
    key = "" if jitter is None else jitter_key(job_id, created)
    # A jittered occurrence fires after its time: one up to `jitter` before `floor` may fire
    # after it.
    scan_from = floor if jitter is None else floor - jitter
    produced = 0
    for instant in _raw_occurrences(recurrence, first,
                                    scan_from if count is None else created):
        if recurrence.end_time is not None and instant > recurrence.end_time:
            return
        if instant < created:
            continue
        produced += 1
        fires = instant if jitter is None else instant + jitter_delay(jitter, key, instant)
        if fires >= floor:
            yield fires
        if count is not None and produced >= count:
            return


def jitter_key(job_id: str, created: datetime) -> str:
    """What a job's jitter delays are fixed by: its id and when it was made, so that jobs
    on one schedule spread apart, and every node and every recomputation agree."""
    # Whole seconds since the epoch: the same whatever precision or zone a read returns.
    made = created if created.tzinfo is not None else created.replace(tzinfo=UTC)
    return f"{job_id.lower()}@{int(made.timestamp())}"


def jitter_delay(jitter: timedelta, key: str, occurrence: datetime) -> timedelta:
    """How long after `occurrence` it fires: whole seconds under `jitter`, drawn from a hash
    of the job's key and the occurrence, never from a random source."""
    seconds = int(jitter.total_seconds())
    if seconds <= 1:
        return timedelta(0)
    text = f"{key}|{occurrence.isoformat()}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return timedelta(seconds=int.from_bytes(digest, "big") % seconds)


def _raw_occurrences(recurrence: Recurrence, start: datetime, since: datetime
                     ) -> Iterator[datetime]:
    """Every occurrence from `start` on, beginning near `since` (earlier ones may be skipped)."""
    expression = recurrence.cron_expression
    if expression is not None:
        zone = ZoneInfo(recurrence.time_zone)
        after = max(start, since) - ONE_MICROSECOND
        yield from cron_occurrences(expression, zone, after)
        return
    if recurrence.frequency in ABSOLUTE_UNITS and not _is_empty(recurrence.schedule):
        yield from _elapsed_periods(recurrence, start, since)
        return
    if recurrence.frequency in ABSOLUTE_UNITS:
        step = ABSOLUTE_UNITS[recurrence.frequency] * recurrence.interval
        k = max(0, -(-(since - start) // step)) if since > start else 0
        while True:
            try:
                instant = start + k * step
            except OverflowError:  # past the year 9999: the schedule has ended
                return
            yield instant
            k += 1
    zone = ZoneInfo(recurrence.time_zone)
    start_wall = start.astimezone(zone).replace(tzinfo=None)
    since_wall = since.astimezone(zone).replace(tzinfo=None)
    last: datetime | None = None
    empty = 0
    for period in itertools.count(_first_period(recurrence, start_wall, since_wall)):
        anchor = _period_anchor(recurrence, start_wall, period)
        if anchor is None:
            return
        found = False
        for wall in _expand(recurrence, start_wall, anchor):
            if wall < start_wall:
                continue
            try:
                instant = to_instant(wall, zone)
            except OverflowError:  # past the year 9999 in UTC
                return
            if last is not None and instant <= last:
                continue  # a gap shifted this onto (or before) an earlier occurrence
            found, last = True, instant
            yield instant
        empty = 0 if found else empty + 1
        if empty > MAX_EMPTY_PERIODS:
            return


def _elapsed_periods(recurrence: Recurrence, start: datetime, since: datetime
                     ) -> Iterator[datetime]:
    """Second, minute and hour periods with a schedule: the periods are elapsed time from
    the start's truncated wall-clock time ("every 2 hours at :50" stays two real hours apart
    across a DST change); the schedule picks within each, by the wall clock of its zone."""
    zone = ZoneInfo(recurrence.time_zone)
    frequency, schedule = recurrence.frequency, recurrence.schedule
    step = ABSOLUTE_UNITS[frequency] * recurrence.interval
    start_wall = start.astimezone(zone).replace(tzinfo=None)
    origin = to_instant(_truncated(start_wall, frequency), zone)
    first = max(0, (since - origin) // step - 1) if since > origin else 0
    empty = 0
    for period in itertools.count(first):
        try:
            anchor = origin + period * step
            wall = anchor.astimezone(zone).replace(tzinfo=None)
        except OverflowError:  # past the year 9999
            return
        found = False
        for offset in _offsets_within(schedule, start_wall, wall, frequency):
            instant = anchor + offset
            if instant >= start:
                found = True
                yield instant
        empty = 0 if found else empty + 1
        if empty > MAX_EMPTY_PERIODS:
            return


def _truncated(wall: datetime, frequency: str) -> datetime:
    """The wall-clock start of the second, minute or hour holding `wall`."""
    whole = wall.replace(microsecond=0)
    if frequency == "minute":
        return whole.replace(second=0)
    if frequency == "hour":
        return whole.replace(minute=0, second=0)
    return whole


def _offsets_within(schedule: Schedule, start: datetime, anchor: datetime,
                    frequency: str) -> list[timedelta]:
    """How far after a period's start (wall clock `anchor`) its occurrences fall: the
    schedule's hours and minutes limit the period, or (minutes of an hour) expand it; the
    units below come from the start."""
    if schedule.hours and anchor.hour not in schedule.hours:
        return []
    below = timedelta(seconds=start.second - anchor.second,
                      microseconds=start.microsecond - anchor.microsecond)
    if frequency == "hour":
        minutes = sorted(set(schedule.minutes)) or [start.minute]
        return [timedelta(minutes=m - anchor.minute) + below for m in minutes]
    if schedule.minutes and anchor.minute not in schedule.minutes:
        return []
    if frequency == "minute":
        return [below]
    return [timedelta(microseconds=start.microsecond - anchor.microsecond)]


def _is_empty(schedule: Schedule) -> bool:
    return schedule == Schedule()


def _months_between(a: datetime, b: datetime) -> int:
    return (b.year - a.year) * 12 + (b.month - a.month)


def _first_period(recurrence: Recurrence, start: datetime, since: datetime) -> int:
    """A period index at or before the one holding `since`, so that nothing is missed."""
    if since <= start:
        return 0
    interval, frequency = recurrence.interval, recurrence.frequency
    if frequency == "day":
        units = (since.date() - start.date()).days
    elif frequency == "week":
        units = (since.date() - start.date()).days // 7
    elif frequency == "month":
        units = _months_between(start, since)
    else:
        units = since.year - start.year
    return max(0, units // interval - 1)


def _period_anchor(recurrence: Recurrence, start: datetime, period: int) -> datetime | None:
    """The wall-clock start of a period (for months and years, day 1), or None past the end."""
    steps = period * recurrence.interval
    frequency = recurrence.frequency
    try:
        if frequency == "day":
            return datetime.combine(start.date() + timedelta(days=steps), datetime.min.time())
        if frequency == "week":
            monday = start.date() - timedelta(days=start.weekday())
            return datetime.combine(monday + timedelta(weeks=steps), datetime.min.time())
        if frequency == "month":
            year, month = divmod(start.month - 1 + steps, 12)
            return datetime(start.year + year, month + 1, 1)
        return datetime(start.year + steps, 1, 1)
    except (OverflowError, ValueError):
        return None


def _expand(recurrence: Recurrence, start: datetime, anchor: datetime) -> list[datetime]:
    """The wall-clock candidates of one period, in order."""
    schedule = recurrence.schedule
    hours = sorted(set(schedule.hours)) or [start.hour]
    minutes = sorted(set(schedule.minutes)) or [start.minute]
    out = []
    for day in _days(recurrence, start, anchor):
        for hour, minute in itertools.product(hours, minutes):
            out.append(datetime(day.year, day.month, day.day, hour, minute, start.second,
                                start.microsecond))
    return out


def _days(recurrence: Recurrence, start: datetime, anchor: datetime) -> list[date]:
    """The days of one day, week, month or year period that the schedule picks."""
    schedule, frequency = recurrence.schedule, recurrence.frequency
    if frequency == "day":
        return [anchor.date()]
    if frequency == "week":
        weekdays = sorted({WEEK_DAYS.index(d) for d in schedule.week_days}) or [start.weekday()]
        return [anchor.date() + timedelta(days=w) for w in weekdays]
    if frequency == "month":
        return _days_of_month(schedule, start, anchor.year, anchor.month)
    months = sorted(set(schedule.months)) or [start.month]
    return [day for month in months
            for day in _days_of_month(schedule, start, anchor.year, month)]


def _days_of_month(schedule: Schedule, start: datetime, year: int, month: int) -> list[date]:
    """Month days and monthly occurrences (both given: days that are both, as RFC 5545)."""
    length = calendar.monthrange(year, month)[1]
    by_day = {length + d + 1 if d < 0 else d for d in schedule.month_days}
    by_occurrence: set[int] = set()
    for item in schedule.monthly_occurrences:
        day = _nth_weekday(year, month, item.day, item.occurrence)
        if day is not None:
            by_occurrence.add(day)
    if schedule.month_days and schedule.monthly_occurrences:
        picked = by_day & by_occurrence
    elif schedule.month_days or schedule.monthly_occurrences:
        picked = by_day | by_occurrence
    else:
        picked = {start.day}
    return [date(year, month, d) for d in sorted(p for p in picked if p and 1 <= p <= length)]


def _nth_weekday(year: int, month: int, day: str, occurrence: int) -> int | None:
    """The day of the month of the N-th (negative: N-th last) given week day, if it exists."""
    weekday = WEEK_DAYS.index(day)
    length = calendar.monthrange(year, month)[1]
    matching = [d for d in range(1, length + 1) if date(year, month, d).weekday() == weekday]
    index = occurrence - 1 if occurrence > 0 else occurrence
    return matching[index] if -len(matching) <= index < len(matching) else None


def upcoming(
    recurrence: Recurrence | None, start: datetime | None, created: datetime, now: datetime,
    executed: int, job_id: str = "",
) -> Iterator[datetime]:
    """The fire times still to come for a job (`job_id`, made at `created`) that has run
    `executed` times."""
    if recurrence is None:
        if executed == 0:
            yield from occurrences(None, start, created)
        return
    remaining = None if recurrence.count is None else recurrence.count - executed
    if remaining is not None and remaining <= 0:
        return
    # What is left of the count is the executions still to come, not the occurrences since
    # creation (missed ones do not spend it): so the occurrences go uncounted, sliced here.
    yield from itertools.islice(_occurrences(recurrence, start, created, now, None, job_id),
                                remaining)
