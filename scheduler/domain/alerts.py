"""Alert rules of jobs: which of a job's events are worth telling someone, and what each
alert says.

A job's `alerts` (or its collection's default) names the events to alert on and the
channels that hear of them. Each alert is made once per job, event and occurrence (its key),
whichever node notices it, and is then delivered to its channels with retries.

- `failed`: an occurrence ended failed, after its retries; with `after_consecutive` N, only
  the Nth failure in a row alerts, and the failures after it alert again no sooner than
  `realert` after the last alert (never, without `realert`), until a success ends the streak.
- `recovered`: an occurrence succeeded after a streak of failures long enough to alert.
- `faulted`: the job was faulted (it fires no more until changed or enabled again).
- `missed`: occurrences passed while no engine ran and were recorded missed; one alert per
  job and stretch of downtime, however many occurrences it missed.
- `late`: an execution's first attempt started more than `late_by` after its time.
- `durationOver`: an attempt took longer than `duration_over` (it is not failed for it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from scheduler.domain.durations import Duration
from scheduler.domain.states import ExecutionStatus

# Channels an alert rule may name, at most; a collection holds at most 20 channels anyway.
MAX_RULE_CHANNELS = 20
MAX_AFTER_CONSECUTIVE = 1000
# How often a channel is tried, at most, and how long to wait between tries: the first
# retry after `FIRST_RETRY`, each next one twice as long, never longer than `LONGEST_RETRY`.
MAX_DELIVERY_ATTEMPTS = 6
FIRST_RETRY = timedelta(seconds=10)
LONGEST_RETRY = timedelta(minutes=10)


class AlertEvent(StrEnum):
    """What happened to a job that an alert tells."""

    FAILED = "failed"
    FAULTED = "faulted"
    MISSED = "missed"
    LATE = "late"
    RECOVERED = "recovered"
    DURATION_OVER = "durationOver"


class AlertStatus(StrEnum):
    """Where an alert's delivery stands."""

    PENDING = "pending"  # some channel is still to be tried
    SENT = "sent"  # every channel took it
    FAILED = "failed"  # some channel still refused it after the last try


@dataclass(frozen=True, slots=True)
class AlertRules:
    """A job's alert rules: the events that alert, the channels (by name) that hear of
    them, and the thresholds of `failed`, `late` and `durationOver`."""

    on: frozenset[AlertEvent]
    channels: tuple[str, ...]
    after_consecutive: int = 1
    late_by: Duration | None = None
    duration_over: Duration | None = None
    realert: Duration | None = None

    def alerts_on(self, event: AlertEvent) -> bool:
        """Whether the event alerts."""
        return event in self.on


@dataclass(slots=True)
class Streak:
    """A job's run of occurrences that ended failed, as its alerts count it: how many in a
    row, and when the last `failed` alert of the streak was made (None: none yet)."""

    failures: int = 0
    alerted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Ending:
    """An attempt of a job as its alerts see it: its execution, the occurrence's time, when
    the attempt started and ended, whether its start is held to the occurrence's time (the
    execution's first attempt, but not of a backfill, whose occurrences are past by design),
    and the status the execution ended in (None: still open, to be retried or to go on)."""

    job_pk: int
    execution_id: str
    scheduled_time: datetime
    started: datetime
    ended: datetime
    timed: bool
    final_status: str | None
    faulted: bool = False  # the job was faulted by it
    message: str = ""  # what the attempt said


@dataclass(frozen=True, slots=True)
class Alert:
    """An event worth an alert: its job, event, key (unique per job and event), execution
    and the facts its message tells."""

    job_pk: int
    event: AlertEvent
    occurrence: str
    execution_id: str | None
    facts: dict[str, object] = field(default_factory=dict)


def after_attempt(rules: AlertRules, streak: Streak, ending: Ending) -> list[Alert]:
    """The alerts one recorded attempt makes under `rules`, the job's `streak` brought up
    to date."""
    alerts: list[Alert] = []
    if ending.timed and rules.late_by is not None \
            and rules.alerts_on(AlertEvent.LATE):
        late = ending.started - ending.scheduled_time
        if late > rules.late_by.value:
            alerts.append(_alert(ending, AlertEvent.LATE, {"late_by_seconds": _seconds(late)}))
    took = ending.ended - ending.started
    if rules.duration_over is not None and rules.alerts_on(AlertEvent.DURATION_OVER) \
            and took > rules.duration_over.value:
        alerts.append(_alert(ending, AlertEvent.DURATION_OVER,
                             {"duration_seconds": _seconds(took)},
                             occurrence=f"{ending.execution_id}@{ending.started.isoformat()}"))
    if ending.final_status == ExecutionStatus.FAILED:
        alerts.extend(_failure(rules, streak, ending))
    elif ending.final_status == ExecutionStatus.COMPLETED:
        alerts.extend(_success(rules, streak, ending))
    if ending.faulted and rules.alerts_on(AlertEvent.FAULTED):
        alerts.append(_alert(ending, AlertEvent.FAULTED, {"message": ending.message}))
    return alerts


def _failure(rules: AlertRules, streak: Streak, ending: Ending) -> Iterable[Alert]:
    """A failure adds to the streak; the Nth in a row alerts, and then one per `realert`."""
    streak.failures += 1
    if not rules.alerts_on(AlertEvent.FAILED) or streak.failures < rules.after_consecutive:
        return []
    if streak.alerted_at is not None and (
            rules.realert is None or ending.ended - streak.alerted_at < rules.realert.value):
        return []
    streak.alerted_at = ending.ended
    return [_alert(ending, AlertEvent.FAILED, {"consecutive_failures": streak.failures,
                                               "message": ending.message})]


def _success(rules: AlertRules, streak: Streak, ending: Ending) -> Iterable[Alert]:
    """A success ends the streak; one long enough to alert makes a `recovered`."""
    failures, streak.failures, streak.alerted_at = streak.failures, 0, None
    if failures < rules.after_consecutive or failures == 0 \
            or not rules.alerts_on(AlertEvent.RECOVERED):
        return []
    return [_alert(ending, AlertEvent.RECOVERED, {"failures_before": failures})]


def missed_alert(job_pk: int, first: datetime, last: datetime, count: int) -> Alert:
    """The alert of occurrences a job missed in one stretch of downtime: one per stretch,
    keyed by its first occurrence."""
    return Alert(job_pk, AlertEvent.MISSED, f"missed@{first.isoformat()}", None,
                 {"missed": count, "first_missed": first, "last_missed": last})


def not_started_alert(rules: AlertRules, job_pk: int, execution_id: str,
                      scheduled: datetime, now: datetime) -> Alert | None:
    """The `late` alert of an execution no attempt has started `late_by` after its time
    (None while it is not that late): keyed as the alert of its first attempt's late start
    is, so that the execution alerts once either way."""
    if rules.late_by is None or not rules.alerts_on(AlertEvent.LATE):
        return None
    late = now - scheduled
    if late <= rules.late_by.value:
        return None
    return Alert(job_pk, AlertEvent.LATE, execution_id, execution_id,
                 {"scheduled_time": scheduled, "late_by_seconds": _seconds(late),
                  "not_started": True})


def faulted_alert(job_pk: int, scheduled: datetime, reason: str) -> Alert:
    """The alert of a job faulted because its stored version cannot run."""
    return Alert(job_pk, AlertEvent.FAULTED, f"faulted@{scheduled.isoformat()}", None,
                 {"reason": reason})


def _alert(ending: Ending, event: AlertEvent, facts: dict[str, object],
           occurrence: str | None = None) -> Alert:
    return Alert(ending.job_pk, event, occurrence or ending.execution_id,
                 ending.execution_id, {"scheduled_time": ending.scheduled_time, **facts})


def _seconds(value: timedelta) -> float:
    return round(value.total_seconds(), 3)


def wire_facts(facts: Mapping[str, object]) -> dict[str, object]:
    """An alert's facts as its messages and the API write them: camelCase, empty ones left
    out."""
    return {_camel(key): value for key, value in facts.items()
            if value is not None and value != ""}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def retry_after(attempts: int) -> timedelta:
    """How long a channel that refused an alert waits before its next try, after
    `attempts` tries."""
    wait: timedelta = FIRST_RETRY * (2 ** max(0, attempts - 1))
    return min(wait, LONGEST_RETRY)


# --- words -----------------------------------------------------------------------------------

_SUBJECTS = {
    AlertEvent.FAILED: "Job {job} failed",
    AlertEvent.RECOVERED: "Job {job} recovered",
    AlertEvent.FAULTED: "Job {job} is faulted",
    AlertEvent.MISSED: "Job {job} missed occurrences",
    AlertEvent.LATE: "Job {job} started late",
    AlertEvent.DURATION_OVER: "Job {job} ran long",
}


def alert_subject(event: AlertEvent, job: str, collection: str) -> str:
    """An alert's subject line."""
    return _SUBJECTS[event].format(job=job) + f" in {collection}"


def alert_text(event: AlertEvent, job: str, facts: dict[str, object]) -> str:
    """What an alert says, in a sentence or two."""
    if event is AlertEvent.FAILED:
        count = facts.get("consecutive_failures", 1)
        text = (f"The job {job} failed {count} times in a row." if count != 1
                else f"The job {job} failed.")
    elif event is AlertEvent.RECOVERED:
        text = (f"The job {job} succeeded again after {facts.get('failures_before')} "
                "failures in a row.")
    elif event is AlertEvent.FAULTED:
        text = f"The job {job} is faulted: it fires no more until it is changed or enabled."
        if facts.get("reason"):
            text += f" {facts['reason']}"
    elif event is AlertEvent.MISSED:
        text = (f"The job {job} missed {facts.get('missed')} occurrences while no engine "
                "ran.")
    elif event is AlertEvent.LATE and facts.get("not_started"):
        text = (f"The job {job} had not started {facts.get('late_by_seconds')} s after its "
                "time.")
    elif event is AlertEvent.LATE:
        text = (f"The job {job} started {facts.get('late_by_seconds')} s after its time.")
    else:
        text = f"An attempt of the job {job} took {facts.get('duration_seconds')} s."
    if facts.get("message"):
        text += f" Its last attempt said: {facts['message']}"
    return text
