"""Where a daylight-saving change moved a job's fire times, in words a person checks a
schedule with: shifted out of a gap, an ambiguous time fired once, or a different number of
hours between two runs than the clock shows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

# A spring-forward gap is at most this long in any zone in use.
LONGEST_GAP = timedelta(hours=3)


def exists(wall: datetime, zone: ZoneInfo) -> bool:
    """Whether a wall-clock time happens at all in the zone (not inside a gap)."""
    placed = wall.replace(tzinfo=zone)
    return placed.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def is_ambiguous(wall: datetime, zone: ZoneInfo) -> bool:
    """Whether a wall-clock time happens twice in the zone (a fall-back hour)."""
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    return first != second and exists(wall, zone)


def hours(span: timedelta) -> str:
    """A span in hours (and minutes when there are some)."""
    minutes = round(span.total_seconds() / 60)
    whole, rest = divmod(abs(minutes), 60)
    text = f"{whole} h" if not rest else f"{whole} h {rest} min"
    return f"-{text}" if minutes < 0 else text


def dst_marks(times: Sequence[datetime], zone: ZoneInfo, wall_clock: bool
              ) -> list[str | None]:
    """For each fire time (UTC, in order), what a DST change did to it in `zone`, or None.
    `wall_clock` says whether the schedule steps in wall-clock time (days and longer), where
    a gap shifts a time and the hours between two runs change; else it steps in elapsed
    time, where the clock's reading jumps instead."""
    marks: list[str | None] = []
    for index, moment in enumerate(times):
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None)
        notes = []
        if is_ambiguous(wall, zone):
            notes.append(f"{wall:%H:%M} happens twice this day; it fires once, at the first "
                         f"(UTC{_offset(local)})")
        shifted = _shifted_from(moment, zone) if wall_clock else None
        if shifted is not None:
            notes.append(f"{shifted:%H:%M} does not exist this day (clocks spring forward); "
                         f"shifted out of the gap to {wall:%H:%M}")
        if index > 0:
            change = _change_between(times[index - 1], moment, zone, wall_clock)
            if change:
                notes.append(change)
        marks.append("; ".join(notes) or None)
    return marks


def _offset(local: datetime) -> str:
    offset = local.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds() // 60))
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _shifted_from(moment: datetime, zone: ZoneInfo) -> datetime | None:
    """The wall time a fire time was shifted from, when it lies just after a spring-forward
    gap that its nominal time fell into."""
    after = moment.astimezone(zone).utcoffset()
    before = (moment - LONGEST_GAP).astimezone(zone).utcoffset()
    if after is None or before is None or after <= before:
        return None
    nominal = moment.astimezone(zone).replace(tzinfo=None) - (after - before)
    return None if exists(nominal, zone) else nominal


def _change_between(previous: datetime, moment: datetime, zone: ZoneInfo,
                    wall_clock: bool) -> str | None:
    """Words for a UTC-offset change between two consecutive fire times."""
    before = previous.astimezone(zone)
    after = moment.astimezone(zone)
    if before.utcoffset() == after.utcoffset():
        return None
    elapsed = moment - previous
    on_clock = after.replace(tzinfo=None) - before.replace(tzinfo=None)
    direction = "forward" if (after.utcoffset() or timedelta(0)) > \
        (before.utcoffset() or timedelta(0)) else "back"
    if wall_clock:
        return (f"{hours(elapsed)} elapsed since the run before, {hours(on_clock)} on the "
                f"clock (clocks went {direction})")
    return (f"clocks went {direction}: {hours(on_clock)} on the clock since the run before, "
            f"{hours(elapsed)} elapsed")
