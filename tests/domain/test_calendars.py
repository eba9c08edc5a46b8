"""Exclusion calendars: the days they exclude (listed dates and RFC 5545 rules, in their time
zone), which calendar of a job's list excludes an instant, and what a client gives that they
refuse."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.domain import InvalidField
from scheduler.domain.calendars import (
    ExclusionCalendar,
    check_calendar_name,
    first_excluding,
    read_dates,
    read_description,
    read_rules,
    read_time_zone,
)


def calendar(name: str = "cal", *, time_zone: str = "UTC", dates: Sequence[str] = (),
             rules: Sequence[str] = ()) -> ExclusionCalendar:
    """A calendar of these dates and rules, read as a client's would be."""
    return ExclusionCalendar(name=name, time_zone=read_time_zone(time_zone, "timeZone"),
                             dates=read_dates(list(dates), "dates"),
                             rules=read_rules(list(rules), "rules"), description=None)


def noon(day: date) -> datetime:
    """Noon UTC of a day."""
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def excluded_days(cal: ExclusionCalendar, first: date, last: date) -> list[date]:
    """The days from `first` to `last` whose noon UTC the calendar excludes."""
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [day for day in days if cal.excludes(noon(day))]


def test_listed_dates_are_excluded_whole_days() -> None:
    cal = calendar(dates=["2026-12-25", "2026-12-26"])
    assert cal.excludes(datetime(2026, 12, 25, 0, 0, tzinfo=UTC))
    assert cal.excludes(datetime(2026, 12, 26, 23, 59, 59, tzinfo=UTC))
    assert not cal.excludes(datetime(2026, 12, 24, 23, 59, 59, tzinfo=UTC))
    assert not cal.excludes(datetime(2026, 12, 27, tzinfo=UTC))


def test_a_weekly_rule_excludes_weekends() -> None:
    cal = calendar(rules=["FREQ=WEEKLY;BYDAY=SA,SU"])
    assert excluded_days(cal, date(2026, 3, 1), date(2026, 3, 15)) == [
        date(2026, 3, 1), date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 14),
        date(2026, 3, 15)]


def test_a_yearly_rule_excludes_its_day_every_year() -> None:
    cal = calendar(rules=["RRULE:FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1"])
    for year in (2000, 2026, 2031, 2099):
        assert cal.excludes(noon(date(year, 1, 1)))
        assert not cal.excludes(noon(date(year, 1, 2)))
    assert not cal.excludes(noon(date(1999, 1, 1)))  # before the rule's start


def test_bysetpos_minus_one_excludes_the_last_weekday_of_each_month() -> None:
    cal = calendar(rules=["FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"])
    assert excluded_days(cal, date(2026, 1, 1), date(2026, 12, 31)) == [
        date(2026, 1, 30), date(2026, 2, 27), date(2026, 3, 31), date(2026, 4, 30),
        date(2026, 5, 29), date(2026, 6, 30), date(2026, 7, 31), date(2026, 8, 31),
        date(2026, 9, 30), date(2026, 10, 30), date(2026, 11, 30), date(2026, 12, 31)]


def test_days_are_those_of_the_calendars_time_zone() -> None:
    late_on_christmas_eve = datetime(2026, 12, 24, 12, 30, tzinfo=UTC)  # 01:30 on Dec 25 there
    auckland = calendar(time_zone="Pacific/Auckland", dates=["2026-12-25"])
    utc = calendar(dates=["2026-12-25"])
    assert auckland.excludes(late_on_christmas_eve)
    assert not utc.excludes(late_on_christmas_eve)
    assert not auckland.excludes(datetime(2026, 12, 25, 11, 0, tzinfo=UTC))  # Dec 26 there
    new_york = calendar(time_zone="America/New_York", rules=["FREQ=WEEKLY;BYDAY=SA,SU"])
    assert new_york.excludes(datetime(2026, 3, 9, 3, 0, tzinfo=UTC))  # Sunday 23:00 there
    assert not new_york.excludes(datetime(2026, 3, 9, 5, 0, tzinfo=UTC))


def test_an_instant_in_another_offset_is_read_as_the_same_instant() -> None:
    cal = calendar(dates=["2026-12-25"])
    tokyo_morning = datetime(2026, 12, 25, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert cal.excludes(tokyo_morning) == cal.excludes(tokyo_morning.astimezone(UTC))


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar(dates=["2026-12-25"]).excludes(datetime(2026, 12, 25, 12))


def test_a_rule_starts_at_its_dtstart_and_ends_at_its_count_or_until() -> None:
    counted = calendar(rules=["DTSTART;VALUE=DATE:20260301\nFREQ=DAILY;COUNT=3"])
    assert excluded_days(counted, date(2026, 2, 27), date(2026, 3, 6)) == [
        date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]
    # A time on UNTIL's day does not change which days: the rule's days begin at midnight.
    until = calendar(rules=["DTSTART;VALUE=DATE:20260301\r\nFREQ=DAILY;UNTIL=20260303T000000Z"])
    assert excluded_days(until, date(2026, 2, 27), date(2026, 3, 6)) == [
        date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]


def test_easter_days_move_with_easter() -> None:
    easter_monday = calendar(rules=["FREQ=YEARLY;BYEASTER=1"])
    assert easter_monday.excludes(noon(date(2026, 4, 6)))
    assert easter_monday.excludes(noon(date(2027, 3, 29)))
    assert not easter_monday.excludes(noon(date(2027, 4, 6)))


def test_years_may_be_asked_in_any_order() -> None:
    cal = calendar(rules=["FREQ=YEARLY;BYMONTH=7;BYMONTHDAY=4"])
    for year in (2030, 2026, 2040, 2026, 2001, 2035, 2030):
        assert cal.excludes(noon(date(year, 7, 4))), year
        assert not cal.excludes(noon(date(year, 7, 5))), year


def test_the_rules_of_the_documentation_exclude_what_it_says() -> None:
    first_monday = calendar(rules=["FREQ=MONTHLY;BYDAY=1MO"])
    assert excluded_days(first_monday, date(2026, 3, 1), date(2026, 4, 30)) == [
        date(2026, 3, 2), date(2026, 4, 6)]
    thanksgiving = calendar(rules=["FREQ=YEARLY;BYMONTH=11;BYDAY=4TH"])
    assert excluded_days(thanksgiving, date(2026, 1, 1), date(2027, 12, 31)) == [
        date(2026, 11, 26), date(2027, 11, 25)]
    good_friday = calendar(rules=["FREQ=YEARLY;BYEASTER=-2"])
    assert excluded_days(good_friday, date(2026, 1, 1), date(2026, 12, 31)) == [
        date(2026, 4, 3)]
    fortnightly = calendar(rules=[
        "DTSTART;VALUE=DATE:20260101\nFREQ=WEEKLY;INTERVAL=2;BYDAY=FR;UNTIL=20261231"])
    days = excluded_days(fortnightly, date(2025, 12, 1), date(2027, 1, 31))
    assert days[:2] == [date(2026, 1, 2), date(2026, 1, 16)] and len(days) == 26
    assert days[-1] == date(2026, 12, 18)


RULES = ["FREQ=WEEKLY;BYDAY=SA,SU", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
         "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "FREQ=DAILY;INTERVAL=10",
         "DTSTART;VALUE=DATE:20100105\nFREQ=WEEKLY;INTERVAL=3;BYDAY=TU;COUNT=400",
         "FREQ=MONTHLY;BYDAY=-1FR", "FREQ=YEARLY;BYWEEKNO=1;BYDAY=MO"]


# No deadline: the first example of a rule reads it from its start, which a busy machine may
# take longer than hypothesis' 200 ms over.
@settings(deadline=None)
@given(rule=st.sampled_from(RULES),
       years=st.lists(st.integers(min_value=1995, max_value=2060), min_size=1, max_size=6))
def test_the_days_of_a_year_are_those_dateutil_finds_in_it(rule: str, years: list[int]) -> None:
    cal = calendar(rules=[rule])
    lines = rule.splitlines()
    start = datetime.strptime(lines[0][-8:], "%Y%m%d") if len(lines) == 2 \
        else datetime(2000, 1, 1)
    oracle = rrulestr(lines[-1], dtstart=start)
    for year in years:
        expected = {moment.date() for moment in oracle.between(
            datetime(year, 1, 1), datetime(year, 12, 31), inc=True)}
        found = set(excluded_days(cal, date(year, 1, 1), date(year, 12, 31)))
        assert found == expected, year


def test_first_excluding_names_the_first_calendar_of_the_list_that_excludes() -> None:
    weekends = calendar("Weekends", rules=["FREQ=WEEKLY;BYDAY=SA,SU"])
    holidays = calendar("Holidays", dates=["2026-12-25", "2026-12-26"])
    calendars = {"weekends": weekends, "holidays": holidays}
    saturday_boxing_day = noon(date(2026, 12, 26))
    assert first_excluding(calendars, ["holidays", "weekends"], saturday_boxing_day) == \
        "Holidays"
    assert first_excluding(calendars, ["WEEKENDS", "holidays"], saturday_boxing_day) == \
        "Weekends"
    assert first_excluding(calendars, ["missing", "holidays"], noon(date(2026, 12, 25))) == \
        "Holidays"
    assert first_excluding(calendars, ["weekends", "holidays"], noon(date(2026, 12, 28))) \
        is None
    assert first_excluding(calendars, [], saturday_boxing_day) is None


Reader = Callable[[Any, str], Any]
REFUSED: list[tuple[Reader, Any, str, str]] = [
    (read_time_zone, "Mars/Olympus", "timeZone", "is not an IANA time zone"),
    (read_time_zone, "Europe", "timeZone", "is not an IANA time zone"),
    (read_time_zone, "../../etc/passwd", "timeZone", "is not an IANA time zone"),
    (read_time_zone, "x" * 65, "timeZone", "at most 64 characters"),
    (read_time_zone, 1, "timeZone", "must be a string"),
    (read_description, 5, "description", "must be a string"),
    (read_description, "x" * 1025, "description", "at most 1024 characters"),
    (read_description, "nul\x00", "description", "NUL"),
    (read_dates, ["2026-12-25", "2026-13-01"], "dates[1]", "is not a date"),
    (read_dates, ["20261225"], "dates[0]", "YYYY-MM-DD"),
    (read_dates, [20261225], "dates[0]", "YYYY-MM-DD"),
    (read_dates, {}, "dates", "must be a JSON array"),
    (read_dates, ["2026-01-01"] * 1001, "dates", "at most 1000 items"),
    (read_rules, ["FREQ=YEARLY"] * 51, "rules", "at most 50 items"),
    (read_rules, "FREQ=DAILY", "rules", "must be a JSON array"),
    (read_rules, [None], "rules[0]", "must be a string"),
    (read_rules, ["FREQ=YEARLY;" + "BYMONTH=1;" * 60], "rules[0]", "at most 500 characters"),
    (read_rules, ["FREQ=DAILY", "FREQ=DAILY;BYHOUR=9"], "rules[1]", "is not day-based"),
    (read_rules, ["FREQ=DAILY;BYMINUTE=0"], "rules[0]", "is not day-based"),
    (read_rules, ["FREQ=DAILY;BYSECOND=0"], "rules[0]", "is not day-based"),
    (read_rules, ["FREQ=HOURLY"], "rules[0]", "is not day-based"),
    (read_rules, ["FREQ=MINUTELY;INTERVAL=5"], "rules[0]", "is not day-based"),
    (read_rules, ["FREQ=FORTNIGHTLY"], "rules[0]", "FREQ must be one of"),
    (read_rules, ["BYDAY=MO"], "rules[0]", "FREQ is required"),
    (read_rules, ["FREQ=DAILY;FREQ=WEEKLY"], "rules[0]", "FREQ is given twice"),
    (read_rules, ["FREQ=DAILY;INTERVAL=0"], "rules[0]", "INTERVAL must be a whole number"),
    (read_rules, ["FREQ=DAILY;INTERVAL=-1"], "rules[0]", "INTERVAL must be a whole number"),
    (read_rules, ["FREQ=DAILY;COUNT=many"], "rules[0]", "COUNT must be a whole number"),
    (read_rules, ["FREQ=DAILY;UNTIL=tomorrow"], "rules[0]", "UNTIL must be a date"),
    (read_rules, ["FREQ=DAILY;UNTIL=20260230"], "rules[0]", "UNTIL 20260230 is not a date"),
    (read_rules, ["FREQ=DAILY;WKST=XX"], "rules[0]", "cannot be read as an RFC 5545 rule"),
    (read_rules, ["FREQ=DAILY;BYDAY=MONDAY"], "rules[0]", "cannot be read as an RFC 5545"),
    (read_rules, ["FREQ=DAILY;X-NAME=1"], "rules[0]", "X-NAME is not a part"),
    (read_rules, ["FREQ=DAILY;"], "rules[0]", "is not a NAME=VALUE part"),
    (read_rules, [""], "rules[0]", "must be an RRULE value"),
    (read_rules, ["DTSTART:20260101\nFREQ=DAILY"], "rules[0]", "DTSTART;VALUE=DATE:YYYYMMDD"),
    (read_rules, ["DTSTART;VALUE=DATE:19000101\nFREQ=DAILY"], "rules[0]", "from 19700101"),
    (read_rules, ["DTSTART;VALUE=DATE:20260101\nFREQ=DAILY\nFREQ=WEEKLY"], "rules[0]",
     "must be an RRULE value"),
    (read_rules, ["FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"], "rules[0]", "never occurs"),
    (read_rules, ["FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31"], "rules[0]", "never occurs"),
    (read_rules, ["FREQ=YEARLY;COUNT=0"], "rules[0]", "COUNT must be a whole number"),
    (read_rules, ["DTSTART;VALUE=DATE:20260101\nFREQ=DAILY;UNTIL=20251231"], "rules[0]",
     "its COUNT or UNTIL ends it before its first day"),
    (read_rules, ["FREQ=DAILY;BYWEEKNO=1"], "rules[0]", "BYWEEKNO is allowed in a YEARLY"),
    (read_rules, ["FREQ=MONTHLY;BYYEARDAY=1"], "rules[0]", "BYYEARDAY is allowed in a YEARLY"),
    (read_rules, ["FREQ=WEEKLY;BYMONTHDAY=1"], "rules[0]", "BYMONTHDAY is not allowed"),
    (read_rules, ["FREQ=WEEKLY;BYDAY=+1MO"], "rules[0]", "a BYDAY with a number"),
    (read_rules, ["FREQ=YEARLY;BYSETPOS=1"], "rules[0]", "BYSETPOS needs another BY part"),
    (read_rules, ["FREQ=DAILY;BYEASTER=1"], "rules[0]", "BYEASTER"),
    (read_rules, ["FREQ=YEARLY;BYEASTER=1;BYMONTH=4"], "rules[0]", "BYEASTER"),
]


@pytest.mark.parametrize(("reader", "value", "field", "words"), REFUSED,
                         ids=[f"{field}-{words}" for _, _, field, words in REFUSED])
def test_what_breaks_a_rule_is_refused_naming_the_field(
        reader: Reader, value: Any, field: str, words: str) -> None:
    with pytest.raises(InvalidField) as refused:
        reader(value, field.split("[")[0])
    assert refused.value.field == field
    assert words in refused.value.message


@pytest.mark.parametrize("name", ["", "a.b", "a b", "x" * 65, "café", "a/b"])
def test_a_name_that_is_not_one_is_refused(name: str) -> None:
    with pytest.raises(InvalidField) as refused:
        check_calendar_name(name)
    assert refused.value.field == "name"
    assert check_calendar_name("Public_Holidays-2026") == "Public_Holidays-2026"
