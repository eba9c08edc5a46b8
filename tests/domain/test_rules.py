"""Pure rules: durations, recurrence validation, shortest gaps, quotas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.domain import InvalidField
from scheduler.domain.durations import parse_duration
from scheduler.domain.quotas import (
    QuotaExceeded,
    canonical_plan,
    check_job_count,
    check_recurrence,
    effective_limits,
)
from scheduler.domain.recurrence import (
    MonthlyOccurrence,
    Recurrence,
    Schedule,
    shortest_gap,
    validate_recurrence,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("PT30S", timedelta(seconds=30)), ("PT1M", timedelta(minutes=1)),
    ("P1DT2H", timedelta(days=1, hours=2)), ("P2W", timedelta(weeks=2)),
    ("00:01:00", timedelta(minutes=1)), ("1.02:00:00", timedelta(days=1, hours=2)),
    ("pt1.5s", timedelta(seconds=1.5)),
])
def test_durations_read_iso_8601_and_timespan_text(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "30S", "P1Y", "PT-1S", "P1000D", "soon"])
def test_durations_refuse_everything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_week_days_need_week_frequency() -> None:
    with pytest.raises(InvalidField) as error:
        validate_recurrence(Recurrence("day", schedule=Schedule(week_days=("monday",))), NOW)
    assert error.value.field == "recurrence.schedule.weekDays"


def test_month_days_and_occurrences_need_month_frequency() -> None:
    with pytest.raises(InvalidField):
        validate_recurrence(Recurrence("week", schedule=Schedule(month_days=(1,))), NOW)
    occurrence = Schedule(monthly_occurrences=(MonthlyOccurrence("friday", -1),))
    validate_recurrence(Recurrence("month", schedule=occurrence), NOW)


def test_interval_is_capped_at_eighteen_months() -> None:
    validate_recurrence(Recurrence("month", interval=18), NOW)
    with pytest.raises(InvalidField):
        validate_recurrence(Recurrence("month", interval=19), NOW)


def test_end_time_must_be_in_the_future() -> None:
    with pytest.raises(InvalidField):
        validate_recurrence(Recurrence("hour", end_time=NOW), NOW)


@pytest.mark.parametrize(("recurrence", "gap"), [
    (Recurrence("minute", 5), timedelta(minutes=5)),
    (Recurrence("hour", 1, schedule=Schedule(minutes=(0, 15, 50))), timedelta(minutes=10)),
    (Recurrence("day", 1, schedule=Schedule(hours=(1, 23), minutes=(0,))), timedelta(hours=2)),
    (Recurrence("week", 1, schedule=Schedule(week_days=("monday", "friday"))),
     timedelta(days=3)),
    (Recurrence("second", 30), timedelta(seconds=30)),
])
def test_shortest_gap_follows_the_finest_schedule_unit(
    recurrence: Recurrence, gap: timedelta
) -> None:
    assert shortest_gap(recurrence) == gap


def test_quota_can_only_lower_the_plan() -> None:
    limits = effective_limits(50, timedelta(minutes=1), 100, "second", 1)
    assert limits.max_job_count == 50
    assert limits.min_recurrence == timedelta(minutes=1)
    stricter = effective_limits(50, timedelta(minutes=1), 10, "hour", 2)
    assert stricter.max_job_count == 10 and stricter.min_recurrence == timedelta(hours=2)
    check_job_count(stricter, 10)
    with pytest.raises(QuotaExceeded, match="at most 10 jobs"):
        check_job_count(stricter, 11)
    with pytest.raises(QuotaExceeded, match="every 1 hour"):
        check_recurrence(stricter, Recurrence("hour"))


def test_plan_names_match_in_any_case_and_premium_is_p10() -> None:
    plans = ["Free", "Standard", "P10Premium", "P20Premium"]
    assert canonical_plan("free", plans) == "Free"
    assert canonical_plan("PREMIUM", plans) == "P10Premium"
    assert canonical_plan("gold", plans) is None
