"""What a job's recurrence says, and the rules a recurrence must follow."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

from scheduler.domain import InvalidField
from scheduler.domain.cron import CronExpression, cron_shortest_gap, parse_cron
from scheduler.domain.durations import Duration, format_iso_duration

FREQUENCIES = ("second", "minute", "hour", "day", "week", "month", "year")
# A recurrence written as a cron expression has no frequency of Azure's.
CRON = "cron"
WEEK_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_INTERVAL = 1000

# The shortest span each frequency unit can cover, for quota checks.
_UNIT_SPAN = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=28),
    "year": timedelta(days=365),
}
# Azure's caps on one step: 18 months, 78 weeks, 548 days.
_MAX_STEP = {"day": 548, "week": 78, "month": 18, "year": 1}


@dataclass(frozen=True)
class MonthlyOccurrence:
    """The N-th (or, negative, N-th last) given week day of a month."""

    day: str
    occurrence: int


@dataclass(frozen=True)
class Schedule:
    """The advanced schedule: which minutes, hours and days inside each period."""

    minutes: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    week_days: tuple[str, ...] = ()
    month_days: tuple[int, ...] = ()
    monthly_occurrences: tuple[MonthlyOccurrence, ...] = ()
    months: tuple[int, ...] = ()


@dataclass(frozen=True)
class Recurrence:
    """When a job repeats."""

    frequency: str
    interval: int = 1
    count: int | None = None
    end_time: datetime | None = None
    schedule: Schedule = field(default_factory=Schedule)
    time_zone: str = "UTC"
    # Which of `interval` and `time_zone` the job wrote out, its default value included:
    # the schedule reads the values alone, a job's answer states again what it was given.
    stated: frozenset[str] = frozenset()
    cron: str | None = None  # a cron expression in `time_zone`, in place of a frequency
    jitter: Duration | None = None  # each occurrence fires up to this much later
    # The collection's calendars whose days it skips, by name as written.
    exclude_calendars: tuple[str, ...] = ()

    @property
    def cron_expression(self) -> CronExpression | None:
        """The parsed `cron`, if the recurrence is one (parsed once per text)."""
        return None if self.cron is None else _parsed_cron(self.cron)


@cache
def _parsed_cron(text: str) -> CronExpression:
    return parse_cron(text)


# Jitter spreads occurrences apart, never reorders them: at most half the shortest gap
# between two (a DST change may shorten a day by an hour), and at most a day.
MAX_JITTER = timedelta(days=1)
MIN_JITTER = timedelta(seconds=1)


def unit_span(frequency: str) -> timedelta:
    """The shortest span one unit of a frequency covers."""
    return _UNIT_SPAN[frequency]


def validate_recurrence(recurrence: Recurrence, now: datetime) -> None:
    """Raise InvalidField for a recurrence that breaks one of Azure's rules, or of ours
    for cron expressions and jitter."""
    if recurrence.cron is not None:
        parse_cron(recurrence.cron)
    elif recurrence.frequency not in FREQUENCIES:
        raise InvalidField("recurrence.frequency", f"must be one of {', '.join(FREQUENCIES)}")
    if not 1 <= recurrence.interval <= MAX_INTERVAL:
        raise InvalidField("recurrence.interval", f"must be between 1 and {MAX_INTERVAL}")
    cap = _MAX_STEP.get(recurrence.frequency)
    if cap is not None and recurrence.interval > cap:
        raise InvalidField(
            "recurrence.interval",
            f"at most {cap} for frequency {recurrence.frequency} (18 months in all)",
        )
    if recurrence.count is not None and recurrence.count < 1:
        raise InvalidField("recurrence.count", "must be at least 1")
    if recurrence.end_time is not None and recurrence.end_time <= now:
        raise InvalidField("recurrence.endTime", "must be in the future")
    if recurrence.cron is None:
        validate_schedule(recurrence.schedule, recurrence.frequency)
    if recurrence.jitter is not None:
        validate_jitter(recurrence)


def validate_jitter(recurrence: Recurrence) -> None:
    """Raise InvalidField for a jitter that is under a second, over a day, or so long that
    it could move an occurrence past the next one."""
    assert recurrence.jitter is not None
    jitter = recurrence.jitter.value
    if jitter < MIN_JITTER:
        raise InvalidField("recurrence.jitter", "must be at least one second")
    if jitter > MAX_JITTER:
        raise InvalidField("recurrence.jitter", "must be at most one day (P1D)")
    gap = shortest_gap(recurrence)
    if jitter > gap / 2:
        raise InvalidField("recurrence.jitter", f"must be at most half the shortest time "
                                                f"between two occurrences, "
                                                f"{format_iso_duration(gap / 2)}")


def validate_schedule(schedule: Schedule, frequency: str) -> None:
    """Raise InvalidField for a schedule whose parts do not fit its frequency or ranges."""
    _check_range("recurrence.schedule.minutes", schedule.minutes, 0, 59)
    _check_range("recurrence.schedule.hours", schedule.hours, 0, 23)
    _check_range("recurrence.schedule.months", schedule.months, 1, 12)
    for day in schedule.month_days:
        if day == 0 or not -31 <= day <= 31:
            raise InvalidField("recurrence.schedule.monthDays", "days are 1..31 or -31..-1")
    for item in schedule.monthly_occurrences:
        if item.occurrence == 0 or not -5 <= item.occurrence <= 5:
            raise InvalidField(
                "recurrence.schedule.monthlyOccurrences.occurrence", "must be 1..5 or -5..-1"
            )
    if schedule.week_days and frequency != "week":
        raise InvalidField(
            "recurrence.schedule.weekDays",
            f"cannot set days of the week with recurrence unit '{frequency}'; use 'week'",
        )
    if (schedule.month_days or schedule.monthly_occurrences) and frequency != "month":
        name = "monthDays" if schedule.month_days else "monthlyOccurrences"
        raise InvalidField(
            f"recurrence.schedule.{name}",
            f"cannot set days of the month with recurrence unit '{frequency}'; use 'month'",
        )
    if schedule.months and frequency != "year":
        raise InvalidField(
            "recurrence.schedule.months",
            f"cannot set months with recurrence unit '{frequency}'; use 'year'",
        )


def _check_range(name: str, values: tuple[int, ...], low: int, high: int) -> None:
    for value in values:
        if not low <= value <= high:
            raise InvalidField(name, f"values must be between {low} and {high}")


def _smallest_cyclic_gap(values: tuple[int, ...], cycle: int) -> int:
    ordered = sorted(set(values))
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    gaps.append(ordered[0] + cycle - ordered[-1])
    return min(gaps)


def shortest_gap(recurrence: Recurrence) -> timedelta:
    """The shortest time two occurrences of the recurrence can be apart."""
    expression = recurrence.cron_expression
    if expression is not None:
        return cron_shortest_gap(expression)
    step = unit_span(recurrence.frequency) * recurrence.interval
    schedule = recurrence.schedule
    if len(set(schedule.minutes)) > 1:
        return min(step, timedelta(minutes=_smallest_cyclic_gap(schedule.minutes, 60)))
    if len(set(schedule.hours)) > 1:
        return min(step, timedelta(hours=_smallest_cyclic_gap(schedule.hours, 24)))
    if len(set(schedule.week_days)) > 1:
        days = tuple(WEEK_DAYS.index(day) for day in schedule.week_days)
        return min(step, timedelta(days=_smallest_cyclic_gap(days, 7)))
    if len(set(schedule.month_days)) + len(set(schedule.monthly_occurrences)) > 1:
        return min(step, timedelta(days=1))
    return step
