"""Writing what happened: executions created, attempts recorded, retries scheduled, jobs ended."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from scheduler.actions.http import HttpOutcome
from scheduler.db.models import Execution, HistoryEntry, Job
from scheduler.engine.definition import ERROR_ACTION, MAIN_ACTION, action_named, retry_policy

PENDING, RUNNING, COMPLETED, FAILED, MISSED = (
    "pending", "running", "completed", "failed", "missed")
OPEN_STATUSES = (PENDING, RUNNING)


def new_execution_id() -> str:
    """An execution id; it is also the `x-ms-execution-tag` receivers de-duplicate on."""
    return uuid.uuid4().hex


def insert_execution(session: Session, row: dict[str, Any]) -> bool:
    """Insert an execution unless its (job, scheduled time) exists; whether it was new."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(Execution).values(**row).on_conflict_do_nothing(
        index_elements=["job_pk", "scheduled_time"])
    return bool(session.connection().execute(statement).rowcount)


def missed_history(job: Job, scheduled: datetime, fired_at: datetime, now: datetime
                   ) -> HistoryEntry:
    """The history entry of an occurrence the service missed."""
    return HistoryEntry(
        job_pk=job.id, timestamp=now, start_time=now, end_time=now,
        expected_execution_time=scheduled, state=job.state, status=MISSED,
        action_name=MAIN_ACTION, retry_count=0, repeat_count=job.execution_count,
        message=(f"Missed: the occurrence due at {scheduled.isoformat()} passed while the "
                 f"service was not running; the job fired once, for {fired_at.isoformat()}, "
                 "for all the occurrences it missed."),
    )


@dataclass
class AttemptRecord:
    """One finished attempt, as the engine reports it."""

    execution_id: str
    node: str
    outcome: HttpOutcome
    started: datetime
    ended: datetime


def record_attempt(session: Session, record: AttemptRecord, document: Mapping[str, Any]
                   ) -> None:
    """Store an attempt's outcome and decide what comes next: done, retry, error action."""
    execution = session.get(Execution, record.execution_id, with_for_update=True)
    if execution is None or execution.status != RUNNING or execution.lease_owner != record.node:
        return  # the lease ran out and another node took the execution over
    job = session.get(Job, execution.job_pk, with_for_update=True)
    if job is None:
        return
    outcome = record.outcome
    session.add(HistoryEntry(
        job_pk=job.id, timestamp=record.started, start_time=record.started,
        end_time=record.ended, expected_execution_time=execution.scheduled_time,
        state=job.state, status=COMPLETED if outcome.success else FAILED,
        action_name=execution.action_name, message=outcome.message,
        retry_count=execution.attempt, repeat_count=execution.repeat_count,
    ))
    execution.message = outcome.message
    execution.output = json.dumps({
        "statusCode": outcome.status_code, "reasonPhrase": outcome.reason,
        "headers": outcome.headers, "body": outcome.body})
    execution.lease_owner = execution.lease_until = None
    if outcome.success:
        _finish(session, job, execution, COMPLETED if execution.action_name == MAIN_ACTION
                else FAILED, record.ended)
        return
    job.failure_count += 1
    _after_failure(session, job, execution, document, record.ended)


def _after_failure(session: Session, job: Job, execution: Execution,
                   document: Mapping[str, Any], ended: datetime) -> None:
    action = action_named(document, execution.action_name) or {}
    delay = retry_policy(action).delay_before(execution.attempt + 1)
    if delay is not None:
        execution.status, execution.attempt = PENDING, execution.attempt + 1
        execution.next_attempt_at = ended + delay
        return
    if execution.action_name == MAIN_ACTION:
        job.faulted_count += 1
        if action_named(document, ERROR_ACTION) is not None:
            execution.status, execution.action_name, execution.attempt = (
                PENDING, ERROR_ACTION, 0)
            execution.next_attempt_at = ended
            return
    _finish(session, job, execution, FAILED, ended)


def _finish(session: Session, job: Job, execution: Execution, status: str,
            ended: datetime) -> None:
    """Close the execution; a job with no occurrence left ends completed or faulted."""
    execution.status, execution.end_time, execution.next_attempt_at = status, ended, None
    if job.next_execution_time is not None or job.state not in ("enabled", "disabled"):
        return
    still_open = session.scalar(select(func.count()).select_from(Execution).where(
        Execution.job_pk == job.id, Execution.status.in_(OPEN_STATUSES),
        Execution.id != execution.id))
    if not still_open:
        job.state = "completed" if status == COMPLETED else "faulted"


def runnable(now: datetime) -> Any:
    """Executions to run now: pending and due, or running on a node whose lease ran out."""
    return or_(
        and_(Execution.status == PENDING, Execution.next_attempt_at <= now),
        and_(Execution.status == RUNNING, Execution.lease_until < now),
    )


FINAL_STATUSES = (COMPLETED, FAILED, MISSED, "canceled")


def prune_history(session: Session, now: datetime, keep: int, max_age: timedelta) -> int:
    """Drop history entries and finished executions older than `max_age`, and all but each
    job's newest `keep` of either; returns how many rows went."""
    removed = 0
    # Each table with: its time, an order that is unique per job, and what may go at all.
    for model, moment, order, final in (
        (HistoryEntry, HistoryEntry.timestamp, HistoryEntry.id, None),
        (Execution, Execution.created_at, Execution.scheduled_time,
         Execution.status.in_(FINAL_STATUSES)),
    ):
        aged = moment < now - max_age
        removed += _delete(session, delete(model).where(aged if final is None
                                                        else and_(aged, final)))
        crowded = session.scalars(select(model.job_pk).group_by(model.job_pk)
                                  .having(func.count() > keep)).all()
        for job_pk in crowded:
            cutoff = session.scalar(select(order).where(model.job_pk == job_pk)
                                    .order_by(order.desc()).offset(keep).limit(1))
            condition = and_(model.job_pk == job_pk, order <= cutoff)
            removed += _delete(session, delete(model).where(
                condition if final is None else and_(condition, final)))
    return removed


def _delete(session: Session, statement: Any) -> int:
    result: Any = session.execute(statement)
    return int(result.rowcount or 0)
