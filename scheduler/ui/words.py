"""Schedules, times and spans in the words the dashboard shows them in."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler.domain.catch_up import ALL, LATEST, NONE, CatchUp
from scheduler.domain.cron import describe_cron
from scheduler.domain.executions import MAIN_ACTION
from scheduler.domain.jobs import JobDefinition
from scheduler.domain.overlap import Overlap
from scheduler.domain.recurrence import Recurrence
from scheduler.settings import Settings

_ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", -1: "last"}


def schedule_in_words(start: datetime | None, recurrence: Recurrence | None) -> str:
    """`every 5 minutes`, `every day at 02:30, 14:00 (America/New_York)`, `once at ...`."""
    if recurrence is None:
        return f"once, at {start:%Y-%m-%d %H:%M:%S} UTC" if start else "once, at once"
    expression = recurrence.cron_expression
    parts = [_steps_in_words(recurrence) if expression is None else describe_cron(expression)]
    if recurrence.count is not None:
        parts.append(f"{recurrence.count} times")
    if recurrence.end_time is not None:
        parts.append(f"until {recurrence.end_time:%Y-%m-%d %H:%M} UTC")
    if recurrence.jitter is not None:
        parts.append(f"each up to {span(recurrence.jitter.value)} later")
    return " ".join(parts) + f" ({recurrence.time_zone})"


def _steps_in_words(recurrence: Recurrence) -> str:
    """A frequency, its interval and its schedule: `every 2 days at 02:30`."""
    unit = recurrence.frequency
    every = f"every {unit}" if recurrence.interval == 1 else \
        f"every {recurrence.interval} {unit}s"
    parts = [every]
    schedule = recurrence.schedule
    if schedule.week_days:
        parts.append("on " + ", ".join(day.capitalize() for day in schedule.week_days))
    if schedule.month_days:
        parts.append("on day " + ", ".join(str(day) for day in schedule.month_days))
    for occurrence in schedule.monthly_occurrences:
        nth = _ORDINALS.get(occurrence.occurrence, f"#{occurrence.occurrence}")
        parts.append(f"on the {nth} {occurrence.day.capitalize()}")
    if schedule.months:
        parts.append("in months " + ", ".join(str(month) for month in schedule.months))
    if schedule.hours or schedule.minutes:
        hours = schedule.hours or (0,)
        minutes = schedule.minutes or (0,)
        if schedule.hours:
            parts.append("at " + ", ".join(f"{h:02d}:{m:02d}" for h in hours for m in minutes))
        else:
            parts.append("at minute " + ", ".join(str(m) for m in minutes))
    return " ".join(parts)


def attempt_timeout(definition: JobDefinition | None, settings: Settings) -> str:
    """How long an attempt of the job's (first) action may take, and whether the job or the
    service's default says so."""
    stage = None if definition is None else definition.stage(MAIN_ACTION, 0)
    default = timedelta(seconds=settings.engine.timeout_seconds)
    longest = settings.outbound.longest_timeout
    if stage is None or stage.timeout is None:
        return f"{span(min(default, longest))} (the service's default)"
    return f"{span(min(stage.timeout, longest))} per attempt"


# A job's `concurrencyPolicy` in words, but `allow` (Azure's way, the default).
OVERLAP_WORDS = {
    Overlap.SKIP: "skip a new run while another of the job is open",
    Overlap.BUFFER_ONE: "a new run waits behind the open one; at most one waits, others are "
                        "skipped",
    Overlap.BUFFER_ALL: "each new run waits its turn behind the open ones",
    Overlap.REPLACE: "a new run cancels the open one and runs",
}
# A catch-up policy in words.
CATCH_UP_WORDS = {LATEST: "after an outage, run the latest missed occurrence once",
                  ALL: "after an outage, run every missed occurrence",
                  NONE: "after an outage, run none of the missed occurrences"}


def overlap_in_words(policy: Overlap) -> str:
    """`skip a new run while another of the job is open (skip)`; `allow` reads so too."""
    return f"{OVERLAP_WORDS.get(policy, 'runs may overlap')} ({policy.value})"


def catch_up_in_words(catch_up: CatchUp) -> str:
    """`after an outage, run every missed occurrence, at most 10 at once, none older than
    1 d`."""
    parts = [CATCH_UP_WORDS.get(catch_up.policy, catch_up.policy)]
    if catch_up.policy == ALL:
        parts.append(f"at most {catch_up.runs_at_most} at once")
    if catch_up.window is not None:
        parts.append(f"none older than {span(catch_up.window.value)}")
    return ", ".join(parts) + f" ({catch_up.policy})"


def policies(definition: JobDefinition | None, disabled_until: datetime | None,
             settings: Settings, now: datetime, zone: ZoneInfo | None = None
             ) -> dict[str, str]:
    """The scheduling policies a job sets, in words by name; none it leaves to the
    service's defaults."""
    if definition is None:
        return {}
    found: list[tuple[str, str]] = []
    if definition.concurrency_policy is not Overlap.ALLOW:
        found.append(("Overlapping runs", overlap_in_words(definition.concurrency_policy)))
    if definition.catch_up is not None:
        found.append(("Missed runs", catch_up_in_words(definition.catch_up)))
    recurrence = definition.recurrence
    if recurrence is not None and recurrence.cron is not None:
        found.append(("Cron", recurrence.cron))
    if recurrence is not None and recurrence.jitter is not None:
        found.append(("Jitter", f"each run up to {span(recurrence.jitter.value)} later "
                                "than its time"))
    if recurrence is not None and recurrence.exclude_calendars:
        found.append(("Excluded calendars", ", ".join(recurrence.exclude_calendars)))
    stage = definition.stage(MAIN_ACTION, 0)
    if stage is not None and stage.timeout is not None:
        found.append(("Timeout", attempt_timeout(definition, settings)))
    if definition.run_on:
        found.append(("Runs on", "the engine nodes " + ", ".join(definition.run_on)))
    if disabled_until is not None:
        found.append(("Disabled until", f"{absolute(disabled_until, zone)} "
                                        f"({relative(disabled_until, now)})"))
    return dict(found)


def zone_of(recurrence: Recurrence | None) -> ZoneInfo:
    """The zone a job's schedule is written in."""
    return ZoneInfo(recurrence.time_zone if recurrence is not None else "UTC")


def span(value: timedelta | None) -> str:
    """A span, short: `340 ms`, `12 s`, `4 min 10 s`, `3 h 5 min`, `2 d 4 h`."""
    if value is None:
        return "—"
    seconds = value.total_seconds()
    if seconds < 0:
        return "-" + span(-value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def relative(moment: datetime | None, now: datetime) -> str:
    """`in 4 min`, `12 s ago`, `now`."""
    if moment is None:
        return "—"
    delta = moment - now
    if abs(delta) < timedelta(seconds=1):
        return "now"
    return f"in {span(delta)}" if delta > timedelta(0) else f"{span(-delta)} ago"


def offset(moment: datetime) -> str:
    """A time's UTC offset: `UTC-04:00`."""
    value = moment.utcoffset() or timedelta(0)
    sign = "-" if value < timedelta(0) else "+"
    minutes = abs(int(value.total_seconds() // 60))
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def absolute(moment: datetime | None, zone: ZoneInfo | None = None) -> str:
    """A time in a zone (UTC by default), to the second, with its offset."""
    if moment is None:
        return "—"
    local = moment.astimezone(zone or ZoneInfo("UTC"))
    return f"{local:%Y-%m-%d %H:%M:%S} {offset(local)}"


def iso(moment: datetime | None) -> str:
    """A time as ISO 8601 UTC, for `<time datetime>` (the browser shows it in its zone)."""
    return "" if moment is None else f"{moment.astimezone(ZoneInfo('UTC')):%Y-%m-%dT%H:%M:%SZ}"


def disabled_in_words(until: datetime | None, now: datetime, zone: ZoneInfo | None = None
                      ) -> str:
    """`disabled`, or, for a job that waits to be enabled again, `disabled until 2027-01-04
    09:00:00 UTC+00:00 (in 3 d 2 h)`, in the job's zone (UTC by default)."""
    if until is None:
        return "disabled"
    return f"disabled until {absolute(until, zone)} ({relative(until, now)})"
