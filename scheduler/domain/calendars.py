"""Exclusion calendars: named sets of whole days, in a time zone, on which a job that names
the calendar does not fire (as Quartz's HolidayCalendar and Temporal's exclude calendars).

A calendar excludes the days it lists (`dates`) and the days on which one of its rules
(`rules`, RFC 5545 RRULE values read by dateutil) has an occurrence. The days a rule yields
are worked out a year at a time and kept, since the engine asks for every occurrence of every
job that names a calendar.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

from scheduler.domain import InvalidField
from scheduler.domain.caches import LruCache

MAX_NAME_CHARS = 64
MAX_DATES = 1000
MAX_RULES = 50
MAX_RULE_CHARS = 500
MAX_DESCRIPTION_CHARS = 1024
MAX_TIME_ZONE_CHARS = 64
MAX_INTERVAL = 1000
# What a collection holds at most; the services count them.
MAX_CALENDARS = 100
DEFAULT_TIME_ZONE = "UTC"
# A rule without a DTSTART line starts here.
DEFAULT_START = date(2000, 1, 1)
# The starts a rule may give: the days of a year are found by reading the rule from its start
# on, so an earlier one costs every later reading more.
EARLIEST_START, LATEST_START = date(1970, 1, 1), date(2999, 12, 31)

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
DTSTART = re.compile(r"DTSTART;VALUE=DATE:(\d{8})", re.ASCII | re.IGNORECASE)
UNTIL = re.compile(r"(\d{8})(?:T\d{6}Z?)?", re.ASCII)
DIGITS = re.compile(r"\d{1,9}", re.ASCII)

DAY_FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
TIME_FREQUENCIES = ("HOURLY", "MINUTELY", "SECONDLY")
TIME_PARTS = ("BYHOUR", "BYMINUTE", "BYSECOND")
DAY_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", "BYMONTHDAY",
             "BYYEARDAY", "BYWEEKNO", "BYMONTH", "BYSETPOS", "BYEASTER")
# A weekday with an ordinal (`+1MO`, `-1FR`), which RFC 5545 allows in monthly and yearly
# rules only.
ORDINAL_DAY = re.compile(r"[+-]?\d")

# The Gregorian calendar repeats every 400 years (146,097 days, 20,871 weeks, 4,800 months):
# moving a rule's start by 400 years moves its days by as much. dateutil looks for a rule's
# next day until it finds one or passes the year 9999, so whether a rule has a day at all is
# asked of the rule moved by whole cycles to the last start whose cycle ends by then: the
# search then ends within two cycles, and within one for a start on January 1.
CYCLE_YEARS = 400
END_OF_TIME = 10_000  # the first year dateutil does not reach
# The years of days kept per rule and per calendar: the engine asks about the present.
YEARS_KEPT = 4
# Rules read and kept by the process, by their text.
RULES_KEPT = 1024
_NO_DAYS: frozenset[date] = frozenset()


class _Refused(ValueError):
    """A rule this service does not take; the message says why."""


# --- the days of a rule ----------------------------------------------------------------------

class _RuleDays:
    """The days one rule yields, read from dateutil's iterator a year at a time, forward:
    the years asked last are kept, and a year before those already read starts the reading
    over."""

    def __init__(self, rule: rrule, start: date) -> None:
        self._rule = rule
        self._start = start
        self._lock = threading.Lock()  # dateutil's iterator is read by one thread at a time
        self._years: LruCache[int, frozenset[date]] = LruCache(YEARS_KEPT)
        self._restart()

    def _restart(self) -> None:
        self._days: Iterator[datetime] = iter(self._rule)
        self._pending: date | None = None  # read, and of a year not asked yet
        self._unread_from = self._start.year  # every day of an earlier year has been read
        self._done = False

    def days_in(self, year: int) -> frozenset[date]:
        """The days of `year` on which the rule has an occurrence."""
        if year < self._start.year:
            return _NO_DAYS
        with self._lock:
            kept = self._years.get(year)
            if kept is not None:
                return kept
            if year < self._unread_from:
                self._restart()
            found = frozenset(self._read_year(year))
            self._years.put(year, found)
            return found

    def _read_year(self, year: int) -> Iterator[date]:
        """The rule's days in `year`, read on from where the last reading stopped."""
        self._unread_from = year + 1
        while not self._done:
            day = self._pending or self._next_day()
            if day is None:
                return
            if day.year > year:
                self._pending = day
                return
            self._pending = None
            if day.year == year:
                yield day

    def _next_day(self) -> date | None:
        moment = next(self._days, None)
        if moment is None:
            self._done = True
            return None
        return moment.date()


@functools.lru_cache(maxsize=RULES_KEPT)
def _rule_days(text: str) -> _RuleDays:
    """A rule read and checked, with the days it yields; `_Refused` says what is wrong."""
    start, rule_line = _split_start(text)
    parts = _parts(rule_line)
    _check_parts(parts)
    try:
        rule = rrulestr(";".join(f"{name}={value}" for name, value in parts.items()),
                        dtstart=datetime(start.year, start.month, start.day))
    except (ValueError, TypeError, OverflowError, IndexError, KeyError) as exc:
        raise _Refused(f"cannot be read as an RFC 5545 rule: {exc}") from None
    if not isinstance(rule, rrule):
        raise _Refused("must be one rule")
    _check_occurs(rule, start, "BYEASTER" in parts)
    return _RuleDays(rule, start)


def _split_start(text: str) -> tuple[date, str]:
    """The start a rule gives (`DTSTART;VALUE=DATE:YYYYMMDD` on a line of its own before
    it) or the default one, and the rule's line without its `RRULE:` name."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or len(lines) > 2:
        raise _Refused("must be an RRULE value, optionally after a DTSTART;VALUE=DATE:YYYYMMDD "
                       "line")
    start = DEFAULT_START
    if len(lines) == 2:
        match = DTSTART.fullmatch(lines[0])
        if match is None:
            raise _Refused("its first line must be DTSTART;VALUE=DATE:YYYYMMDD")
        start = _compact_date(match.group(1), "DTSTART")
        if not EARLIEST_START <= start <= LATEST_START:
            raise _Refused(f"DTSTART must be from {EARLIEST_START:%Y%m%d} to "
                           f"{LATEST_START:%Y%m%d}")
    rule_line = lines[-1]
    if rule_line.upper().startswith("RRULE:"):
        rule_line = rule_line[len("RRULE:"):]
    return start, rule_line


def _compact_date(text: str, what: str) -> date:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise _Refused(f"{what} {text} is not a date") from None


def _parts(rule_line: str) -> dict[str, str]:
    """A rule's `NAME=VALUE` parts, names in upper case; UNTIL as the date it ends on (the
    days of a rule begin at midnight, so a time on that day does not change which days)."""
    parts: dict[str, str] = {}
    for part in rule_line.split(";"):
        name, equals, value = part.partition("=")
        name = name.strip().upper()
        if not equals or not name or not value.strip():
            raise _Refused(f"{part!r} is not a NAME=VALUE part")
        if name in parts:
            raise _Refused(f"{name} is given twice")
        parts[name] = value.strip().upper()
    if "UNTIL" in parts:
        match = UNTIL.fullmatch(parts["UNTIL"])
        if match is None:
            raise _Refused("UNTIL must be a date, YYYYMMDD (or YYYYMMDDTHHMMSSZ)")
        parts["UNTIL"] = f"{_compact_date(match.group(1), 'UNTIL'):%Y%m%d}"
    return parts


def _check_parts(parts: Mapping[str, str]) -> None:
    """Refuse a rule that is not day-based, or that combines parts as RFC 5545 does not."""
    frequency = parts.get("FREQ")
    if frequency is None:
        raise _Refused("FREQ is required")
    if frequency in TIME_FREQUENCIES or any(name in parts for name in TIME_PARTS):
        raise _Refused("is not day-based: a calendar excludes whole days, so FREQ must be "
                       f"{', '.join(DAY_FREQUENCIES)} and no BYHOUR, BYMINUTE or BYSECOND")
    if frequency not in DAY_FREQUENCIES:
        raise _Refused(f"FREQ must be one of {', '.join(DAY_FREQUENCIES)}, not {frequency}")
    unknown = [name for name in parts if name not in DAY_PARTS]
    if unknown:
        raise _Refused(f"{unknown[0]} is not a part of a day-based rule")
    for name, low, high in (("INTERVAL", 1, MAX_INTERVAL), ("COUNT", 1, 10**9 - 1)):
        value = parts.get(name)
        if value is not None and not (DIGITS.fullmatch(value) and low <= int(value) <= high):
            raise _Refused(f"{name} must be a whole number from {low} to {high}")
    _check_combination(frequency, parts)


def _check_combination(frequency: str, parts: Mapping[str, str]) -> None:
    """The parts RFC 5545 allows with each frequency, and BYEASTER (dateutil's) alone in a
    yearly rule."""
    by_parts = [name for name in parts if name.startswith("BY")]
    if "BYWEEKNO" in parts and frequency != "YEARLY":
        raise _Refused("BYWEEKNO is allowed in a YEARLY rule only")
    if "BYYEARDAY" in parts and frequency != "YEARLY":
        raise _Refused("BYYEARDAY is allowed in a YEARLY rule only")
    if "BYMONTHDAY" in parts and frequency == "WEEKLY":
        raise _Refused("BYMONTHDAY is not allowed in a WEEKLY rule")
    if "BYSETPOS" in parts and by_parts == ["BYSETPOS"]:
        raise _Refused("BYSETPOS needs another BY part to pick from")
    ordinal = any(ORDINAL_DAY.match(day.strip()) for day in parts.get("BYDAY", "").split(","))
    if ordinal and (frequency not in ("MONTHLY", "YEARLY") or "BYWEEKNO" in parts):
        raise _Refused("a BYDAY with a number (+1MO, -1FR) is allowed in MONTHLY and YEARLY "
                       "rules only, and not with BYWEEKNO")
    if "BYEASTER" in parts and (frequency != "YEARLY" or by_parts != ["BYEASTER"]):
        raise _Refused("BYEASTER (days from Easter Sunday) is allowed in a YEARLY rule with "
                       "no other BY part")


def _check_occurs(rule: rrule, start: date, by_easter: bool) -> None:
    """Refuse a rule that has no day: one that never occurs in a 400-year cycle (Easter's
    yearly days always do), or whose COUNT or UNTIL ends it before its first day."""
    if not by_easter:
        last_year = END_OF_TIME - CYCLE_YEARS - (0 if (start.month, start.day) == (1, 1) else 1)
        cycles = (last_year - start.year) // CYCLE_YEARS
        moved = datetime(start.year + cycles * CYCLE_YEARS, start.month, start.day)
        if next(iter(rule.replace(dtstart=moved, count=None, until=None)), None) is None:
            raise _Refused(f"never occurs (it has no day in the {CYCLE_YEARS} years from its "
                           "start)")
    if next(iter(rule), None) is None:
        raise _Refused("never occurs: its COUNT or UNTIL ends it before its first day")


# --- calendars -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExclusionCalendar:
    """A named set of whole days in a time zone: those it lists and those its rules yield."""

    name: str
    time_zone: str
    dates: frozenset[date]
    rules: tuple[str, ...]
    description: str | None
    _zone: tzinfo = field(init=False, repr=False, compare=False)
    _rule_days: tuple[_RuleDays, ...] = field(init=False, repr=False, compare=False)
    _years: dict[int, frozenset[date]] = field(init=False, repr=False, compare=False,
                                               default_factory=dict)

    def __post_init__(self) -> None:
        """Read the zone and the rules once (ValueError for one that cannot be read)."""
        object.__setattr__(self, "_zone", ZoneInfo(self.time_zone))
        object.__setattr__(self, "_rule_days", tuple(_rule_days(rule) for rule in self.rules))

    def excludes(self, instant: datetime) -> bool:
        """Whether the instant (timezone-aware) falls on an excluded day of the calendar's
        time zone."""
        if instant.tzinfo is None:
            raise ValueError("an instant must be timezone-aware")
        day = instant.astimezone(self._zone).date()
        return day in self.dates or day in self._days_in(day.year)

    def _days_in(self, year: int) -> frozenset[date]:
        """The days the rules yield in `year`, kept for the last few years asked."""
        days = self._years.get(year)
        if days is None:
            days = frozenset().union(*(rule.days_in(year) for rule in self._rule_days))
            if len(self._years) >= YEARS_KEPT:
                self._years.clear()
            self._years[year] = days
        return days


def first_excluding(calendars: Mapping[str, ExclusionCalendar], names: Sequence[str],
                    instant: datetime) -> str | None:
    """The name of the first calendar of `names` (found in `calendars` by its lower-case
    name; one not there is passed over) that excludes the instant, or None."""
    for name in names:
        calendar = calendars.get(name.lower())
        if calendar is not None and calendar.excludes(instant):
            return calendar.name
    return None


# --- checking what a client gives ----------------------------------------------------------
# Each reader takes the field's name in the client's terms, which an InvalidField names.

def check_calendar_name(name: str, field_name: str = "name") -> str:
    """The name, unless it is not 1-64 letters, digits, `-` and `_` (InvalidField)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidField(field_name, f"{name!r} is not a calendar name: use "
                           f"1-{MAX_NAME_CHARS} letters, digits, '-' and '_'")
    return name


def read_time_zone(value: Any, field_name: str) -> str:
    """An IANA time zone's name."""
    zone = _text(value, field_name, MAX_TIME_ZONE_CHARS)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidField(field_name, f"{zone!r} is not an IANA time zone") from None
    return zone


def read_description(value: Any, field_name: str) -> str:
    """Words for people, at most MAX_DESCRIPTION_CHARS."""
    return _text(value, field_name, MAX_DESCRIPTION_CHARS)


def read_dates(value: Any, field_name: str) -> frozenset[date]:
    """A list of at most MAX_DATES days, each `YYYY-MM-DD` (an item is named by its index)."""
    days = set()
    for index, item in enumerate(_items(value, field_name, MAX_DATES)):
        where = f"{field_name}[{index}]"
        if not isinstance(item, str) or not DATE.fullmatch(item):
            raise InvalidField(where, "must be a date, YYYY-MM-DD")
        try:
            days.add(date.fromisoformat(item))
        except ValueError:
            raise InvalidField(where, f"{item} is not a date") from None
    return frozenset(days)


def read_rules(value: Any, field_name: str) -> tuple[str, ...]:
    """A list of at most MAX_RULES day-based rules that occur (an item is named by its
    index, with what is wrong with it)."""
    rules = []
    for index, item in enumerate(_items(value, field_name, MAX_RULES)):
        where = f"{field_name}[{index}]"
        text = _text(item, where, MAX_RULE_CHARS)
        try:
            _rule_days(text)
        except _Refused as exc:
            raise InvalidField(where, str(exc)) from None
        rules.append(text)
    return tuple(rules)


def _text(value: Any, field_name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidField(field_name, "must be a string")
    if len(value) > limit:
        raise InvalidField(field_name, f"must be at most {limit} characters")
    if "\x00" in value:
        raise InvalidField(field_name, "must not contain a NUL character")
    return value


def _items(value: Any, field_name: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidField(field_name, "must be a JSON array")
    if len(value) > limit:
        raise InvalidField(field_name, f"must have at most {limit} items")
    return value
