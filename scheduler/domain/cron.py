"""Cron expressions of job recurrences: parsing, checking, and their fire times in a time zone.

Syntax: five fields (minute hour day-of-month month day-of-week) or six with seconds first
(`sec min hour dom mon dow`, as Azure Functions' NCRONTAB and Quartz write them). A field
holds `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from `a` to the field's
end), or a list of these; month and week-day names (JAN-DEC, SUN-SAT) in any case; day of
week 0 and 7 are Sunday. Day of month also takes `L` (the last day), `LW` (the last weekday),
`L-n` (n days before the last), `nW` (the weekday nearest day n, within the month: `1W` on a
Saturday is Monday the 3rd; a day the month lacks, such as `31W` in April, does not fire, as
`31` does not), and `?` (as `*`); day of week takes `5L` or `FRIL` (the month's last Friday),
`MON#2` (its second Monday), and `?`. The shortcuts are `@yearly @annually @monthly @weekly
@daily @midnight @hourly`.

Day of month and day of week: when both are restricted, a day fires if either matches, as in
Vixie cron and cronsim; when either is unrestricted, a day must match both. A field counts as
unrestricted when it starts with `*` or is `?`, so `*/2` does too (Vixie cron's rule).

cronsim does the calendar arithmetic on naive wall-clock times, held against a brute-force
oracle in the tests. It lacks `nW`, `L-n`, `?`, the shortcuts and names before `L`: `?`, the
shortcuts and names are rewritten for it, and the days of `nW` and `L-n` are worked out here
month by month, cronsim giving their times of day. This module checks the syntax itself, for
messages that say what is wrong and because cronsim takes some nonsense (`L/2` as `L`); cronsim
2.8 read `5-5/10` as `5/10`, so 2.9 is required, and `a/n` is handed to it as `a-max/n`.
Our DST rules come on top (cronsim is never given a zone): a wall time becomes an instant by
`to_instant` (a time in a spring-forward gap fires the gap's length later, an ambiguous time
at its first instance), and only instants later than the last one fire, so a gap time that
lands on one already fired, or a wall time repeated by a fall-back, fires once.
"""

from __future__ import annotations

import calendar
import heapq
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from scheduler.domain import InvalidField
from scheduler.domain.wallclock import to_instant

MAX_LENGTH = 256
SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = {name: number for number, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
    start=1)}
DAY_NAMES = {name: number for number, name in enumerate(
    ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
DAY_OF_MONTH, MONTH, DAY_OF_WEEK = 3, 4, 5
# A matcher whose days recur at all recurs within 40 years (Feb 29 on a given week day, across
# a century year that is not a leap year); cronsim gives up after 50, and so does this module.
MAX_EMPTY_MONTHS = 50 * 12
# Where the check for "never matches a date" starts scanning: 2001-2050 hold every kind of
# year (leap or not, starting on each week day).
_PROBE_START = datetime(2000, 12, 31, 23, 59, 59)
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_DIGITS = re.compile(r"[0-9]+")
_SPACES = re.compile(r"[ \t]+")
# The fewest days that k consecutive months can span (February of 28 days), k = 0..12.
_MIN_MONTHS_SPAN = [0] + [
    min(sum(calendar.monthrange(2001, (start + i) % 12 + 1)[1] for i in range(k))
        for start in range(12))
    for k in range(1, 13)]


@dataclass(frozen=True)
class _Spec:
    name: str
    low: int
    high: int
    names: dict[str, int]


_SPECS = (
    _Spec("second", 0, 59, {}),
    _Spec("minute", 0, 59, {}),
    _Spec("hour", 0, 23, {}),
    _Spec("day-of-month", 1, 31, {}),
    _Spec("month", 1, 12, MONTH_NAMES),
    _Spec("day-of-week", 0, 7, DAY_NAMES),
)


@dataclass(frozen=True)
class CronField:
    """One field as parsed: what cronsim reads of it, its plain values, its special days."""

    terms: tuple[str, ...]  # cronsim's terms, in numbers; `nW` and `L-n` left out
    values: frozenset[int]  # the values of its numbers, ranges and steps
    star: bool  # `*`, `*/n` or `?`: unrestricted in the day-of-month/day-of-week rule
    specials: tuple[str, ...] = ()  # L, LW, L-n, nW (day of month); nL, n#k (day of week)

    @property
    def text(self) -> str:
        """The field as cronsim reads it."""
        return ",".join(self.terms)


@dataclass(frozen=True)
class CronExpression:
    """A checked cron expression, with what evaluating it needs worked out once."""

    text: str  # as the job wrote it (stripped)
    has_seconds: bool
    fields: tuple[CronField, ...]  # six: seconds first (0 when the job wrote five fields)
    plain: str | None  # cronsim's expression for all but `nW` and `L-n`; None if no day fits
    near_weekdays: tuple[int, ...]  # the n of each `nW`
    before_last: tuple[int, ...]  # the n of each `L-n`
    week_days: frozenset[int] | None  # days (0 Sunday) that `nW`/`L-n` days must fall on

    @property
    def times_of_day(self) -> str:
        """The seconds, minutes and hours fields as cronsim reads them."""
        return " ".join(field.text for field in self.fields[:3])

    @property
    def month_relative(self) -> bool:
        """Whether some days are counted from the month's end or moved to a weekday here."""
        return bool(self.near_weekdays or self.before_last)


def parse_cron(text: str, name: str = "recurrence.cron") -> CronExpression:
    """Check a cron expression and prepare it for evaluation; InvalidField says what is wrong."""
    stripped = text.strip()
    if not stripped:
        raise InvalidField(name, "must not be empty")
    if len(stripped) > MAX_LENGTH:
        raise InvalidField(name, f"must be at most {MAX_LENGTH} characters")
    parts = _SPACES.split(_expand_shortcut(stripped, name))
    if len(parts) not in (5, 6):
        raise InvalidField(name, "must have 5 or 6 fields (minute hour day-of-month month "
                                 f"day-of-week, seconds first when 6), not {len(parts)}")
    has_seconds = len(parts) == 6
    # Five fields fire on the minute; fields are numbered as the job wrote them.
    first = 0 if has_seconds else 1
    fields = tuple(
        _parse_field(part, spec, f"field {index + 1 - first} ({spec.name})", name)
        for index, (part, spec) in enumerate(zip(parts if has_seconds else ["0", *parts],
                                                 _SPECS, strict=True)))
    expression = _prepare(stripped, has_seconds, fields)
    if next(_walls(expression, _PROBE_START), None) is None:
        raise InvalidField(name, "never matches a date")
    return expression


def _expand_shortcut(text: str, name: str) -> str:
    """The five fields a shortcut stands for; other text as it is."""
    if not text.startswith("@"):
        return text
    shortcut = text.lower()
    if shortcut == "@reboot":
        raise InvalidField(name, "@reboot is not a schedule: a job fires at times, not when "
                                 "the service starts")
    if shortcut not in SHORTCUTS:
        raise InvalidField(name, f"{text} is not a known shortcut (one of "
                                 f"{', '.join(SHORTCUTS)})")
    return SHORTCUTS[shortcut]


def _parse_field(part: str, spec: _Spec, where: str, name: str) -> CronField:
    """One field's terms, values and special days."""
    if part in ("*", "?"):
        if part == "?" and spec.name not in ("day-of-month", "day-of-week"):
            raise InvalidField(name, f"{where}: '?' is only for day-of-month and day-of-week")
        return CronField(("*",), frozenset(range(spec.low, spec.high + 1)), True)
    terms: list[str] = []
    values: set[int] = set()
    specials: list[str] = []
    star = False
    items = part.split(",")
    for item in items:
        if not item:
            raise InvalidField(name, f"{where}: a list has an empty item")
        if item in ("*", "?") or (item.startswith("*") and len(items) > 1):
            raise InvalidField(name, f"{where}: '{item}' cannot be part of a list")
        upper = item.upper()
        special = _special(upper, spec, where, name)
        if special is not None:
            specials.append(special)
            if _cronsim_reads(special):
                terms.append(special)
            continue
        term, term_values = _plain_term(upper, item, spec, where, name)
        star = star or term.startswith("*")
        terms.append(term)
        values.update(term_values)
    return CronField(tuple(terms), frozenset(values), star, tuple(specials))


def _cronsim_reads(special: str) -> bool:
    """Whether cronsim knows a special term: all but `nW` and `L-n`."""
    return special == "LW" or not (special.endswith("W") or special.startswith("L-"))


def _special(upper: str, spec: _Spec, where: str, name: str) -> str | None:
    """The canonical form of `L`, `LW`, `L-n`, `nW`, `nL` or `n#k`, or None for other terms."""
    if spec.name == "day-of-month":
        if upper in ("L", "LW"):
            return upper
        if upper.startswith("L-"):
            offset = _number(upper[2:], item=upper, low=0, high=30, where=where, name=name,
                             what="the days before the last")
            return f"L-{offset}"
        if upper.endswith("W") and _DIGITS.fullmatch(upper[:-1]):
            return f"{_value(upper[:-1], spec, where, name)}W"
    if spec.name == "day-of-week":
        if upper.endswith("L") and len(upper) > 1:
            return f"{_value(upper[:-1], spec, where, name)}L"
        if "#" in upper:
            day, _, nth = upper.partition("#")
            occurrence = _number(nth, item=upper, low=1, high=5, where=where, name=name,
                                 what="the occurrence in the month")
            return f"{_value(day, spec, where, name)}#{occurrence}"
    return None


def _plain_term(upper: str, item: str, spec: _Spec, where: str, name: str
                ) -> tuple[str, range]:
    """A value, range or step: cronsim's term (in numbers) and its values."""
    base, slash, step_text = upper.partition("/")
    step = 1
    if slash and _special(base, spec, where, name) is not None:
        raise InvalidField(name, f"{where}: in '{item}', a step follows *, a number or a range")
    if slash:
        step = _number(step_text, item=item, low=1, high=spec.high - spec.low + 1,
                       where=where, name=name, what="the step")
    if base == "*":
        if not slash:
            raise InvalidField(name, f"{where}: '{item}' cannot be part of a list")
        return f"*/{step}", range(spec.low, spec.high + 1, step)
    low_text, dash, high_text = base.partition("-")
    if not low_text or (dash and not high_text):
        raise InvalidField(name, f"{where}: '{item}' is not a value, a range or a step")
    low = _value(low_text, spec, where, name)
    if dash:
        high = _value(high_text, spec, where, name)
        if high < low:
            raise InvalidField(name, f"{where}: the range {item} runs backwards")
    else:
        high = spec.high if slash else low
    if not slash:
        return (f"{low}-{high}" if dash else str(low)), range(low, high + 1)
    # Written out as a range: cronsim would read `a/n` the same, but says so only here.
    return f"{low}-{high}/{step}", range(low, high + 1, step)


def _value(token: str, spec: _Spec, where: str, name: str) -> int:
    """A number or a name of the field, within its range."""
    if token in spec.names:
        return spec.names[token]
    if not _DIGITS.fullmatch(token):
        kinds = {"day-of-month": "a day number (L, LW, L-n and nW stand alone)",
                 "month": "a number or a month name (JAN-DEC)",
                 "day-of-week": "a number or a day name (SUN-SAT); nL and n#k stand alone"}
        kind = kinds.get(spec.name, "a number")
        raise InvalidField(name, f"{where}: '{token}' is not {kind}")
    value = int(token)
    if not spec.low <= value <= spec.high:
        raise InvalidField(name, f"{where}: {value} is out of range {spec.low}-{spec.high}")
    return value


def _number(token: str, *, item: str, low: int, high: int, where: str, name: str,
            what: str) -> int:
    """A number within bounds that is part of a term (a step, an offset, an occurrence)."""
    if not _DIGITS.fullmatch(token):
        raise InvalidField(name, f"{where}: in '{item}', {what} must be a number")
    value = int(token)
    if not low <= value <= high:
        raise InvalidField(name, f"{where}: in '{item}', {what} must be {low}-{high}")
    return value


def _prepare(text: str, has_seconds: bool, fields: tuple[CronField, ...]) -> CronExpression:
    """What evaluation needs: cronsim's expression and the days worked out here."""
    dom, dow = fields[DAY_OF_MONTH], fields[DAY_OF_WEEK]
    near = tuple(sorted({int(s[:-1]) for s in dom.specials if s.endswith("W") and s != "LW"}))
    before = tuple(sorted({int(s[2:]) for s in dom.specials if s.startswith("L-")}))
    plain: str | None = None
    if dom.terms:
        plain = " ".join(field.text for field in fields)
    elif not dow.star:
        # Only `nW`/`L-n` days of the month, either of which or the week days may match:
        # cronsim gives the week days alone, with day of month unrestricted.
        plain = " ".join("*" if i == DAY_OF_MONTH else f.text for i, f in enumerate(fields))
    if plain is not None and next(_plain_walls(plain, _PROBE_START), None) is None:
        plain = None  # no day fits it (`30,15W 2 *`): only the days worked out here fire
    # Day of week unrestricted but stepped (`*/2`): the days worked out here must match it.
    week_days = None
    if dow.star and dow.values != frozenset(range(8)):
        week_days = frozenset(value % 7 for value in dow.values)
    return CronExpression(text, has_seconds, fields, plain, near, before, week_days)


# --- evaluation ------------------------------------------------------------------------------


def cron_occurrences(expression: CronExpression, zone: ZoneInfo, after: datetime
                     ) -> Iterator[datetime]:
    """UTC instants strictly after `after` (aware), increasing and endless, with the DST rules."""
    if after.tzinfo is None:
        raise ValueError("after must be an aware datetime")
    wall_after = after.astimezone(zone).replace(tzinfo=None, fold=0)
    # A wall time before `after`'s may lie in a spring-forward gap that `to_instant` moves
    # past `after`: start that much earlier on the wall clock, as far as the gap is long.
    start = wall_after - _gap_lookback(zone, after)
    last = after
    for wall in _walls(expression, start):
        try:
            instant = to_instant(wall, zone)
        except OverflowError:  # past the year 9999 in UTC
            return
        if instant > last:
            last = instant
            yield instant


def _gap_lookback(zone: ZoneInfo, after: datetime) -> timedelta:
    """How far the zone's offset rose in the two days before `after`: a gap's length, or 0.

    Gaps last a day at most (Samoa skipped 2011-12-30), and a zone changes its offset once in
    two days at most: the offsets one and two days earlier hold the one before any gap that
    ends after `after`."""
    now = _offset(zone, after)
    return now - min(now, _offset(zone, after - _DAY), _offset(zone, after - 2 * _DAY))


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _walls(expression: CronExpression, start: datetime) -> Iterator[datetime]:
    """Wall-clock fire times after `start`, to the second, in order, each once."""
    streams: list[Iterator[datetime]] = []
    if expression.plain is not None:
        streams.append(_plain_walls(expression.plain, start))
    if expression.month_relative:
        streams.append(_month_relative_walls(expression, start))
    if len(streams) == 1:
        yield from streams[0]
        return
    previous = None
    for wall in heapq.merge(*streams):
        if wall != previous:
            previous = wall
            yield wall


def _plain_walls(plain: str, start: datetime) -> Iterator[datetime]:
    """cronsim's wall-clock times after `start`; ends where cronsim gives up or time does."""
    try:
        times = CronSim(plain, start)
    except CronSimError:  # a day no month has (`31 2`): cronsim says so up front
        return
    try:
        yield from times
    except OverflowError:  # past the year 9999
        return


def _month_relative_walls(expression: CronExpression, start: datetime) -> Iterator[datetime]:
    """The times of the `nW` and `L-n` days after `start`, month by month."""
    months = expression.fields[MONTH].values
    year, month = start.year, start.month
    empty = 0
    while empty <= MAX_EMPTY_MONTHS:
        found = False
        if month in months:
            for day in _month_relative_days(expression, year, month):
                if day < start.day and (year, month) == (start.year, start.month):
                    continue
                for wall in _times_on(expression, date(year, month, day), start):
                    found = True
                    yield wall
        empty = 0 if found else empty + 1
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        if year > 9999:
            return


def _month_relative_days(expression: CronExpression, year: int, month: int) -> list[int]:
    """The days of one month that `nW` and `L-n` pick, in order."""
    length = calendar.monthrange(year, month)[1]
    days = {_nearest_weekday(year, month, n, length) for n in expression.near_weekdays
            if n <= length}
    days.update(length - n for n in expression.before_last if length - n >= 1)
    if expression.week_days is not None:
        allowed = expression.week_days
        days = {d for d in days if (date(year, month, d).weekday() + 1) % 7 in allowed}
    return sorted(days)


def _nearest_weekday(year: int, month: int, day: int, length: int) -> int:
    """The weekday nearest a day of the month, without leaving the month."""
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday: the Friday before, or on the 1st the Monday after
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: the Monday after, or on the last day the Friday before
        return day + 1 if day < length else day - 2
    return day


def _times_on(expression: CronExpression, day: date, start: datetime) -> Iterator[datetime]:
    """The expression's times of day on one day, after `start`."""
    since = max(start, datetime.combine(day, datetime.min.time()) - _SECOND)
    for wall in CronSim(f"{expression.times_of_day} * * *", since):
        if wall.date() != day:
            return
        yield wall


# --- quotas and words ------------------------------------------------------------------------


def cron_shortest_gap(expression: CronExpression) -> timedelta:
    """A lower bound of the wall-clock time between two occurrences, for quota checks.

    Exact for the times of day; the days between matching days are bounded from below (one
    day where the two day fields may both match). A spring-forward gap can bring a time it
    shifts closer to the next one, once a year, as with any recurrence.
    """
    seconds, minutes, hours = (sorted(f.values) for f in expression.fields[:3])
    minute_gap = min(_inner_gap(seconds), _inner_gap(minutes) * 60 - _spread(seconds))
    minute_spread = _spread(minutes) * 60 + _spread(seconds)
    day_gap = min(minute_gap, _inner_gap(hours) * 3600 - minute_spread)
    day_spread = _spread(hours) * 3600 + minute_spread
    return timedelta(seconds=min(day_gap, _days_between(expression) * 86400 - day_spread))


_NO_GAP = 10**9  # one value alone: no gap between two of them within the unit above


def _inner_gap(values: list[int]) -> int:
    """The smallest difference between consecutive sorted values."""
    return min((b - a for a, b in itertools.pairwise(values)), default=_NO_GAP)


def _spread(values: list[int]) -> int:
    return values[-1] - values[0]


def _cyclic_gap(values: list[int], cycle: int) -> int:
    """The smallest step between values that repeat every `cycle`."""
    return min(_inner_gap(values), values[0] + cycle - values[-1])


def _days_between(expression: CronExpression) -> int:
    """A lower bound of the days between two matching days."""
    dom, dow = expression.fields[DAY_OF_MONTH], expression.fields[DAY_OF_WEEK]
    month_step = _cyclic_gap(sorted(expression.fields[MONTH].values), 12)
    if dom.star or dow.star:  # both must match: as far apart as the sparser one
        return max(_month_days_between(dom, month_step), _week_days_between(dow, month_step))
    return 1  # either may match: a day of one kind can follow a day of the other


def _month_days_between(dom: CronField, month_step: int) -> int:
    """Days between matching days of month, months at least `month_step` apart."""
    span = _MIN_MONTHS_SPAN[month_step]
    if not dom.specials:
        days = sorted(dom.values)
        return max(1, min(_inner_gap(days), span - _spread(days)))
    if dom.values or len(dom.specials) > 1:
        return 1
    special = dom.specials[0]
    if special == "L" or special.startswith("L-"):
        return span  # the same distance from each month's end
    # The last weekday is one of the last 3 days; the day of `nW` lies from n-1 to n+1, or
    # n to n+2 on the 1st, or n-2 to n on a month's last day: 3 apart at most.
    return span - (2 if special == "LW" else 3)


def _week_days_between(dow: CronField, month_step: int) -> int:
    """Days between matching days of week, months at least `month_step` apart."""
    if not dow.specials:
        return _cyclic_gap(sorted({value % 7 for value in dow.values}), 7)
    if dow.values or len(dow.specials) > 1:
        return 1
    # The same week day in each month, at most 6 days earlier in the month than before.
    return 7 * -(-(_MIN_MONTHS_SPAN[month_step] - 6) // 7)


def describe_cron(expression: CronExpression) -> str:
    """Short words for the dashboard ("at 09:00 on Monday through Friday")."""
    if expression.month_relative:
        return f"cron {expression.text}"
    fields = [field.text for field in expression.fields]
    words = CronSim(" ".join(fields if expression.has_seconds else fields[1:]),
                    _PROBE_START).explain()
    return words[:1].lower() + words[1:]
