"""Alerts made as a node records what happened: in the very transaction that records an
attempt, a tick's missed occurrences or a fault, so that an event is seen once, by the node
that recorded it; the unique key of job, event and occurrence keeps it to one alert even so.

A job's rules are its own `alerts`, or else its collection's default. Jobs with neither cost
the recording one read of the defaults per batch and nothing more. Delivery is the courier's
(`courier.py`), later and apart: making an alert never waits for a channel.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from scheduler.db.alerts import Unstarted
from scheduler.domain.alerts import (
    Alert,
    AlertEvent,
    AlertRules,
    Ending,
    Streak,
    after_attempt,
    faulted_alert,
    missed_alert,
    not_started_alert,
)
from scheduler.domain.states import JobState, Trigger
from scheduler.engine.recorder import AttemptRecord
from scheduler.engine.store import EngineStore, Outcomes, Transaction

# The events that follow a job's streak of failures: only jobs that alert on one keep it.
STREAK_EVENTS = frozenset({AlertEvent.FAILED, AlertEvent.RECOVERED})


def rules_of(session: Transaction, own: Mapping[int, AlertRules | None]
             ) -> dict[int, AlertRules]:
    """The alert rules of these jobs (each with its own, or None): its own, or else its
    collection's default; jobs whose rules alert on nothing are left out."""
    inheriting = [job_pk for job_pk, rules in own.items() if rules is None]
    defaults = EngineStore.default_alert_rules(session.connection(), inheriting) \
        if inheriting else {}
    found: dict[int, AlertRules] = {}
    for job_pk, rules in own.items():
        if rules is None and job_pk in defaults:
            rules = EngineStore.load_alert_rules(defaults[job_pk])
        if rules is not None and rules.on:
            found[job_pk] = rules
    return found


def alerts_of_attempts(session: Transaction, records: list[AttemptRecord],
                       outcomes: Outcomes, now: datetime) -> int:
    """Make the alerts recorded attempts call for, and keep their jobs' streaks; returns
    how many were made."""
    rules = rules_of(session, {record.job_pk: record.definition.alerts
                               for record in records if record.job_pk is not None})
    if not rules:
        return 0
    rows = {row["id"]: row for row in outcomes.executions}
    endings = _endings([r for r in records if r.job_pk in rules], rows, outcomes.ended)
    conn = session.connection()
    streaked = {job_pk for job_pk, found in rules.items() if found.on & STREAK_EVENTS}
    streaks = EngineStore.alert_streaks(conn, streaked)
    before = {job_pk: (streak.failures, streak.alerted_at) for job_pk, streak in streaks.items()}
    made: list[Alert] = []
    for ending in endings:
        # Only the jobs whose rules follow a streak keep one.
        streak = streaks.setdefault(ending.job_pk, Streak()) \
            if ending.job_pk in streaked else Streak()
        made.extend(after_attempt(rules[ending.job_pk], streak, ending))
    changed = {job_pk: streak for job_pk, streak in streaks.items()
               if (streak.failures, streak.alerted_at) != before.get(job_pk, (0, None))}
    EngineStore.write_alert_streaks(conn, changed)
    return len(insert(session, made, rules, now))


def _endings(records: Iterable[AttemptRecord], rows: Mapping[str, Mapping[str, Any]],
             ended_jobs: Mapping[int, str]) -> list[Ending]:
    """The attempts as alert rules see them, in the order they ended; a job that ended
    faulted is faulted by its execution that ended last."""
    endings: list[Ending] = []
    faulting: dict[int, int] = {}  # job -> the index of its last ending that closed a run
    for record in sorted(records, key=lambda r: r.ended):
        row = rows.get(record.execution_id)
        if row is None or record.job_pk is None:
            continue
        final = row["status"] if row.get("end_time") is not None else None
        if final is not None and ended_jobs.get(record.job_pk) == JobState.FAULTED:
            faulting[record.job_pk] = len(endings)
        endings.append(Ending(record.job_pk, record.execution_id, record.scheduled_time,
                              record.started, record.ended,
                              record.attempts == 0 and record.trigger != Trigger.BACKFILL,
                              final, message=record.outcome.message))
    for index in faulting.values():
        ending = endings[index]
        endings[index] = Ending(ending.job_pk, ending.execution_id, ending.scheduled_time,
                                ending.started, ending.ended, ending.timed,
                                ending.final_status, True, ending.message)
    return endings


def alerts_of_missed(session: Transaction, missed: Mapping[int, tuple[AlertRules | None,
                                                                     int, datetime, datetime]],
                     now: datetime) -> int:
    """Make one `missed` alert per job that missed occurrences in this tick (its rules,
    how many it missed, the first and the last), for the jobs whose rules ask for it."""
    rules = rules_of(session, {job_pk: found[0] for job_pk, found in missed.items()})
    alerts = [missed_alert(job_pk, first, last, count)
              for job_pk, (_rules, count, first, last) in missed.items()
              if job_pk in rules and rules[job_pk].alerts_on(AlertEvent.MISSED)]
    return len(insert(session, alerts, rules, now))


def alerts_of_faults(session: Transaction, faults: Collection[tuple[int, datetime, str]],
                     now: datetime) -> int:
    """Make the `faulted` alerts of jobs faulted because their stored version cannot run
    (their own rules unread with it: their collection's default decides)."""
    rules = rules_of(session, {job_pk: None for job_pk, _at, _reason in faults})
    alerts = [faulted_alert(job_pk, scheduled, reason)
              for job_pk, scheduled, reason in faults
              if job_pk in rules and rules[job_pk].alerts_on(AlertEvent.FAULTED)]
    return len(insert(session, alerts, rules, now))


def alerts_of_unstarted(session: Transaction, unstarted: list[Unstarted],
                        own: Mapping[int, AlertRules | None], now: datetime) -> int:
    """Make the `late` alerts of executions no attempt has started `lateBy` after their
    time (each job with its own rules, or None), for the jobs whose rules ask for them."""
    rules = rules_of(session, own)
    alerts = [alert for run in unstarted if run.job_pk in rules
              for alert in [not_started_alert(rules[run.job_pk], run.job_pk, run.id,
                                              run.scheduled_time, now)]
              if alert is not None]
    return len(insert(session, alerts, rules, now))


def insert(session: Transaction, alerts: list[Alert], rules: Mapping[int, AlertRules],
           now: datetime) -> list[str]:
    """Store alerts, each to go to its job's channels; returns the ids of those new."""
    if not alerts:
        return []
    return EngineStore.insert_alerts(session.connection(),
                                     [(alert, rules[alert.job_pk].channels)
                                      for alert in alerts], now)
