"""The engine's SQL: due jobs, runnable executions, their leases, and when to wake up.

Every query of the tick and the claim is here, each over the caller's session, so that the
node decides what to do and this module only says how it is read or written. On PostgreSQL
rows are locked with SKIP LOCKED, so that nodes never wait for each other; SQLite has one
writer at a time.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.orm import Session

from scheduler.db.bulk import among, update_rows
from scheduler.db.models import COLLECTIONS, EXECUTIONS, JOBS, Execution, Job, JobCollection
from scheduler.domain.states import ExecutionStatus, JobState, Trigger
from scheduler.engine.versions import JobRow
from scheduler.services import executions
from scheduler.services.cloudservices import DELETING
from scheduler.services.collections import STARTED

# Work runs only in a started collection that is not being deleted.
_COLLECTION_RUNS = (JobCollection.state == STARTED, JobCollection.lifecycle != DELETING)
# A job fires only while it is enabled, in such a collection.
_JOB_RUNS = (Job.state == JobState.ENABLED, *_COLLECTION_RUNS)
# An execution runs while its job fires; one started by hand, while its job (if it has one)
# is not disabled.
_EXECUTION_RUNS = and_(*_COLLECTION_RUNS, or_(
    Job.state == JobState.ENABLED,
    and_(Execution.trigger == Trigger.MANUAL,
         or_(Job.id.is_(None), Job.state != JobState.DISABLED))))

# Everything a tick or a claim reads of a job, with its collection's name.
_JOB_COLUMNS = (Job.id, Job.etag, Job.state, Job.job_id, Job.collection_id, JobCollection.name,
                Job.definition, Job.secrets, Job.created_at, Job.next_execution_time,
                Job.execution_count, Job.last_execution_time)

# What a claim reads of each execution it leases.
_LEASED_COLUMNS = (EXECUTIONS.c.id, EXECUTIONS.c.job_pk, EXECUTIONS.c.collection_id,
                   EXECUTIONS.c.action_name, EXECUTIONS.c.attempt, EXECUTIONS.c.repeat_count,
                   EXECUTIONS.c.scheduled_time, EXECUTIONS.c.parameters,
                   EXECUTIONS.c.revision, EXECUTIONS.c.attempts, EXECUTIONS.c.step,
                   EXECUTIONS.c.steps,
                   EXECUTIONS.c.definition, EXECUTIONS.c.secrets)

LeasedRow = Row[*tuple[Any, ...]]


class EngineStore:
    """The statements of one engine node, for SQLite or PostgreSQL."""

    def __init__(self, is_sqlite: bool) -> None:
        self.is_sqlite = is_sqlite

    def due_jobs(self, session: Session, horizon: datetime, limit: int) -> list[JobRow]:
        """Up to `limit` jobs due by `horizon`, earliest first, locked for this tick."""
        query = (
            select(*_JOB_COLUMNS)
            .join(JobCollection, JobCollection.id == Job.collection_id)
            .where(Job.next_execution_time <= horizon, *_JOB_RUNS)
            .order_by(Job.next_execution_time)
            .limit(limit)
        )
        if not self.is_sqlite:
            query = query.with_for_update(of=Job, skip_locked=True)
        return list(session.execute(query).all())

    @staticmethod
    def any_due(session: Session, horizon: datetime) -> bool:
        """Whether any job may be due by `horizon`: a read that takes no lock, so that a
        pass with nothing to make opens no write transaction."""
        return session.scalar(select(Job.id).where(
            Job.next_execution_time <= horizon, Job.state == JobState.ENABLED).limit(1)
        ) is not None

    @staticmethod
    def any_runnable(session: Session, now: datetime) -> bool:
        """Whether any execution may be runnable at `now`, read without a lock."""
        return session.scalar(select(Execution.id).where(executions.runnable(now)).limit(1)
                              ) is not None

    @staticmethod
    def move_jobs_on(session: Session, moves: list[dict[str, Any]]) -> None:
        """Write each job's counters and next fire time, all in one statement."""
        update_rows(session.connection(), JOBS, "id", moves)

    def runnable_executions(self, session: Session, now: datetime, limit: int
                            ) -> list[tuple[str, bool]]:
        """Up to `limit` executions runnable at `now`, locked, each with whether its job may
        still run."""
        query = (select(Execution.id, _EXECUTION_RUNS.label("runs"))
                 .outerjoin(Job, Job.id == Execution.job_pk)
                 .join(JobCollection, JobCollection.id == Execution.collection_id)
                 .where(executions.runnable(now))
                 .order_by(Execution.next_attempt_at).limit(limit))
        if not self.is_sqlite:
            query = query.with_for_update(of=Execution, skip_locked=True)
        return [(row.id, bool(row.runs)) for row in session.execute(query)]

    @staticmethod
    def lease_executions(session: Session, ids: Collection[str], node: str, until: datetime,
                         now: datetime) -> list[LeasedRow]:
        """Mark executions running on `node`, leased until `until`; returns what running
        them needs (their `parameters` and `steps` still JSON text)."""
        dialect = session.get_bind().dialect.name
        return list(session.execute(
            update(EXECUTIONS).where(among(dialect, EXECUTIONS.c.id, ids)).values(
                status=ExecutionStatus.RUNNING, node=node,
                revision=EXECUTIONS.c.revision + 1,
                **executions.LEASES.taken(node, until),
                start_time=func.coalesce(EXECUTIONS.c.start_time, now))
            .returning(*_LEASED_COLUMNS)).all())

    @staticmethod
    def collection_names(session: Session, collection_ids: Collection[int]) -> dict[int, str]:
        """The names of these collections, by id."""
        dialect = session.get_bind().dialect.name
        return dict(session.execute(select(JobCollection.id, JobCollection.name).where(
            among(dialect, COLLECTIONS.c.id, collection_ids))).all())

    @staticmethod
    def jobs(session: Session, job_pks: Collection[int]) -> list[JobRow]:
        """These jobs, read as a tick reads them."""
        dialect = session.get_bind().dialect.name
        return list(session.execute(
            select(*_JOB_COLUMNS).join(JobCollection, JobCollection.id == Job.collection_id)
            .where(among(dialect, JOBS.c.id, job_pks))).all())

    @staticmethod
    def mark_jobs_run(session: Session, job_pks: Collection[int], now: datetime) -> None:
        """Set the last execution time of jobs whose executions a claim leased."""
        dialect = session.get_bind().dialect.name
        session.execute(update(JOBS).where(among(dialect, JOBS.c.id, job_pks))
                        .values(last_execution_time=now))

    @staticmethod
    def running_etags(session: Session, job_pks: Collection[int]) -> dict[int, str]:
        """Of these jobs, those that may still run, with their etags now."""
        dialect = session.get_bind().dialect.name
        return dict(session.execute(
            select(Job.id, Job.etag).join(JobCollection, JobCollection.id == Job.collection_id)
            .where(among(dialect, JOBS.c.id, job_pks), *_JOB_RUNS)).all())

    @staticmethod
    def next_times(session: Session) -> tuple[datetime | None, datetime | None,
                                              datetime | None]:
        """The earliest fire time of an enabled job, next attempt of a pending execution and
        lease end of a running one."""
        job_time = session.scalar(select(func.min(Job.next_execution_time)).where(
            Job.state == JobState.ENABLED))
        attempt_time = session.scalar(select(func.min(Execution.next_attempt_at)).where(
            Execution.status == ExecutionStatus.PENDING))
        lease_time = session.scalar(select(func.min(Execution.lease_until)).where(
            Execution.status == ExecutionStatus.RUNNING))
        return job_time, attempt_time, lease_time

    @staticmethod
    def extend_leases(session: Session, execution_ids: Collection[str], node: str,
                      until: datetime) -> set[str]:
        """Extend the leases `node` still holds on these executions; returns those."""
        return set(session.scalars(executions.LEASES.extend(
            session.get_bind().dialect.name, execution_ids, node, until)
            .returning(EXECUTIONS.c.id)))

    @staticmethod
    def not_held(session: Session, execution_ids: Collection[str], node: str) -> set[str]:
        """Of these executions, those `node` no longer holds (canceled, or taken over)."""
        dialect = session.get_bind().dialect.name
        held = set(session.scalars(select(Execution.id).where(
            among(dialect, EXECUTIONS.c.id, execution_ids),
            executions.LEASES.held_by(node))))
        return set(execution_ids) - held


def parameters_of(row: LeasedRow) -> Mapping[str, Any]:
    """The run-time parameters a leased execution was made with."""
    parameters: Mapping[str, Any] = json.loads(row.parameters or "{}")
    return parameters
