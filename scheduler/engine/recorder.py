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


# Built once per dialect: a tick inserts every execution it makes with one statement.
_INSERT = {
    name: insert(Execution)
    .on_conflict_do_nothing(index_elements=["job_pk", "scheduled_time"])
    .returning(Execution.job_pk, Execution.scheduled_time)
    for name, insert in (("postgresql", postgresql_insert), ("sqlite", sqlite_insert))
}


def insert_executions(session: Session, rows: list[dict[str, Any]]
                      ) -> set[tuple[int, datetime]]:
    """Insert executions, skipping any (job, scheduled time) that exists; returns the
    (job, scheduled time) of those inserted. The unique key is what makes firing twice
    impossible."""
    if not rows:
        return set()
    statement = _INSERT[session.get_bind().dialect.name]
    result = session.connection().execute(statement, rows)
    return {(int(job_pk), scheduled) for job_pk, scheduled in result}


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


def record_attempts(session: Session,
                    finished: list[tuple[AttemptRecord, Mapping[str, Any]]]) -> None:
    """Store attempts' outcomes and decide what comes next for each: done, retry, error action.

    The executions, their jobs and the jobs' open executions are read in three queries for
    the whole batch.
    """
    ids = [record.execution_id for record, _ in finished]
    executions = {e.id: e for e in session.scalars(
        select(Execution).where(Execution.id.in_(ids)).with_for_update())}
    job_pks = {e.job_pk for e in executions.values()}
    jobs = {j.id: j for j in session.scalars(
        select(Job).where(Job.id.in_(job_pks)).with_for_update())}
    still_open: dict[int, int] = {
        int(job_pk): int(count) for job_pk, count in session.execute(
            select(Execution.job_pk, func.count()).where(
                Execution.job_pk.in_(job_pks), Execution.status.in_(OPEN_STATUSES))
            .group_by(Execution.job_pk))}
    batch = _Batch(session, still_open)
    for record, document in finished:
        execution = executions.get(record.execution_id)
        if execution is None or execution.status != RUNNING \
                or execution.lease_owner != record.node:
            continue  # the lease ran out and another node took the execution over
        job = jobs.get(execution.job_pk)
        if job is not None:
            batch.record(job, execution, record, document)


@dataclass
class _Batch:
    """Recording one batch: the session, and how many executions each job still has open."""

    session: Session
    still_open: dict[int, int]

    def record(self, job: Job, execution: Execution, record: AttemptRecord,
               document: Mapping[str, Any]) -> None:
        outcome = record.outcome
        self.session.add(HistoryEntry(
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
            self.finish(job, execution, COMPLETED if execution.action_name == MAIN_ACTION
                        else FAILED, record.ended)
            return
        job.failure_count += 1
        self.after_failure(job, execution, document, record.ended)

    def after_failure(self, job: Job, execution: Execution, document: Mapping[str, Any],
                      ended: datetime) -> None:
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
        self.finish(job, execution, FAILED, ended)

    def finish(self, job: Job, execution: Execution, status: str, ended: datetime) -> None:
        """Close the execution; a job with no occurrence left ends completed or faulted."""
        execution.status, execution.end_time, execution.next_attempt_at = status, ended, None
        self.still_open[job.id] = self.still_open.get(job.id, 1) - 1
        if job.next_execution_time is not None or job.state not in ("enabled", "disabled"):
            return
        if self.still_open[job.id] <= 0:
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
