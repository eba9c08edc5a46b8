"""The engine's SQL: due jobs, runnable executions, their leases, and when to wake up.

Every query of the tick and the claim is here, each over the caller's session, so that the
node decides what to do and this module only says how it is read or written. On PostgreSQL
rows are locked with SKIP LOCKED, so that nodes never wait for each other; SQLite has one
writer at a time.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    String,
    Update,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from scheduler.db.bulk import among, among_bound, among_values, update_rows
from scheduler.db.compiled import CompiledStatement, Record
from scheduler.db.models import (
    CLUSTER_HEARTBEAT,
    COLLECTIONS,
    EXECUTIONS,
    JOBS,
    CloudService,
    Execution,
    Job,
    JobCollection,
    UTCDateTime,
)
from scheduler.domain.states import CollectionState, ExecutionStatus, JobState, Lifecycle, Trigger
from scheduler.engine.versions import JobRow
from scheduler.services import executions
from scheduler.services.leases import Heartbeats

# Work runs only in a started collection that is not being deleted.
_COLLECTION_RUNS = (JobCollection.state == CollectionState.STARTED,
                    JobCollection.lifecycle != Lifecycle.DELETING)
# A job fires only while it is enabled, in such a collection.
_JOB_RUNS = (Job.state == JobState.ENABLED, *_COLLECTION_RUNS)
# An execution runs while its job fires; one started by hand, while its job (if it has one)
# is not disabled.
_EXECUTION_RUNS = and_(*_COLLECTION_RUNS, or_(
    Job.state == JobState.ENABLED,
    and_(Execution.trigger == Trigger.MANUAL,
         or_(Job.id.is_(None), Job.state != JobState.DISABLED))))

# Everything a tick or a claim reads of a job, with its collection's name and its cloud
# service's region.
_JOB_COLUMNS = (Job.id, Job.etag, Job.state, Job.job_id, Job.collection_id, JobCollection.name,
                CloudService.geo_region.label("region"),
                Job.definition, Job.secrets, Job.created_at, Job.next_execution_time,
                Job.execution_count, Job.last_execution_time)
_IN_CLOUD_SERVICE = CloudService.id == JobCollection.cloud_service_id

# What a claim reads of each execution it leases.
_LEASED_COLUMNS = (EXECUTIONS.c.id, EXECUTIONS.c.job_pk, EXECUTIONS.c.collection_id,
                   EXECUTIONS.c.action_name, EXECUTIONS.c.attempt, EXECUTIONS.c.repeat_count,
                   EXECUTIONS.c.scheduled_time, EXECUTIONS.c.parameters,
                   EXECUTIONS.c.revision, EXECUTIONS.c.attempts, EXECUTIONS.c.step,
                   EXECUTIONS.c.steps,
                   EXECUTIONS.c.definition, EXECUTIONS.c.secrets)

LeasedRow = Record
HEARTBEATS = Heartbeats()
# The one row of `cluster_heartbeat`.
_CLUSTER_ROW = 1



def _runnable(dialect: str) -> Select[*tuple[Any, ...]]:
    query = (select(Execution.id, _EXECUTION_RUNS.label("runs"))
             .outerjoin(Job, Job.id == Execution.job_pk)
             .join(JobCollection, JobCollection.id == Execution.collection_id)
             .where(executions.runnable(bindparam("now", type_=UTCDateTime)))
             .order_by(Execution.next_attempt_at).limit(bindparam("limit")))
    if dialect == "postgresql":
        query = query.with_for_update(of=Execution, skip_locked=True)
    return query


def _lease(dialect: str) -> Update:
    node = bindparam("node", type_=String())
    return (update(EXECUTIONS).where(among_bound(dialect, EXECUTIONS.c.id, "ids")).values(
        status=ExecutionStatus.RUNNING, node=node, revision=EXECUTIONS.c.revision + 1,
        **executions.LEASES.taken(node, bindparam("until", type_=UTCDateTime)),
        start_time=func.coalesce(EXECUTIONS.c.start_time,
                                 bindparam("now", type_=UTCDateTime)))
        .returning(*_LEASED_COLUMNS))


def _due_jobs(dialect: str) -> Select[*tuple[Any, ...]]:
    query = (select(*_JOB_COLUMNS)
             .join(JobCollection, JobCollection.id == Job.collection_id)
             .join(CloudService, _IN_CLOUD_SERVICE)
             .where(Job.next_execution_time <= bindparam("horizon", type_=UTCDateTime),
                    *_JOB_RUNS)
             .order_by(Job.next_execution_time).limit(bindparam("limit")))
    if dialect == "postgresql":
        query = query.with_for_update(of=Job, skip_locked=True)
    return query


# The tick's and the claim's statements, each compiled once per dialect.
_DUE_JOBS = CompiledStatement(_due_jobs)
_RUNNABLE = CompiledStatement(_runnable)
_LEASE = CompiledStatement(_lease)
_JOBS = CompiledStatement(lambda dialect: select(*_JOB_COLUMNS)
                          .join(JobCollection, JobCollection.id == Job.collection_id)
                          .join(CloudService, _IN_CLOUD_SERVICE)
                          .where(among_bound(dialect, JOBS.c.id, "ids")))
_RUNNING_ETAGS = CompiledStatement(lambda dialect: select(Job.id, Job.etag)
                                   .join(JobCollection, JobCollection.id == Job.collection_id)
                                   .where(among_bound(dialect, JOBS.c.id, "ids"), *_JOB_RUNS))
_MARK_RUN = CompiledStatement(lambda dialect: update(JOBS).where(
    among_bound(dialect, JOBS.c.id, "ids")).values(
    last_execution_time=bindparam("now", type_=UTCDateTime)))

# A running execution without a lease is anyone's to take: its lease ended long ago.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Glance:
    """The earliest fire time of a job that fires, next attempt of a pending execution and
    lease end of a running one (None: there is none)."""

    job_time: datetime | None
    attempt_time: datetime | None
    lease_time: datetime | None

    def jobs_due(self, horizon: datetime) -> bool:
        """Whether some job is due by `horizon`."""
        return self.job_time is not None and self.job_time <= horizon

    def runnable(self, now: datetime) -> bool:
        """Whether some execution is runnable at `now`: due, or its lease ran out."""
        return ((self.attempt_time is not None and self.attempt_time <= now)
                or (self.lease_time is not None and self.lease_time < now))

    def wakeup(self, lookahead: timedelta) -> datetime | None:
        """The earliest time a node is needed: a job to ready `lookahead` before it is due,
        an attempt to make, a lease to take over."""
        job_time = None if self.job_time is None else self.job_time - lookahead
        times = [t for t in (job_time, self.attempt_time, self.lease_time) if t is not None]
        return min(times) if times else None


# The three of `Glance` in one statement, built once. Each walks an index from its least
# value: the first job due is the first in a collection where it runs, so that the jobs of
# a collection being deleted, which no tick takes, do not keep the node awake.
_GLANCE = CompiledStatement(select(
    select(Job.next_execution_time)
    .join(JobCollection, JobCollection.id == Job.collection_id)
    .where(Job.next_execution_time.is_not(None), *_JOB_RUNS)
    .order_by(Job.next_execution_time).limit(1).scalar_subquery().label("job_time"),
    select(func.min(Execution.next_attempt_at))
    .where(Execution.status == ExecutionStatus.PENDING).scalar_subquery().label("attempt_time"),
    select(func.min(func.coalesce(Execution.lease_until, bindparam("long_ago", type_=UTCDateTime))))
    .where(Execution.status == ExecutionStatus.RUNNING).scalar_subquery().label("lease_time"),
))


class EngineStore:
    """The statements of one engine node, for SQLite or PostgreSQL."""

    def __init__(self, is_sqlite: bool) -> None:
        self.is_sqlite = is_sqlite

    @staticmethod
    def due_jobs(session: Session, horizon: datetime, limit: int) -> list[JobRow]:
        """Up to `limit` jobs due by `horizon`, earliest first, locked for this tick."""
        return list(_DUE_JOBS.all(session.connection(), {"horizon": horizon, "limit": limit}))

    @staticmethod
    def glance(conn: Connection) -> Glance:
        """When the next job falls due and the next execution becomes runnable, in one read
        that takes no lock: a pass with nothing to do opens no write transaction."""
        row = _GLANCE.first(conn, {"long_ago": LONG_AGO})
        assert row is not None  # an aggregate always has its one row
        return Glance(row.job_time, row.attempt_time, row.lease_time)

    @staticmethod
    def move_jobs_on(session: Session, moves: list[dict[str, Any]]) -> None:
        """Write each job's counters and next fire time, all in one statement."""
        update_rows(session.connection(), JOBS, "id", moves)

    @staticmethod
    def runnable_executions(session: Session, now: datetime, limit: int
                            ) -> list[tuple[str, bool]]:
        """Up to `limit` executions runnable at `now`, locked, each with whether its job may
        still run."""
        rows = _RUNNABLE.all(session.connection(), {"now": now, "limit": limit})
        return [(row.id, bool(row.runs)) for row in rows]

    @staticmethod
    def lease_executions(session: Session, ids: Collection[str], node: str, until: datetime,
                         now: datetime) -> list[LeasedRow]:
        """Mark executions running on `node`, leased until `until`; returns what running
        them needs (their `parameters` and `steps` still JSON text)."""
        conn = session.connection()
        return _LEASE.all(conn, {"ids": among_values(conn, EXECUTIONS.c.id, ids),
                                 "node": node, "until": until, "now": now})

    @staticmethod
    def collection_places(session: Session, collection_ids: Collection[int]
                          ) -> dict[int, tuple[str, str]]:
        """The names of these collections and the regions of their cloud services, by id."""
        dialect = session.get_bind().dialect.name
        rows = session.execute(
            select(JobCollection.id, JobCollection.name, CloudService.geo_region)
            .join(CloudService, _IN_CLOUD_SERVICE)
            .where(among(dialect, COLLECTIONS.c.id, collection_ids))).all()
        return {pk: (name, region) for pk, name, region in rows}

    @staticmethod
    def jobs(session: Session, job_pks: Collection[int]) -> list[JobRow]:
        """These jobs, read as a tick reads them."""
        conn = session.connection()
        return list(_JOBS.all(conn, {"ids": among_values(conn, JOBS.c.id, job_pks)}))

    @staticmethod
    def fault_jobs(session: Session, details: Mapping[int, str]) -> None:
        """Park these jobs as faulted, each with its reason as its state details."""
        update_rows(session.connection(), JOBS, "id", [
            {"id": pk, "state": JobState.FAULTED, "state_details": reason[:1024]}
            for pk, reason in details.items()])

    @staticmethod
    def mark_jobs_run(session: Session, job_pks: Collection[int], now: datetime) -> None:
        """Set the last execution time of jobs whose executions a claim leased."""
        if job_pks:
            conn = session.connection()
            _MARK_RUN.execute(conn, {"ids": among_values(conn, JOBS.c.id, job_pks),
                                     "now": now})

    @staticmethod
    def running_etags(session: Session, job_pks: Collection[int]) -> dict[int, str]:
        """Of these jobs, those that may still run, with their etags now."""
        conn = session.connection()
        rows = _RUNNING_ETAGS.all(conn, {"ids": among_values(conn, JOBS.c.id, job_pks)})
        return {row.id: row.etag for row in rows}

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


    @staticmethod
    def heartbeat(session: Session, node: str, now: datetime, dead_before: datetime | None,
                  unsent: Collection[str], unrunnable: Mapping[str, int] | None = None
                  ) -> tuple[int, int]:
        """Renew `node`'s heartbeat, with its `unrunnable` attempts of the last minute; hand
        back the executions of the nodes whose last one came before `dead_before`, if given
        (and forget those nodes), and those of `unsent`, the executions `node` holds but
        could not send. Returns how many of each were handed back."""
        HEARTBEATS.beat(session, node, now, unrunnable)
        dialect = session.get_bind().dialect.name
        taken_over = handed_back = 0
        dead = HEARTBEATS.dead(session, dead_before, node) if dead_before is not None else []
        if dead:
            taken_over = _count(session.execute(executions.LEASES.release_owners(dialect, dead)))
            HEARTBEATS.forget(session, dead)
        if unsent:
            handed_back = _count(session.execute(executions.LEASES.release(dialect, unsent,
                                                                           node)))
        return taken_over, handed_back

    @staticmethod
    def take_over(session: Session, node: str, now: datetime, alive_since: datetime,
                  sole: bool, unrunnable: Mapping[str, int] | None = None) -> int:
        """`node` starts: renew its heartbeat (with its `unrunnable` attempts), and hand back
        the executions of every node whose last heartbeat came before `alive_since`, or that
        has none (with `sole`: of every other node). Returns how many were handed back."""
        HEARTBEATS.beat(session, node, now, unrunnable)
        if sole:
            HEARTBEATS.forget_all_but(session, node)
        live = HEARTBEATS.live(alive_since)
        return _count(session.execute(executions.LEASES.release_unless_owned_by(live)))

    @staticmethod
    def leave(session: Session, node: str) -> None:
        """`node` stops: its heartbeat row goes."""
        HEARTBEATS.forget(session, [node])

    # --- the cluster's heartbeat to an outside monitor ------------------------------------

    @staticmethod
    def ping_due(conn: Connection, due_before: datetime) -> bool:
        """Whether the cluster's last ping to its monitor came at `due_before` or earlier,
        or never, in a read that takes no lock: a node whose try is not due writes nothing."""
        pinged_at = conn.execute(select(CLUSTER_HEARTBEAT.c.pinged_at).where(
            CLUSTER_HEARTBEAT.c.id == _CLUSTER_ROW)).scalar()
        return pinged_at is None or pinged_at <= due_before

    @staticmethod
    def take_ping(session: Session, now: datetime, due_before: datetime) -> int | None:
        """Move the cluster's last ping time to `now` if it came at `due_before` or earlier
        (or never): one conditional UPDATE, so that of nodes trying at once exactly one takes
        the interval's ping. Returns the occurrences recorded as missed since the last ping,
        now reported; None when another node took this interval's ping."""
        conn, table = session.connection(), CLUSTER_HEARTBEAT
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(dialect_insert(table).values(id=_CLUSTER_ROW, pinged_at=None, missed=0)
                     .on_conflict_do_nothing(index_elements=[table.c.id]))
        taken = conn.execute(update(table).where(
            table.c.id == _CLUSTER_ROW,
            or_(table.c.pinged_at.is_(None), table.c.pinged_at <= due_before))
            .values(pinged_at=now).returning(table.c.missed)).first()
        if taken is None:
            return None
        missed = int(taken.missed)
        if missed:  # those recorded meanwhile wait for the next ping
            conn.execute(update(table).where(table.c.id == _CLUSTER_ROW)
                         .values(missed=table.c.missed - missed))
        return missed

    @staticmethod
    def count_missed(session: Session, missed: int) -> None:
        """Add occurrences recorded as missed to those the next ping reports."""
        table = CLUSTER_HEARTBEAT
        session.connection().execute(update(table).where(table.c.id == _CLUSTER_ROW)
                                     .values(missed=table.c.missed + missed))


def _count(result: Any) -> int:
    """The number of rows a statement changed."""
    return int(result.rowcount or 0)


def parameters_of(row: LeasedRow) -> Mapping[str, Any]:
    """The run-time parameters a leased execution was made with."""
    parameters: Mapping[str, Any] = json.loads(row.parameters or "{}")
    return parameters
