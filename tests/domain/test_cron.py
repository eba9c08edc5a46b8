"""Cron recurrences: the syntax, DST days, invalid input, and a brute-force oracle."""

from __future__ import annotations

import bisect
import calendar
import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scheduler.domain import InvalidField
from scheduler.domain.cron import (
    CronExpression,
    cron_occurrences,
    cron_shortest_gap,
    describe_cron,
    parse_cron,
)
from scheduler.domain.occurrences import to_instant

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
DST_ZONES = ("Europe/London", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
             "Pacific/Chatham")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        microsecond: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def fires(text: str, after: datetime, n: int, zone: ZoneInfo | None = None) -> list[datetime]:
    """The first `n` fire times of an expression after `after`."""
    return list(itertools.islice(
        cron_occurrences(parse_cron(text), zone or ZoneInfo("UTC"), after), n))


def local(times: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).strftime("%Y-%m-%d %a %H:%M:%S %z") for t in times]


# --- the syntax ------------------------------------------------------------------------------


def test_weekdays_at_nine() -> None:
    got = fires("0 9 * * MON-FRI", utc(2026, 1, 1, 9), 5)  # a Thursday, at 09:00 exactly
    assert got == [utc(2026, 1, 2, 9), utc(2026, 1, 5, 9), utc(2026, 1, 6, 9),
                   utc(2026, 1, 7, 9), utc(2026, 1, 8, 9)]


def test_last_day_and_last_weekday_of_the_month() -> None:
    assert fires("0 0 L * *", utc(2028, 1, 1), 3) == [
        utc(2028, 1, 31), utc(2028, 2, 29), utc(2028, 3, 31)]
    # 2026: January ends on a Saturday, May on a Sunday.
    assert [t.date() for t in fires("0 0 LW * *", utc(2026, 1, 1), 5)] == [
        date(2026, 1, 30), date(2026, 2, 27), date(2026, 3, 31), date(2026, 4, 30),
        date(2026, 5, 29)]


def test_days_before_the_last() -> None:
    assert [t.date() for t in fires("0 0 L-2 * *", utc(2028, 1, 1), 3)] == [
        date(2028, 1, 29), date(2028, 2, 27), date(2028, 3, 29)]


def test_last_friday_and_second_monday() -> None:
    assert [t.date() for t in fires("0 0 * * 5L", utc(2026, 1, 1), 3)] == [
        date(2026, 1, 30), date(2026, 2, 27), date(2026, 3, 27)]
    assert fires("0 0 * * FRIL", utc(2026, 1, 1), 3) == fires("0 0 * * 5L", utc(2026, 1, 1), 3)
    assert [t.date() for t in fires("0 0 * * MON#2", utc(2026, 1, 1), 3)] == [
        date(2026, 1, 12), date(2026, 2, 9), date(2026, 3, 9)]


def test_nearest_weekday_stays_within_the_month() -> None:
    # 2026-02-15 is a Sunday (Monday the 16th), 2026-08-15 a Saturday (Friday the 14th).
    assert [t.date() for t in fires("0 0 15W * *", utc(2026, 1, 20), 7)] == [
        date(2026, 2, 16), date(2026, 3, 16), date(2026, 4, 15), date(2026, 5, 15),
        date(2026, 6, 15), date(2026, 7, 15), date(2026, 8, 14)]
    # 2026-08-01 is a Saturday: Monday the 3rd, not Friday July 31st.
    assert fires("0 0 1W 8 *", utc(2026, 1, 1), 1) == [utc(2026, 8, 3)]
    # 2026-05-31 is a Sunday: Friday the 29th; April has no 31st and does not fire.
    assert [t.date() for t in fires("0 0 31W 4,5 *", utc(2026, 1, 1), 2)] == [
        date(2026, 5, 29), date(2027, 5, 31)]


def test_six_fields_put_seconds_first() -> None:
    assert fires("*/20 30 9 * * *", utc(2026, 1, 1), 4) == [
        utc(2026, 1, 1, 9, 30), utc(2026, 1, 1, 9, 30, 20), utc(2026, 1, 1, 9, 30, 40),
        utc(2026, 1, 2, 9, 30)]
    expression = parse_cron("15 0 12 * * *")
    assert expression.has_seconds
    assert fires("15 0 12 * * *", utc(2026, 1, 1), 1) == [utc(2026, 1, 1, 12, 0, 15)]


def test_five_fields_fire_on_the_minute() -> None:
    assert not parse_cron("0 12 * * *").has_seconds
    assert fires("0 12 * * *", utc(2026, 1, 1, 12, 0, 0, 1), 1) == [utc(2026, 1, 2, 12)]


def test_shortcuts() -> None:
    after = utc(2026, 5, 5, 5, 5)
    assert fires("@daily", after, 2) == fires("0 0 * * *", after, 2) == \
        fires("@midnight", after, 2)
    assert fires("@hourly", after, 1) == [utc(2026, 5, 5, 6)]
    assert fires("@weekly", after, 1) == [utc(2026, 5, 10)]  # Sunday
    assert fires("@monthly", after, 1) == [utc(2026, 6, 1)]
    assert fires("@yearly", after, 1) == fires("@annually", after, 1) == [utc(2027, 1, 1)]
    assert fires("@DAILY", after, 1) == [utc(2026, 5, 6)]
    assert parse_cron("  @daily ").text == "@daily"


def test_names_in_any_case() -> None:
    after = utc(2026, 1, 1)
    expected = fires("0 0 * 3-4 1,5", after, 20)
    for text in ("0 0 * MAR-APR MON,FRI", "0 0 * mar-apr mon,fri", "0 0 * Mar-aPr Mon,fRi"):
        assert fires(text, after, 20) == expected


def test_sunday_is_0_and_7_and_question_mark_is_a_star() -> None:
    after = utc(2026, 1, 1)
    assert fires("0 0 * * 0", after, 5) == fires("0 0 * * 7", after, 5) == \
        fires("0 0 ? * SUN", after, 5)
    assert fires("0 0 1 * ?", after, 3) == fires("0 0 1 * *", after, 3)


def test_steps_and_ranges() -> None:
    after = utc(2026, 1, 1)
    assert [t.minute for t in fires("10-30/10 * * * *", after, 4)] == [10, 20, 30, 10]
    assert [t.minute for t in fires("50/5 * * * *", after, 3)] == [50, 55, 50]
    assert [t.hour for t in fires("0 */8 * * *", after, 4)] == [8, 16, 0, 8]


def test_either_day_field_may_match_when_both_are_restricted() -> None:
    # The 13th or a Friday: January 2026 has Fridays on the 2nd, 9th and 16th.
    assert [t.day for t in fires("0 0 13 * FRI", utc(2026, 1, 1), 4)] == [2, 9, 13, 16]
    # A field that starts with * counts as unrestricted: odd days that are also Fridays.
    assert [t.day for t in fires("0 0 */2 * FRI", utc(2026, 1, 1), 3)] == [9, 23, 13]
    assert [t.day for t in fires("0 0 13 * *", utc(2026, 1, 1), 1)] == [13]


def test_a_nearest_weekday_or_a_week_day_may_match() -> None:
    # January 2026: Monday the 5th, 12th; the 15th is a Thursday.
    assert [t.day for t in fires("0 0 15W * MON", utc(2026, 1, 1), 4)] == [5, 12, 15, 19]


def test_a_nearest_weekday_fires_where_the_plain_days_never_do() -> None:
    # February has no 30th, but the weekday nearest the 15th: 2027-02-15 is a Monday.
    assert fires("0 0 30,15W 2 *", utc(2026, 3, 1), 1) == [utc(2027, 2, 15)]


def test_a_day_every_28_years_is_found() -> None:
    # February 29th on a Monday: 2016, 2044, 2072, then 2112 (2100 is no leap year).
    assert fires("0 0 29 2 *", utc(2072, 3, 1), 1) == [utc(2076, 2, 29)]
    assert fires("0 0 * 2 MON#5", utc(2072, 3, 1), 1) == [utc(2112, 2, 29)]


def test_the_iteration_ends_at_the_end_of_time() -> None:
    assert fires("0 0 1 1 *", utc(9998, 6, 1), 5) == [utc(9999, 1, 1)]


# --- DST -------------------------------------------------------------------------------------


def test_a_time_in_the_spring_gap_fires_once_an_hour_later() -> None:
    got = fires("30 2 * * *", utc(2026, 3, 27), 4, BERLIN)
    assert local(got, BERLIN) == [
        "2026-03-27 Fri 02:30:00 +0100", "2026-03-28 Sat 02:30:00 +0100",
        "2026-03-29 Sun 03:30:00 +0200", "2026-03-30 Mon 02:30:00 +0200"]


def test_an_ambiguous_time_fires_once_at_its_first_instance() -> None:
    got = fires("30 1 * * *", utc(2026, 10, 31), 3, NEW_YORK)
    assert got == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_every_quarter_hour_across_the_spring_gap() -> None:
    got = fires("*/15 * * * *", utc(2026, 3, 29, 0, 30), 7, BERLIN)
    # 02:00-02:45 do not exist: they fire at 03:00-03:45, and 03:00-03:45 fire no more.
    assert local(got, BERLIN) == [
        "2026-03-29 Sun 01:45:00 +0100", "2026-03-29 Sun 03:00:00 +0200",
        "2026-03-29 Sun 03:15:00 +0200", "2026-03-29 Sun 03:30:00 +0200",
        "2026-03-29 Sun 03:45:00 +0200", "2026-03-29 Sun 04:00:00 +0200",
        "2026-03-29 Sun 04:15:00 +0200"]


def test_every_quarter_hour_across_the_fall_back() -> None:
    got = fires("*/15 * * * *", utc(2026, 11, 1, 5, 30), 4, NEW_YORK)
    # 01:45 EDT, then the repeated 01:00-01:45 EST do not fire again.
    assert local(got, NEW_YORK) == [
        "2026-11-01 Sun 01:45:00 -0400", "2026-11-01 Sun 02:00:00 -0500",
        "2026-11-01 Sun 02:15:00 -0500", "2026-11-01 Sun 02:30:00 -0500"]
    # Asked from inside the repeated hour, the next is the hour's end.
    assert fires("*/15 * * * *", utc(2026, 11, 1, 6, 20), 1, NEW_YORK) == [
        utc(2026, 11, 1, 7)]


def test_asked_from_just_after_the_gap_a_shifted_time_still_fires() -> None:
    # 02:30 (gap) fires at 03:30 CEST = 01:30 UTC; asking at 01:10 UTC must still give it.
    assert fires("30 2 * * *", utc(2026, 3, 29, 1, 10), 1, BERLIN) == [utc(2026, 3, 29, 1, 30)]
    assert fires("30 2 * * *", utc(2026, 3, 29, 1, 30), 1, BERLIN) == [utc(2026, 3, 30, 0, 30)]


def test_midnight_that_does_not_exist_in_santiago() -> None:
    # Chile moves from 24:00 to 01:00 on the first Sunday of September.
    santiago = ZoneInfo("America/Santiago")
    got = fires("0 0 * * *", utc(2026, 9, 5, 12), 2, santiago)
    assert local(got, santiago) == ["2026-09-06 Sun 01:00:00 -0300",
                                    "2026-09-07 Mon 00:00:00 -0300"]


def test_a_half_hour_gap_in_lord_howe() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    got = fires("*/20 2 * * *", utc(2026, 10, 3, 12), 4, lord_howe)
    # 02:00 and 02:20 do not exist (02:00 -> 02:30): they fire at 02:30 and 02:50; 02:40 is
    # passed by then and fires no more.
    assert local(got, lord_howe) == [
        "2026-10-04 Sun 02:30:00 +1100", "2026-10-04 Sun 02:50:00 +1100",
        "2026-10-05 Mon 02:00:00 +1100", "2026-10-05 Mon 02:20:00 +1100"]


def test_after_must_be_aware() -> None:
    with pytest.raises(ValueError):
        next(cron_occurrences(parse_cron("* * * * *"), BERLIN, datetime(2026, 1, 1)))


# --- invalid input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("", "must not be empty"),
    ("   ", "must not be empty"),
    ("x" * 257, "must be at most 256 characters"),
    ("* * * *", "must have 5 or 6 fields"),
    ("0 0 0 0 * * * *", "must have 5 or 6 fields"),
    ("@reboot", "@reboot is not a schedule"),
    ("@every", "@every is not a known shortcut"),
    ("0 24 * * *", "field 2 (hour): 24 is out of range 0-23"),
    ("60 * * * *", "field 1 (minute): 60 is out of range 0-59"),
    ("0 0 0 * * *", None),
    ("60 0 0 * * *", "field 1 (second): 60 is out of range 0-59"),
    ("0 60 0 * * *", "field 2 (minute): 60 is out of range 0-59"),
    ("0 0 0 * *", "field 3 (day-of-month): 0 is out of range 1-31"),
    ("0 0 * 13 *", "field 4 (month): 13 is out of range 1-12"),
    ("0 0 * * 8", "field 5 (day-of-week): 8 is out of range 0-7"),
    ("0 0 * JANUARY *", "field 4 (month): 'JANUARY' is not a number or a month name"),
    ("0 0 * * MONDAY", "field 5 (day-of-week): 'MONDAY' is not a number or a day name"),
    ("0 MON * * *", "field 2 (hour): 'MON' is not a number"),
    ("0 0 30 2 *", "never matches a date"),
    ("0 0 31 4,6,9,11 *", "never matches a date"),
    ("0 0 30W 2 *", "never matches a date"),
    ("0 0 L-29 2 *", "never matches a date"),
    ("0 0 15W * */6", "never matches a date"),  # weekdays only, on Saturday or Sunday
    ("0 0 */27 * MON#3", "never matches a date"),  # the 1st or 28th as a third Monday
    ("5-1 * * * *", "field 1 (minute): the range 5-1 runs backwards"),
    ("0 0 * * FRI-MON", "field 5 (day-of-week): the range FRI-MON runs backwards"),
    ("*/0 * * * *", "field 1 (minute): in '*/0', the step must be 1-60"),
    ("*/61 * * * *", "field 1 (minute): in '*/61', the step must be 1-60"),
    ("*/x * * * *", "field 1 (minute): in '*/x', the step must be a number"),
    ("0 0 L/2 * *", "in 'L/2', a step follows *, a number or a range"),
    ("0 0 * * MON#6", "in 'MON#6', the occurrence in the month must be 1-5"),
    ("0 0 * * MON#0", "in 'MON#0', the occurrence in the month must be 1-5"),
    ("0 0 L-31 * *", "in 'L-31', the days before the last must be 0-30"),
    ("0 0 32W * *", "field 3 (day-of-month): 32 is out of range 1-31"),
    ("0 0 * * 8L", "field 5 (day-of-week): 8 is out of range 0-7"),
    ("0 0 1,* * *", "field 3 (day-of-month): '*' cannot be part of a list"),
    ("0 0 1,? * *", "'?' cannot be part of a list"),
    ("0 0 1,,2 * *", "field 3 (day-of-month): a list has an empty item"),
    ("0 0 1, * *", "a list has an empty item"),
    ("0 ? * * *", "field 2 (hour): '?' is only for day-of-month and day-of-week"),
    ("0 0 W * *", "field 3 (day-of-month): 'W' is not a day number"),
    ("0 0 * * L", "field 5 (day-of-week): 'L' is not a number or a day name"),
    ("0 0 LW-1 * *", "field 3 (day-of-month)"),
    ("0 0 1-L * *", "field 3 (day-of-month): 'L' is not a day number"),
    ("0 0 H * *", "field 3 (day-of-month): 'H' is not a day number"),
    ("0 0 * * \uff15", "'\uff15' is not a number"),  # a full-width digit
    ("0\u00a00 * * *", "must have 5 or 6 fields"),  # a no-break space does not separate
    ("0 0 1 1 * 2030", "field 6 (day-of-week): 2030 is out of range 0-7"),
    ("-1 * * * *", "field 1 (minute): '-1' is not a value, a range or a step"),
    ("1- * * * *", "field 1 (minute): '1-' is not a value, a range or a step"),
    ("1-2-3 * * * *", "field 1 (minute): '2-3' is not a number"),
])
def test_invalid_expressions_say_what_is_wrong(text: str, message: str | None) -> None:
    if message is None:
        parse_cron(text)
        return
    with pytest.raises(InvalidField) as caught:
        parse_cron(text, "properties.recurrence.cron")
    assert caught.value.field == "properties.recurrence.cron"
    assert message in caught.value.message


# --- gaps and words --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "gap"), [
    ("* * * * * *", timedelta(seconds=1)),
    ("*/20 * * * * *", timedelta(seconds=20)),
    ("50,10 * * * * *", timedelta(seconds=20)),
    ("* * * * *", timedelta(minutes=1)),
    ("*/15 * * * *", timedelta(minutes=15)),
    ("0,50 * * * *", timedelta(minutes=10)),
    ("0 * * * *", timedelta(hours=1)),
    ("0 9,17 * * *", timedelta(hours=8)),
    ("0 1,23 * * *", timedelta(hours=2)),
    ("0 9 * * *", timedelta(days=1)),
    ("0 9 * * MON", timedelta(days=7)),
    ("0 9 * * MON,FRI", timedelta(days=3)),
    ("0 9 * * MON#2", timedelta(days=28)),
    ("0 0 L * *", timedelta(days=28)),
    ("0 0 1 * *", timedelta(days=28)),
    ("0 0 1,15 * *", timedelta(days=14)),
    ("0 0 1 1 *", timedelta(days=365)),
    ("0 0 1 */3 *", timedelta(days=89)),
])
def test_shortest_gap_of_common_shapes(text: str, gap: timedelta) -> None:
    assert cron_shortest_gap(parse_cron(text)) == gap


@pytest.mark.parametrize(("text", "words"), [
    ("0 9 * * MON-FRI", "at 09:00 on Monday through Friday"),
    ("*/15 * * * *", "every 15th minute of every hour"),
    ("@daily", "at 00:00 every day"),
    ("0 0 LW * *", "at 00:00 on the last weekday of every month"),
    ("0 0 ? * mon#2", "at 00:00 on the second Monday of the month"),
    ("*/5 * * * * *", "every fifth second of every minute"),
    ("0 0 15W * *", "cron 0 0 15W * *"),
])
def test_words_for_the_dashboard(text: str, words: str) -> None:
    assert describe_cron(parse_cron(text)) == words


def test_an_expression_is_hashable_and_equal_when_parsed_again() -> None:
    assert parse_cron("0 9 * * MON-FRI") == parse_cron("0 9 * * MON-FRI")
    assert len({parse_cron("0 9 * * MON-FRI"), parse_cron("0 9 * * MON-FRI")}) == 1


# --- an independent oracle: brute force over every day and time of day -----------------------

BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
ORACLE_NAMES: tuple[dict[str, int], ...] = (
    {}, {}, {}, {},
    {name: number for number, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
        start=1)},
    {name: number for number, name in enumerate(
        ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])},
)


@dataclass
class Matcher:
    """A cron expression as sets, read by the oracle's own parser."""

    fields: list[set[int]] = field(default_factory=list)
    stars: list[bool] = field(default_factory=list)
    last: bool = False  # L
    last_weekday: bool = False  # LW
    near: set[int] = field(default_factory=set)  # nW
    before_last: set[int] = field(default_factory=set)  # L-n
    last_of: set[int] = field(default_factory=set)  # nL, weekday 0-6
    nth: set[tuple[int, int]] = field(default_factory=set)  # n#k


def oracle_number(token: str, index: int) -> int:
    return ORACLE_NAMES[index][token] if token in ORACLE_NAMES[index] else int(token)


def oracle_parse(text: str) -> Matcher:
    """Sets of seconds, minutes, hours, days, months and week days, and the special days."""
    parts = text.upper().split()
    if len(parts) == 5:
        parts.insert(0, "0")
    matcher = Matcher()
    for index, part in enumerate(parts):
        low, high = BOUNDS[index]
        values: set[int] = set()
        matcher.stars.append(part[0] in "*?")
        for term in part.split(","):
            if term in ("*", "?"):
                values.update(range(low, high + 1))
            elif index == 3 and term == "L":
                matcher.last = True
            elif index == 3 and term == "LW":
                matcher.last_weekday = True
            elif index == 3 and term.startswith("L-"):
                matcher.before_last.add(int(term[2:]))
            elif index == 3 and term.endswith("W"):
                matcher.near.add(int(term[:-1]))
            elif index == 5 and term.endswith("L"):
                matcher.last_of.add(oracle_number(term[:-1], 5) % 7)
            elif index == 5 and "#" in term:
                day, k = term.split("#")
                matcher.nth.add((oracle_number(day, 5) % 7, int(k)))
            else:
                values.update(oracle_range(term, index))
        matcher.fields.append({v % 7 for v in values} if index == 5 else values)
    return matcher


def oracle_range(term: str, index: int) -> range:
    low, high = BOUNDS[index]
    found = re.fullmatch(r"(\*|\w+)(?:-(\w+))?(?:/(\d+))?", term)
    assert found is not None, term
    start_text, end_text, step = found.groups()
    start = low if start_text == "*" else oracle_number(start_text, index)
    if end_text is not None:
        end = oracle_number(end_text, index)
    else:
        end = high if start_text == "*" or step else start
    return range(start, end + 1, int(step or 1))


@functools.cache
def month_weekdays(year: int, month: int) -> list[int]:
    """The days of a month that are Monday to Friday."""
    length = calendar.monthrange(year, month)[1]
    return [d for d in range(1, length + 1) if date(year, month, d).weekday() < 5]


def oracle_day_matches(m: Matcher, day: date) -> bool:
    """Whether a day fires, by the day-of-month/day-of-week rule."""
    if day.month not in m.fields[4]:
        return False
    length = calendar.monthrange(day.year, day.month)[1]
    weekdays = month_weekdays(day.year, day.month)
    # The weekday closest to n within the month (never a tie: n-1 or n+1 is nearer than n+2).
    nearest = {min(weekdays, key=lambda w: abs(w - n)) for n in m.near if n <= length}
    dom = (day.day in m.fields[3] or (m.last and day.day == length)
           or (m.last_weekday and day.day == weekdays[-1]) or day.day in nearest
           or any(length - n == day.day for n in m.before_last))
    cron_weekday = (day.weekday() + 1) % 7
    dow = (cron_weekday in m.fields[5]
           or (cron_weekday in m.last_of and day.day + 7 > length)
           or (cron_weekday, (day.day - 1) // 7 + 1) in m.nth)
    if m.stars[3] or m.stars[5]:
        return dom and dow
    return dom or dow


@functools.cache
def seconds_of_day(hours: frozenset[int], minutes: frozenset[int], seconds: frozenset[int]
                   ) -> list[int]:
    return sorted(h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds)


def oracle_walls(m: Matcher, start: datetime, until: date) -> Iterator[datetime]:
    """Every matching wall-clock time after `start`, scanning day by day up to `until`."""
    times = seconds_of_day(*(frozenset(m.fields[i]) for i in (2, 1, 0)))
    day = start.date()
    while day <= until:
        if oracle_day_matches(m, day):
            midnight = datetime.combine(day, time())
            first = bisect.bisect_right(times, (start - midnight).total_seconds())
            for offset in itertools.islice(times, first, None):
                yield midnight + timedelta(seconds=offset)
        day += timedelta(days=1)


def oracle_occurrences(text: str, zone: ZoneInfo, after: datetime, until: datetime,
                       limit: int) -> list[datetime]:
    """The first fire times in (after, until): wall times from three hours before `after`
    (longer than any gap of these zones), each mapped by `to_instant`, kept while they
    increase."""
    start = after.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3)
    out: list[datetime] = []
    last = after
    for wall in oracle_walls(oracle_parse(text), start, until.date() + timedelta(days=1)):
        instant = to_instant(wall, zone)
        if instant >= until or len(out) == limit:
            break
        if instant > last:
            last = instant
            out.append(instant)
    return out


# --- generated expressions -------------------------------------------------------------------


# Strategies are built once here: building them inside each draw costs more than the tests.
FAVOURITES = {1: (0, 15, 30, 45, 59), 2: (0, 1, 2, 3, 23), 3: (1, 15, 28, 29, 30, 31)}
NUMBERS = {index: st.sampled_from(FAVOURITES[index]) | st.integers(low, high)
           if index in FAVOURITES else st.integers(low, high)
           for index, (low, high) in enumerate(BOUNDS)}
STEPS = {index: st.integers(1, high - low + 1) for index, (low, high) in enumerate(BOUNDS)}
TERM_KINDS = st.sampled_from(["value", "value", "range", "step", "start-step", "range-step"])
CASES = st.sampled_from([str.upper, str.lower, str.title])


@st.composite
def plain_term(draw: st.DrawFn, index: int) -> str:
    """A value, a range or a step of one field, names sometimes, in any case."""
    names = {v: k for k, v in ORACLE_NAMES[index].items()}

    def spell(value: int) -> str:
        if value in names and draw(st.booleans()):
            return draw(CASES)(names[value])
        return str(value)

    kind, a = draw(TERM_KINDS), draw(NUMBERS[index])
    if kind == "value":
        return spell(a)
    if kind == "step":
        return f"*/{draw(STEPS[index])}"
    if kind == "start-step":
        return f"{spell(a)}/{draw(STEPS[index])}"
    b = draw(st.integers(a, min(BOUNDS[index][1], a + draw(st.sampled_from([1, 3, 10, 60])))))
    step = f"/{draw(STEPS[index])}" if kind == "range-step" else ""
    return f"{spell(a)}-{spell(b)}{step}"


WEEK_DAY = st.integers(0, 7).map(str) | st.tuples(
    st.sampled_from(list(ORACLE_NAMES[5])), CASES).map(lambda pair: pair[1](pair[0]))
TERMS = {
    0: st.sampled_from(["0", "0", "30", "*/20", "*/7", "5-8"]),
    1: plain_term(1),
    2: plain_term(2),
    3: st.sampled_from(["L", "LW"]) | st.integers(0, 30).map("L-{}".format)
    | NUMBERS[3].map("{}W".format) | plain_term(3),
    4: plain_term(4),
    5: st.tuples(WEEK_DAY, st.just("L") | st.integers(1, 5).map("#{}".format)).map("".join)
    | plain_term(5),
}


def as_list(terms: list[str]) -> str:
    # A step over the whole field (`*/n`) stands alone: `*` is never part of a list.
    steps = [t for t in terms if t.startswith("*")]
    return steps[0] if steps else ",".join(terms)


def cron_field(index: int) -> st.SearchStrategy[str]:
    """`*` (or `?`) a quarter of the time, else a list of up to three terms."""
    lists = st.lists(TERMS[index], min_size=1, max_size=3).map(as_list)
    return st.one_of(st.sampled_from(["*", "?"] if index in (3, 5) else ["*"]),
                     lists, lists, lists)


CRON_TEXTS = st.tuples(*(cron_field(index) for index in range(6)), st.booleans()).map(
    lambda parts: " ".join(parts[1:6] if parts[6] else parts[:6]))


@functools.cache
def transitions(zone_name: str) -> list[datetime]:
    """The zone's offset changes in 2026-2027, to the minute."""
    zone = ZoneInfo(zone_name)
    found = []
    instant = utc(2026, 1, 1)
    while instant < utc(2028, 1, 1):
        after = instant + timedelta(hours=1)
        if instant.astimezone(zone).utcoffset() != after.astimezone(zone).utcoffset():
            minute = instant
            while minute.astimezone(zone).utcoffset() == instant.astimezone(zone).utcoffset():
                minute += timedelta(minutes=1)
            found.append(minute)
        instant = after
    return found


@st.composite
def near_a_transition(draw: st.DrawFn) -> tuple[ZoneInfo, datetime]:
    """A DST zone and an instant within two days of one of its changes."""
    name = draw(st.sampled_from(DST_ZONES))
    change = draw(st.sampled_from(transitions(name)))
    offset = timedelta(seconds=draw(st.integers(-2 * 86400, 2 * 86400)),
                       microseconds=draw(st.sampled_from([0, 0, 1, 500000])))
    return ZoneInfo(name), change + offset


# The oracle across DST changes runs three times hypothesis' examples (300 in the full suite,
# 75 in the fast lane); the other properties the default.
PROPERTY_EXAMPLES = 3 * settings().max_examples
HORIZON = timedelta(days=5)
MAX_COMPARED = 60


def parsed_or_never(text: str) -> CronExpression | None:
    """The expression, or None when it never fires (which the oracle must agree with)."""
    try:
        return parse_cron(text)
    except InvalidField as error:
        assert error.message == "never matches a date", (text, error.message)
    m = oracle_parse(text)
    start = date(2001, 1, 1)
    assert not any(oracle_day_matches(m, start + timedelta(days=n))
                   for n in range((date(2029, 1, 1) - start).days))
    return None


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(CRON_TEXTS, near_a_transition())
def test_occurrences_match_a_brute_force_oracle_across_dst_changes(
        text: str, zone_after: tuple[ZoneInfo, datetime]) -> None:
    zone, after = zone_after
    expression = parsed_or_never(text)
    assume(expression is not None)
    assert expression is not None
    until = after + HORIZON
    got = list(itertools.takewhile(lambda t: t < until, itertools.islice(
        cron_occurrences(expression, zone, after), MAX_COMPARED)))
    expected = oracle_occurrences(text, zone, after, until, MAX_COMPARED)
    assert local(got, zone) == local(expected, zone)


@settings(deadline=None)
@given(CRON_TEXTS, st.datetimes(min_value=datetime(2001, 1, 1),
                                  max_value=datetime(2060, 1, 1)))
def test_rare_days_match_the_oracle_over_years(text: str, start: datetime) -> None:
    """Fewer fire times a day, so that years of them are compared (in UTC)."""
    expression = parsed_or_never(" ".join(["0", "0", *text.split()[-3:]]))
    assume(expression is not None)
    assert expression is not None
    after = start.replace(tzinfo=UTC)
    until = after + timedelta(days=3 * 366)
    got = list(itertools.takewhile(lambda t: t < until, itertools.islice(
        cron_occurrences(expression, ZoneInfo("UTC"), after), 200)))
    expected = oracle_occurrences(expression.text, ZoneInfo("UTC"), after, until, 200)
    assert got == expected


@settings(deadline=None)
@given(CRON_TEXTS, near_a_transition(), st.integers(0, 20))
def test_asking_again_from_a_fire_time_continues_the_same_sequence(
        text: str, zone_after: tuple[ZoneInfo, datetime], k: int) -> None:
    zone, after = zone_after
    expression = parsed_or_never(text)
    assume(expression is not None)
    assert expression is not None
    times = list(itertools.islice(cron_occurrences(expression, zone, after), k + 10))
    again = list(itertools.islice(cron_occurrences(expression, zone, times[k]), 9))
    assert again == times[k + 1:]


@settings(deadline=None)
@given(CRON_TEXTS, st.datetimes(min_value=datetime(2001, 1, 1),
                                  max_value=datetime(2090, 1, 1)))
def test_shortest_gap_is_never_above_the_real_gaps(text: str, start: datetime) -> None:
    expression = parsed_or_never(text)
    assume(expression is not None)
    assert expression is not None
    after = start.replace(tzinfo=UTC)
    until = after + timedelta(days=10 * 366)
    times = list(itertools.takewhile(lambda t: t < until, itertools.islice(
        cron_occurrences(expression, ZoneInfo("UTC"), after), 300)))
    gap = cron_shortest_gap(expression)
    assert gap >= timedelta(seconds=1)
    assert all(b - a >= gap for a, b in itertools.pairwise(times))
    assert describe_cron(expression)
