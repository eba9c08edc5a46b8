"""When jobs fire: every recurrence rule, DST days in two zones, and an independent check."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil import rrule
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.domain.occurrences import MAX_EMPTY_PERIODS, occurrences, to_instant
from scheduler.domain.recurrence import WEEK_DAYS, MonthlyOccurrence, Recurrence, Schedule


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def first(n: int, recurrence: Recurrence | None, start: datetime | None,
          created: datetime, since: datetime | None = None) -> list[datetime]:
    return list(itertools.islice(occurrences(recurrence, start, created, since), n))


def test_one_shot_fires_at_start_or_at_once_when_absent_or_past() -> None:
    now = utc(2026, 1, 1, 12)
    assert first(5, None, utc(2026, 1, 2), now) == [utc(2026, 1, 2)]
    assert first(5, None, None, now) == [now]
    assert first(5, None, utc(2025, 1, 1), now) == [now]


def test_past_start_fires_at_the_next_step_as_azure_did() -> None:
    start = utc(2015, 7, 1, 0, 0, 32)
    recurrence = Recurrence("minute", 30, count=10)
    got = first(2, recurrence, start, start + timedelta(seconds=2))
    assert got == [utc(2015, 7, 1, 0, 30, 32), utc(2015, 7, 1, 1, 0, 32)]


def test_azure_documented_example_every_two_days() -> None:
    got = first(2, Recurrence("day", 2), utc(2015, 4, 7, 14), utc(2015, 4, 8, 13))
    assert got == [utc(2015, 4, 9, 14), utc(2015, 4, 11, 14)]


def test_every_frequency_steps_by_its_interval() -> None:
    start = utc(2026, 1, 31, 10, 15, 5)
    assert first(3, Recurrence("second", 7), start, start)[2] == start + timedelta(seconds=14)
    assert first(2, Recurrence("hour", 5), start, start)[1] == start + timedelta(hours=5)
    assert first(2, Recurrence("week", 2), start, start)[1] == utc(2026, 2, 14, 10, 15, 5)
    assert first(3, Recurrence("year", 1), start, start)[2] == utc(2028, 1, 31, 10, 15, 5)


def test_month_step_keeps_the_day_and_skips_months_without_it() -> None:
    start = utc(2026, 1, 31, 8)
    got = first(4, Recurrence("month", 1), start, start)
    assert got == [utc(2026, 1, 31, 8), utc(2026, 3, 31, 8), utc(2026, 5, 31, 8),
                   utc(2026, 7, 31, 8)]


def test_count_counts_from_creation_and_end_time_ends() -> None:
    start = utc(2026, 1, 1)
    created = utc(2026, 1, 1, 2, 30)
    got = first(10, Recurrence("hour", 1, count=3), start, created)
    assert got == [utc(2026, 1, 1, 3), utc(2026, 1, 1, 4), utc(2026, 1, 1, 5)]
    later = first(10, Recurrence("hour", 1, count=3), start, created, since=utc(2026, 1, 1, 4))
    assert later == [utc(2026, 1, 1, 4), utc(2026, 1, 1, 5)]
    ended = first(10, Recurrence("hour", 1, end_time=utc(2026, 1, 1, 2)), start, start)
    assert ended == [utc(2026, 1, 1), utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]


def test_weekly_schedule_on_chosen_days_every_two_weeks() -> None:
    start = utc(2026, 3, 4, 0)  # a Wednesday
    schedule = Schedule(hours=(9, 17), minutes=(30,), week_days=("monday", "friday"))
    got = first(5, Recurrence("week", 2, schedule=schedule), start, start)
    assert got == [utc(2026, 3, 6, 9, 30), utc(2026, 3, 6, 17, 30), utc(2026, 3, 16, 9, 30),
                   utc(2026, 3, 16, 17, 30), utc(2026, 3, 20, 9, 30)]


def test_monthly_occurrences_last_friday_and_second_monday() -> None:
    start = utc(2026, 1, 1, 6)
    last_friday = Schedule(monthly_occurrences=(MonthlyOccurrence("friday", -1),))
    assert first(3, Recurrence("month", 1, schedule=last_friday), start, start) == [
        utc(2026, 1, 30, 6), utc(2026, 2, 27, 6), utc(2026, 3, 27, 6)]
    second_monday = Schedule(monthly_occurrences=(MonthlyOccurrence("monday", 2),))
    assert first(2, Recurrence("month", 1, schedule=second_monday), start, start) == [
        utc(2026, 1, 12, 6), utc(2026, 2, 9, 6)]
    fifth_friday = Schedule(monthly_occurrences=(MonthlyOccurrence("friday", 5),))
    assert first(2, Recurrence("month", 1, schedule=fifth_friday), start, start) == [
        utc(2026, 1, 30, 6), utc(2026, 5, 29, 6)]


def test_month_days_negative_and_limiting() -> None:
    start = utc(2026, 1, 15, 12)
    last_day = Schedule(month_days=(-1,))
    assert first(3, Recurrence("month", 1, schedule=last_day), start, start) == [
        utc(2026, 1, 31, 12), utc(2026, 2, 28, 12), utc(2026, 3, 31, 12)]
    the_31st = Schedule(month_days=(31,))
    assert first(2, Recurrence("month", 1, schedule=the_31st), start, start) == [
        utc(2026, 1, 31, 12), utc(2026, 3, 31, 12)]


def test_hours_and_minutes_are_a_cross_product_and_missing_units_come_from_start() -> None:
    start = utc(2026, 1, 1, 0, 0, 42)
    schedule = Schedule(hours=(6, 18), minutes=(0, 15))
    got = first(5, Recurrence("day", 1, schedule=schedule), start, start)
    assert got == [utc(2026, 1, 1, 6, 0, 42), utc(2026, 1, 1, 6, 15, 42),
                   utc(2026, 1, 1, 18, 0, 42), utc(2026, 1, 1, 18, 15, 42),
                   utc(2026, 1, 2, 6, 0, 42)]


def test_a_schedule_that_never_matches_ends_instead_of_looping() -> None:
    start = utc(2026, 2, 1)
    never = Recurrence("month", 12, schedule=Schedule(month_days=(31,)))
    assert first(3, never, start, start) == []


BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


@pytest.mark.parametrize(("zone", "spring", "fall", "repeated_hour"), [
    ("Europe/Berlin", datetime(2026, 3, 28), datetime(2026, 10, 24), 2),
    ("America/New_York", datetime(2026, 3, 7), datetime(2026, 10, 31), 1),
])
def test_dst_gap_shifts_forward_and_ambiguous_time_fires_once(
    zone: str, spring: datetime, fall: datetime, repeated_hour: int
) -> None:
    tz = ZoneInfo(zone)
    daily = Recurrence("day", 1, time_zone=zone)
    start = spring.replace(hour=2, minute=30, tzinfo=tz).astimezone(UTC)
    got = first(3, daily, start, start)
    local = [moment.astimezone(tz) for moment in got]
    assert [(m.day, m.hour, m.minute) for m in local] == [
        (spring.day, 2, 30), (spring.day + 1, 3, 30), (spring.day + 2, 2, 30)]
    assert got[1] - got[0] == timedelta(hours=24)  # 02:30 did not exist: same offset after
    fall_start = fall.replace(hour=0, minute=0, tzinfo=tz).astimezone(UTC)
    around = Recurrence("day", 1, time_zone=zone,
                        schedule=Schedule(hours=(1, 2, 3), minutes=(30,)))
    moments = first(6, around, fall_start, fall_start)
    ambiguous = (fall + timedelta(days=1)).replace(hour=repeated_hour, minute=30)
    assert to_instant(ambiguous, tz) in moments
    assert to_instant(ambiguous, tz) + timedelta(hours=1) not in moments  # its second instance
    assert len(set(moments)) == len(moments)


def test_gap_shifted_time_does_not_fire_twice_with_the_next_hour() -> None:
    start = datetime(2026, 3, 28, 0, 0, tzinfo=BERLIN).astimezone(UTC)
    schedule = Schedule(hours=(2, 3), minutes=(30,))
    got = first(4, Recurrence("day", 1, schedule=schedule, time_zone="Europe/Berlin"),
                start, start)
    local = [(m.astimezone(BERLIN).day, m.astimezone(BERLIN).hour) for m in got]
    assert local == [(28, 2), (28, 3), (29, 3), (30, 2)]


def test_hourly_steps_in_absolute_time_across_dst() -> None:
    start = datetime(2026, 3, 8, 0, 30, tzinfo=NEW_YORK).astimezone(UTC)
    got = first(4, Recurrence("hour", 1, time_zone="America/New_York"), start, start)
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(got))


def test_hours_with_a_schedule_step_in_elapsed_time_across_dst() -> None:
    # Every 2 hours at :50 in New York, across the spring-forward change of 2027-03-14: two
    # real hours apart, the wall clock jumping from 00:50 to 03:50.
    start = datetime(2027, 3, 13, 20, 50, tzinfo=NEW_YORK).astimezone(UTC)
    got = first(5, Recurrence("hour", 2, schedule=Schedule(minutes=(50,)),
                              time_zone="America/New_York"), start, start)
    assert all(b - a == timedelta(hours=2) for a, b in itertools.pairwise(got))
    assert [m.astimezone(NEW_YORK).hour for m in got] == [20, 22, 0, 3, 5]
    assert {m.astimezone(NEW_YORK).minute for m in got} == {50}


def test_minutes_with_a_schedule_keep_their_wall_hours_across_dst() -> None:
    # Every 30 minutes, only in the wall-clock hours 1 and 3, across the same change: the
    # elapsed half hours that fall in those hours, once each.
    start = datetime(2027, 3, 14, 0, 30, tzinfo=NEW_YORK).astimezone(UTC)
    got = first(4, Recurrence("minute", 30, schedule=Schedule(hours=(1, 3)),
                              time_zone="America/New_York"), start, start)
    local = [m.astimezone(NEW_YORK).strftime("%H:%M") for m in got]
    assert local == ["01:00", "01:30", "03:00", "03:30"]


def test_since_skips_ahead_without_walking_from_the_start() -> None:
    start = utc(2000, 1, 1)
    since = utc(2026, 6, 1, 12, 0, 0, 500000)
    assert first(1, Recurrence("second", 1), start, start, since)[0] == utc(2026, 6, 1, 12, 0, 1)
    assert first(1, Recurrence("week", 1), start, start, since)[0] == utc(2026, 6, 6)  # Sat


# --- an independent computation: dateutil's RFC 5545 rules --------------------------------

# Three times hypothesis' examples per property: 300 in the full suite, 75 in the fast lane.
PROPERTY_EXAMPLES = 3 * settings.default.max_examples
RRULE_FREQ = {"minute": rrule.MINUTELY, "hour": rrule.HOURLY, "day": rrule.DAILY,
              "week": rrule.WEEKLY, "month": rrule.MONTHLY, "year": rrule.YEARLY}
RRULE_DAYS = [rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU]


def _reference(recurrence: Recurrence, start: datetime, n: int) -> list[datetime]:
    """The same rule through dateutil.rrule, mapped to instants the same way."""
    zone = ZoneInfo(recurrence.time_zone)
    schedule = recurrence.schedule
    byweekday = [RRULE_DAYS[WEEK_DAYS.index(d)] for d in schedule.week_days] + [
        RRULE_DAYS[WEEK_DAYS.index(o.day)](o.occurrence) for o in schedule.monthly_occurrences]
    rule = rrule.rrule(
        RRULE_FREQ[recurrence.frequency], interval=recurrence.interval,
        dtstart=start.astimezone(zone).replace(tzinfo=None), wkst=rrule.MO,
        byhour=schedule.hours or None, byminute=schedule.minutes or None,
        byweekday=byweekday or None, bymonthday=schedule.month_days or None,
        bymonth=schedule.months or None,
    )
    out: list[datetime] = []
    for wall in rule:
        instant = to_instant(wall, zone)
        if not out or instant > out[-1]:
            out.append(instant)
        if len(out) == n:
            break
    return out


@st.composite
def recurrences(draw: st.DrawFn) -> Recurrence:
    frequency = draw(st.sampled_from(["day", "week", "month", "year"]))
    small = st.lists(st.integers(0, 23), max_size=3, unique=True)
    schedule = Schedule(
        hours=tuple(draw(small)),
        minutes=tuple(draw(st.lists(st.integers(0, 59), max_size=3, unique=True))),
        week_days=tuple(draw(st.lists(st.sampled_from(WEEK_DAYS), max_size=3, unique=True)))
        if frequency == "week" else (),
        month_days=tuple(draw(st.lists(st.integers(1, 28) | st.integers(-28, -1),
                                       max_size=3, unique=True)))
        if frequency == "month" else (),
        monthly_occurrences=tuple(draw(st.lists(
            st.builds(MonthlyOccurrence, st.sampled_from(WEEK_DAYS),
                      st.integers(1, 4) | st.integers(-4, -1)), max_size=2, unique=True)))
        if frequency == "month" else (),
        months=tuple(draw(st.lists(st.integers(1, 12), max_size=3, unique=True)))
        if frequency == "year" else (),
    )
    zone = draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York",
                                 "Australia/Lord_Howe"]))
    return Recurrence(frequency, draw(st.integers(1, 3)), schedule=schedule, time_zone=zone)


def _elapsed_reference(recurrence: Recurrence, start: datetime, n: int) -> list[datetime]:
    """Hour and minute rules through dateutil.rrule in UTC, as periods of elapsed time, the
    schedule's hours read on the zone's wall clock. (Zones here have whole-hour offsets, so
    wall-clock and UTC minutes agree.)"""
    zone = ZoneInfo(recurrence.time_zone)
    schedule = recurrence.schedule
    hourly = recurrence.frequency == "hour"
    rule = rrule.rrule(
        RRULE_FREQ[recurrence.frequency], interval=recurrence.interval,
        dtstart=start.replace(tzinfo=None),
        byminute=(schedule.minutes or None) if hourly else None)
    out: list[datetime] = []
    for moment in rule:
        instant = moment.replace(tzinfo=UTC)
        if instant >= _horizon(recurrence, start):
            break
        wall = instant.astimezone(zone)
        if schedule.hours and wall.hour not in schedule.hours:
            continue
        if not hourly and schedule.minutes and wall.minute not in schedule.minutes:
            continue
        out.append(instant)
        if len(out) == n:
            break
    return out


@st.composite
def elapsed_recurrences(draw: st.DrawFn) -> Recurrence:
    frequency = draw(st.sampled_from(["hour", "minute"]))
    schedule = Schedule(
        hours=tuple(draw(st.lists(st.integers(0, 23), min_size=0, max_size=12, unique=True))),
        minutes=tuple(draw(st.lists(st.integers(0, 59), min_size=1 if frequency == "hour"
                                    else 0, max_size=30 if frequency == "minute" else 3,
                                    unique=True))),
    )
    zone = draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
    return Recurrence(frequency, draw(st.integers(1, 5)), schedule=schedule, time_zone=zone)


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(elapsed_recurrences(), st.sampled_from([
    datetime(2027, 3, 13, 22), datetime(2027, 3, 27, 23), datetime(2027, 10, 30, 23),
    datetime(2027, 11, 6, 22)]), st.integers(0, 7200))
def test_hour_and_minute_schedules_match_elapsed_periods_across_dst(
    recurrence: Recurrence, near_a_change: datetime, seconds: int
) -> None:
    """Starting a few hours before a DST change in Berlin or New York."""
    start = (near_a_change + timedelta(seconds=seconds)).replace(tzinfo=UTC)
    expected = _elapsed_reference(recurrence, start, 12)
    got = [t for t in first(12, recurrence, start, start) if t < _horizon(recurrence, start)]
    assert got == expected, (recurrence, start)


def _horizon(recurrence: Recurrence, start: datetime) -> datetime:
    """As far as both sides are compared: a schedule that matches nothing in 2,000 periods
    is given up (every 5 minutes at :03 never fires), so later occurrences may differ."""
    return start + MAX_EMPTY_PERIODS * recurrence.interval * (
        timedelta(hours=1) if recurrence.frequency == "hour" else timedelta(minutes=1))


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(recurrences(), st.datetimes(min_value=datetime(2020, 1, 1),
                                   max_value=datetime(2030, 1, 1)))
def test_occurrences_match_an_independent_rfc5545_computation(
    recurrence: Recurrence, naive_start: datetime
) -> None:
    start = naive_start.replace(microsecond=0, tzinfo=UTC)
    expected = _reference(recurrence, start, 12)
    assert first(12, recurrence, start, start) == expected
