"""DST marks on upcoming fire times: a time shifted out of a gap, an ambiguous time fired
once, and hours between runs that differ from the clock's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler.domain.dst import dst_marks, exists, is_ambiguous
from scheduler.domain.occurrences import occurrences
from scheduler.domain.recurrence import Recurrence, Schedule

NEW_YORK = ZoneInfo("America/New_York")


def daily_at(hour: int, minute: int) -> Recurrence:
    """Every day at a wall-clock time in New York."""
    return Recurrence(frequency="day", schedule=Schedule(hours=(hour,), minutes=(minute,)),
                      time_zone="America/New_York")


def first(recurrence: Recurrence, start: datetime, n: int) -> list[datetime]:
    """The first `n` fire times from `start`."""
    times = occurrences(recurrence, start, start)
    return [next(times) for _ in range(n)]


def test_a_daily_time_in_the_spring_gap_is_marked_shifted_and_its_day_shorter() -> None:
    times = first(daily_at(2, 30), datetime(2027, 3, 12, tzinfo=UTC), 4)
    marks = dst_marks(times, NEW_YORK, wall_clock=True)
    assert [t.astimezone(NEW_YORK).strftime("%d %H:%M %z") for t in times] == [
        "12 02:30 -0500", "13 02:30 -0500", "14 03:30 -0400", "15 02:30 -0400"]
    assert marks[0] is None and marks[1] is None and marks[3] is None
    assert marks[2] is not None
    assert "02:30 does not exist this day" in marks[2]
    assert "shifted out of the gap to 03:30" in marks[2]
    assert "24 h elapsed since the run before, 25 h on the clock (clocks went forward)" \
        in marks[2]


def test_an_ambiguous_fall_back_time_is_marked_fired_once_at_the_first() -> None:
    times = first(daily_at(1, 30), datetime(2027, 11, 6, tzinfo=UTC), 3)
    marks = dst_marks(times, NEW_YORK, wall_clock=True)
    assert marks[1] == ("01:30 happens twice this day; it fires once, at the first "
                        "(UTC-04:00)")
    assert marks[2] == ("25 h elapsed since the run before, 24 h on the clock "
                        "(clocks went back)")


def test_an_hourly_schedule_is_marked_where_the_clock_jumps() -> None:
    start = datetime(2027, 3, 14, 6, tzinfo=UTC)
    times = [start + timedelta(hours=i) for i in range(3)]
    marks = dst_marks(times, NEW_YORK, wall_clock=False)
    assert marks == [None, "clocks went forward: 2 h on the clock since the run before, "
                           "1 h elapsed", None]


def test_utc_and_times_far_from_a_change_carry_no_mark() -> None:
    times = first(daily_at(9, 0), datetime(2027, 6, 1, tzinfo=UTC), 20)
    assert dst_marks(times, NEW_YORK, wall_clock=True) == [None] * 20
    assert dst_marks(times, ZoneInfo("UTC"), wall_clock=True) == [None] * 20


def test_gap_and_ambiguous_wall_times_are_told_apart() -> None:
    assert not exists(datetime(2027, 3, 14, 2, 30), NEW_YORK)
    assert exists(datetime(2027, 3, 14, 3, 30), NEW_YORK)
    assert is_ambiguous(datetime(2027, 11, 7, 1, 30), NEW_YORK)
    assert not is_ambiguous(datetime(2027, 11, 7, 2, 30), NEW_YORK)
