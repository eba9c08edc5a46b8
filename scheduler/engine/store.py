"""The engine's SQL: every statement a node runs, behind one store.

Due jobs and the executions a tick makes of them, runnable executions and their leases, the
reads that ready a claim, the records of finished attempts, heartbeats and take-overs, the
executions the engine cancels or fails, history retention, and the cluster's ping: each a
method of `EngineStore` over the caller's transaction, each read into a typed row, so that
the node decides what to do and this module only says how it is read or written. The
statements of the tick, the claim and the recording are compiled once per dialect
(`CompiledStatement`) and write many rows in one statement (`scheduler.db.bulk`). On
PostgreSQL rows are locked with SKIP LOCKED, so that nodes never wait for each other; SQLite
has one writer at a time. What the services run too (a new execution's row, a cancel, the
lease and heartbeat statements) is in `scheduler.db`, which both call.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    String,
    Update,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from scheduler.db import alerts
from scheduler.db.bulk import among, among_bound, among_values, insert_rows, update_rows
from scheduler.db.compiled import CompiledStatement
from scheduler.db.executions import (
    LEASES,
    NO_CALLBACK,
    WaitingForNodes,
    cancel_open,
    encoded_detail,
    event_row,
    execution_row,
    insert_events,
    insert_first_events,
    new_execution_id,
    skipped_history,
    unattempted_history,
    waiting_for_nodes,
)
from scheduler.db.leases import Heartbeats, Leases
from scheduler.db.models import (
    CLUSTER_HEARTBEAT,
    COLLECTIONS,
    EXECUTIONS,
    HISTORY,
    JOBS,
    OCCURRENCE_WHERE,
    Calendar,
    CloudService,
    Execution,
    HistoryEntry,
    Job,
    JobCollection,
    UTCDateTime,
)
from scheduler.db.notify import notify_canceled
from scheduler.db.overlap import open_runs, overdue_waiting, release_waiting, waiting_due
from scheduler.db.stored_calendars import readable_calendars
from scheduler.domain.calendars import ExclusionCalendar
from scheduler.domain.executions import EventKind
from scheduler.domain.nodes import membership_pattern
from scheduler.domain.overlap import REPLACED_MESSAGE
from scheduler.domain.states import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    CollectionState,
    ExecutionStatus,
    JobState,
    Lifecycle,
    Trigger,
)

# The transaction every method of the store runs in, opened by the node.
Transaction = Session
# A new row of a table, as `execution_row` and the recorder make them.
NewRow = dict[str, Any]

# Why an execution the engine was to run is canceled (`cancel_executions`): the first
# reason that holds when it is canceled. None may hold by then: the job's stored version
# could not be read, or the job was stopped and has run again since.
COLLECTION_DELETED_MESSAGE = "Canceled because the job collection is being deleted."
COLLECTION_SUSPENDED_MESSAGE = "Canceled because the job collection was suspended."
JOB_DISABLED_MESSAGE = "Canceled because the job was disabled."
JOB_ENDED_MESSAGE = "Canceled because the job is {state}: it runs no more occurrences."
OVERDUE_MESSAGE = ("an earlier run of the job was still open when it fell due "
                   "(concurrencyPolicy skip)")
STOPPED_MESSAGE = ("Canceled because the job stopped, or its stored version could not be "
                   "read, before this attempt was made.")

# Work runs only in a started collection that is not being deleted.
_COLLECTION_RUNS = (JobCollection.state == CollectionState.STARTED,
                    JobCollection.lifecycle != Lifecycle.DELETING)
# A job fires only while it is enabled, in such a collection.
_JOB_RUNS = (Job.state == JobState.ENABLED, *_COLLECTION_RUNS)
# An execution runs while its job fires; one started by hand (or a backfill), while its job
# (if it has one) is not disabled.
_EXECUTION_RUNS = and_(*_COLLECTION_RUNS, or_(
    Job.state == JobState.ENABLED,
    and_(Execution.trigger != Trigger.SCHEDULE,
         or_(Job.id.is_(None), Job.state != JobState.DISABLED))))
_OCCURRENCE = ("job_pk", "scheduled_time")
HEARTBEATS = Heartbeats()
# The one row of `cluster_heartbeat`.
_CLUSTER_ROW = 1
# A running execution without a lease is anyone's to take: its lease ended long ago.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


# --- the rows read ------------------------------------------------------------------------

class JobRow(NamedTuple):
    """A job as a tick or a claim reads it, with its collection's name and its cloud
    service's region."""

    id: int
    etag: str
    state: str
    job_id: str
    collection_id: int
    name: str
    region: str
    definition: str
    secrets: bytes | None
    created_at: datetime
    next_execution_time: datetime | None
    execution_count: int
    last_execution_time: datetime | None


class LeasedExecution(NamedTuple):
    """What a claim reads of each execution it leases (`parameters` and `steps` still JSON
    text; `definition` and `secrets` an inline run's own)."""

    id: str
    job_pk: int | None
    collection_id: int
    action_name: str
    attempt: int
    repeat_count: int
    scheduled_time: datetime
    parameters: str | None
    revision: int
    attempts: int
    step: int | None
    steps: str | None
    definition: str | None
    secrets: bytes | None
    trigger: str
    callback_deadline: datetime | None
    callback_result: str | None

    def run_parameters(self) -> Mapping[str, Any]:
        """The run-time parameters the execution was made with."""
        parameters: Mapping[str, Any] = json.loads(self.parameters or "{}")
        return parameters


class Runnable(NamedTuple):
    """An execution runnable now, whether its job (or collection) still lets it run, and,
    if its lease ran out, the node that held it (None: pending, or handed back)."""

    id: str
    runs: bool
    expired_on: str | None


class JobEtag(NamedTuple):
    """A job that may still run, with its etag now."""

    id: int
    etag: str


class Found(NamedTuple):
    """An execution found by its id."""

    id: str


class JobStanding(NamedTuple):
    """What recording an attempt reads of its job: its state and next fire time."""

    id: int
    state: str
    next_execution_time: datetime | None


class OpenCount(NamedTuple):
    """How many executions of a job are open."""

    job_pk: int
    open: int


class CollectionPlace(NamedTuple):
    """A collection's name, and the region of its cloud service."""

    id: int
    name: str
    region: str


class CancelReason(NamedTuple):
    """What says why an execution is canceled: its trigger, its job's state (None for an
    inline run), its collection's state and lifecycle."""

    id: str
    trigger: str
    job_state: str | None
    collection_state: str
    lifecycle: str


class Glance(NamedTuple):
    """The earliest fire time of a job that fires, next attempt of a pending execution,
    lease end (or callback deadline) of a running one, and time a disabled job waits until
    to be enabled again (None: there is none)."""

    job_time: datetime | None
    attempt_time: datetime | None
    lease_time: datetime | None
    paused_time: datetime | None = None
    # When a waiting run (of a job's overlap policy) needs a node: to go on, or be skipped.
    waiting_time: datetime | None = None

    def jobs_due(self, horizon: datetime) -> bool:
        """Whether some job is due by `horizon`."""
        return self.job_time is not None and self.job_time <= horizon

    def runnable(self, now: datetime) -> bool:
        """Whether some execution is runnable at `now`: due, or its lease ran out."""
        return ((self.attempt_time is not None and self.attempt_time <= now)
                or (self.lease_time is not None and self.lease_time < now)
                or (self.waiting_time is not None and self.waiting_time <= now))

    def paused_due(self, now: datetime) -> bool:
        """Whether some disabled job is to be enabled again by `now`."""
        return self.paused_time is not None and self.paused_time <= now

    def wakeup(self, lookahead: timedelta) -> datetime | None:
        """The earliest time a node is needed: a job to ready `lookahead` before it is due,
        an attempt to make, a lease to take over, a disabled job to enable again."""
        job_time = None if self.job_time is None else self.job_time - lookahead
        times = [t for t in (job_time, self.attempt_time, self.lease_time, self.paused_time,
                             self.waiting_time) if t is not None]
        return min(times) if times else None


class PausedJob(NamedTuple):
    """A disabled job whose time to be enabled again has come, with what enabling it reads:
    where it is (to name it in the audit), and its schedule and counts."""

    id: int
    etag: str
    job_id: str
    subscription_id: str
    cloud_service: str
    collection: str
    definition: str
    created_at: datetime
    execution_count: int
    next_execution_time: datetime | None
    disabled_until: datetime


class Outcomes(NamedTuple):
    """What recording a batch of attempts writes: history rows, each execution's row after
    its attempt, each job's added failures and faults, the jobs that ended, and the
    executions' events."""

    history: list[NewRow]
    executions: list[NewRow]
    failures: list[tuple[int, int, int]]  # job id, failures, faults
    ended: dict[int, str]  # job id -> its new state
    events: list[NewRow]


class Released(NamedTuple):
    """An execution handed back for any node to take, and the node that had leased it."""

    id: str
    node: str | None


class NodeNameTaken(Exception):
    """A node may not start under a name another live node runs under."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(
            f"another engine node ({holder}) runs under the name {name!r}, and its heartbeat "
            f"is recent; give this node a name of its own (engine.node_name, or "
            f"SCHEDULER_ENGINE_NODE_NAME), or stop the other one")
        self.name, self.holder = name, holder


# Why a node took executions from another (`taken_over` events).
HEARTBEAT_STOPPED = "heartbeat_stopped"  # the other's heartbeat is old, or it has none
NODE_REPLACED = "node_replaced"  # on SQLite, a node starting alone: the one before is gone
LEASE_EXPIRED = "lease_expired"  # the other's lease on it ran out


# --- the statements -----------------------------------------------------------------------

# Everything a tick or a claim reads of a job (`JobRow`'s columns, in order).
_JOB_COLUMNS = (Job.id, Job.etag, Job.state, Job.job_id, Job.collection_id, JobCollection.name,
                CloudService.geo_region.label("region"), Job.definition, Job.secrets,
                Job.created_at, Job.next_execution_time, Job.execution_count,
                Job.last_execution_time)
_LEASED_COLUMNS = tuple(EXECUTIONS.c[name] for name in LeasedExecution._fields)


def _jobs_with_collection(dialect: str) -> Select[*tuple[Any, ...]]:
    del dialect
    return (select(*_JOB_COLUMNS)
            .join(JobCollection, JobCollection.id == Job.collection_id)
            .join(CloudService, CloudService.id == JobCollection.cloud_service_id))


def _due_jobs(dialect: str) -> Select[*tuple[Any, ...]]:
    query = (_jobs_with_collection(dialect)
             .where(Job.next_execution_time <= bindparam("horizon", type_=UTCDateTime),
                    *_JOB_RUNS)
             .order_by(Job.next_execution_time).limit(bindparam("limit")))
    if dialect == "postgresql":
        query = query.with_for_update(of=Job, skip_locked=True)
    return query


def runnable(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """Executions to run now: pending and due, or running on a node whose lease ran out;
    one that waits for its target's callback, once its result came or its time ran out."""
    return or_(
        and_(Execution.status == ExecutionStatus.PENDING, Execution.next_attempt_at <= now),
        and_(LEASES.lapsed(now), or_(Execution.callback_deadline.is_(None),
                                     Execution.callback_deadline < now)),
    )


def _runs_here() -> ColumnElement[bool]:
    """Executions the node may run: those of any node, and those naming it (`member`, the
    LIKE pattern of its name, `domain.nodes.membership_pattern`)."""
    return or_(Execution.run_on.is_(None),
               Execution.run_on.like(bindparam("member", type_=String()), escape="\\"))


def _runnable(dialect: str) -> Select[*tuple[Any, ...]]:
    # Released rows have no lease left: their take-over was told when they were released.
    expired_on = case((and_(Execution.status == ExecutionStatus.RUNNING,
                            Execution.lease_until.is_not(None)), Execution.node))
    query = (select(Execution.id, _EXECUTION_RUNS.label("runs"), expired_on.label("expired_on"))
             .outerjoin(Job, Job.id == Execution.job_pk)
             .join(JobCollection, JobCollection.id == Execution.collection_id)
             .where(runnable(bindparam("now", type_=UTCDateTime)), _runs_here())
             .order_by(Execution.next_attempt_at).limit(bindparam("limit")))
    if dialect == "postgresql":
        query = query.with_for_update(of=Execution, skip_locked=True)
    return query


def _lease(dialect: str) -> Update:
    node = bindparam("node", type_=String())
    return (update(EXECUTIONS).where(among_bound(dialect, EXECUTIONS.c.id, "ids")).values(
        status=ExecutionStatus.RUNNING, node=node, revision=EXECUTIONS.c.revision + 1,
        **LEASES.taken(node, bindparam("until", type_=UTCDateTime)),
        start_time=func.coalesce(EXECUTIONS.c.start_time,
                                 bindparam("now", type_=UTCDateTime)))
        .returning(*_LEASED_COLUMNS))


def _held(dialect: str) -> Select[*tuple[Any, ...]]:
    query = select(Execution.id).where(among_bound(dialect, EXECUTIONS.c.id, "ids"),
                                       LEASES.held_by(bindparam("node", type_=String())))
    return query if dialect == "sqlite" else query.with_for_update()


def _jobs_locked(dialect: str) -> Select[*tuple[Any, ...]]:
    query = (select(Job.id, Job.state, Job.next_execution_time)
             .where(among_bound(dialect, JOBS.c.id, "ids")).order_by(Job.id))
    return query if dialect == "sqlite" else query.with_for_update()


# The statements of the tick, the claim and the recording, each compiled once per dialect.
_DUE_JOBS = CompiledStatement(_due_jobs, JobRow)
_RUNNABLE = CompiledStatement(_runnable, Runnable)
_LEASE = CompiledStatement(_lease, LeasedExecution)
_JOBS = CompiledStatement(lambda dialect: _jobs_with_collection(dialect)
                          .where(among_bound(dialect, JOBS.c.id, "ids")), JobRow)
_RUNNING_ETAGS = CompiledStatement(lambda dialect: select(Job.id, Job.etag)
                                   .join(JobCollection, JobCollection.id == Job.collection_id)
                                   .where(among_bound(dialect, JOBS.c.id, "ids"), *_JOB_RUNS),
                                   JobEtag)
_MARK_RUN = CompiledStatement(lambda dialect: update(JOBS).where(
    among_bound(dialect, JOBS.c.id, "ids")).values(
    last_execution_time=bindparam("now", type_=UTCDateTime)))
# The columns of every execution made (`execution_row`'s), and on SQLite the statement that
# makes them: by executemany, which returns no rows but counts them, so that only a batch
# that ran into an occurrence made already (the unique key) reads back which went in.
_MADE_COLUMNS = tuple(execution_row("", None, 0, datetime.min, 0, datetime.min,
                                    status=ExecutionStatus.PENDING))
_MAKE_ON_SQLITE = CompiledStatement(
    sqlite_insert(EXECUTIONS)
    .values({name: bindparam(name, type_=EXECUTIONS.c[name].type) for name in _MADE_COLUMNS})
    .on_conflict_do_nothing(index_elements=list(_OCCURRENCE),
                            index_where=text(OCCURRENCE_WHERE)))
_FOUND = CompiledStatement(lambda dialect: select(Execution.id).where(
    among_bound(dialect, EXECUTIONS.c.id, "ids")), Found)
_HELD = CompiledStatement(_held, Found)
_JOBS_LOCKED = CompiledStatement(_jobs_locked, JobStanding)
_STILL_OPEN = CompiledStatement(lambda dialect: select(
    Execution.job_pk, func.count().label("open"))
    .where(among_bound(dialect, EXECUTIONS.c.job_pk, "ids"),
           # Not IN: a list of values there is rendered when run, not compiled once.
           or_(*(Execution.status == status for status in OPEN_STATUSES)))
    .group_by(Execution.job_pk), OpenCount)
_COUNT_FAILURES = (
    update(JOBS).where(JOBS.c.id == bindparam("b_id"))
    .values(failure_count=JOBS.c.failure_count + bindparam("b_failures"),
            faulted_count=JOBS.c.faulted_count + bindparam("b_faults"))
)
_ARM_CALLBACK = update(EXECUTIONS).where(EXECUTIONS.c.id == bindparam("b_id")).values(
    callback_hash=bindparam("b_hash", type_=String()))
_AWAIT_CALLBACK = update(EXECUTIONS).where(EXECUTIONS.c.id == bindparam("b_id")).values(
    lease_owner=None, lease_until=None, next_attempt_at=None,
    message=bindparam("b_message", type_=String()),
    output=bindparam("b_output", type_=String()), revision=EXECUTIONS.c.revision + 1,
    callback_deadline=case((EXECUTIONS.c.callback_result.is_(None),
                            bindparam("b_deadline", type_=UTCDateTime)),
                           else_=EXECUTIONS.c.callback_deadline))
# A disabled job waits to be enabled in any collection but one being deleted: a suspended
# collection's job is enabled too, and fires once the collection is started.
_PAUSED_WAITS = (Job.state == JobState.DISABLED, JobCollection.lifecycle != Lifecycle.DELETING)


def _paused_due(dialect: str) -> Select[*tuple[Any, ...]]:
    query = (select(Job.id, Job.etag, Job.job_id, CloudService.subscription_id,
                    CloudService.name.label("cloud_service"),
                    JobCollection.name.label("collection"), Job.definition, Job.created_at,
                    Job.execution_count, Job.next_execution_time, Job.disabled_until)
             .join(JobCollection, JobCollection.id == Job.collection_id)
             .join(CloudService, CloudService.id == JobCollection.cloud_service_id)
             .where(Job.disabled_until <= bindparam("now", type_=UTCDateTime), *_PAUSED_WAITS)
             .order_by(Job.disabled_until).limit(bindparam("limit")))
    if dialect == "postgresql":  # another node enabling them meanwhile is not waited for
        query = query.with_for_update(of=Job, skip_locked=True)
    return query


_PAUSED_DUE = CompiledStatement(_paused_due, PausedJob)
_NOW = bindparam("now", type_=UTCDateTime)
# Enabled once across nodes: only while it is still as read, disabled and due.
_ENABLE_PAUSED = CompiledStatement(
    update(JOBS).where(JOBS.c.id == bindparam("job_pk"), JOBS.c.etag == bindparam("seen_etag"),
                       JOBS.c.state == JobState.DISABLED, JOBS.c.disabled_until <= _NOW)
    .values(state=JobState.ENABLED, disabled_until=None, updated_at=_NOW,
            state_changed_at=_NOW, etag=bindparam("new_etag", type_=String()),
            next_execution_time=bindparam("next_time", type_=UTCDateTime),
            state_note=bindparam("note", type_=String()),
            state_changed_by=bindparam("by", type_=String())))
# The five of `Glance` in one statement, built once. Each walks an index from its least
# value: the first job due is the first in a collection where it runs, so that the jobs of
# a collection being deleted, which no tick takes, do not keep the node awake; so is the
# first disabled job to enable again, and the first attempt this node may make, so that
# executions only other nodes may run do not keep it awake either.
_GLANCE = CompiledStatement(select(
    select(Job.next_execution_time)
    .join(JobCollection, JobCollection.id == Job.collection_id)
    .where(Job.next_execution_time.is_not(None), *_JOB_RUNS)
    .order_by(Job.next_execution_time).limit(1).scalar_subquery().label("job_time"),
    select(Execution.next_attempt_at)
    .where(Execution.status == ExecutionStatus.PENDING, Execution.next_attempt_at.is_not(None),
           _runs_here())
    .order_by(Execution.next_attempt_at).limit(1).scalar_subquery().label("attempt_time"),
    # One waiting for a callback is needed once it comes, or at its deadline.
    select(func.min(func.coalesce(Execution.lease_until, Execution.callback_deadline,
                                  bindparam("long_ago", type_=UTCDateTime))))
    .where(Execution.status == ExecutionStatus.RUNNING, _runs_here())
    .scalar_subquery().label("lease_time"),
    select(Job.disabled_until)
    .join(JobCollection, JobCollection.id == Job.collection_id)
    .where(Job.disabled_until.is_not(None), *_PAUSED_WAITS)
    .order_by(Job.disabled_until).limit(1).scalar_subquery().label("paused_time"),
    waiting_due(bindparam("long_ago", type_=UTCDateTime)).label("waiting_time"),
), Glance)


_CALENDARS = CompiledStatement(select(Calendar.name, Calendar.document).where(
    Calendar.collection_id == bindparam("collection_id")))


def why_stopped(reason: CancelReason) -> str:
    """Why an execution is not run: the message it is canceled with."""
    if reason.lifecycle == Lifecycle.DELETING:  # the collection, or its cloud service
        return COLLECTION_DELETED_MESSAGE
    if reason.collection_state != CollectionState.STARTED:
        return COLLECTION_SUSPENDED_MESSAGE
    if reason.job_state == JobState.DISABLED:
        return JOB_DISABLED_MESSAGE
    if (reason.job_state in (JobState.COMPLETED, JobState.FAULTED)
            and reason.trigger == Trigger.SCHEDULE):
        return JOB_ENDED_MESSAGE.format(state=reason.job_state)
    return STOPPED_MESSAGE


class EngineStore:
    """Every statement of one engine node, for SQLite or PostgreSQL, each over the
    caller's transaction (or, for the reads that take no lock, connection)."""

    # --- occurrences -> executions ------------------------------------------------------

    @staticmethod
    def glance(conn: Connection, name: str) -> Glance:
        """When the next job falls due and the next execution the node named `name` may run
        becomes runnable, in one read that takes no lock: a pass with nothing to do opens no
        write transaction."""
        row = _GLANCE.first(conn, {"long_ago": LONG_AGO, "member": membership_pattern(name)})
        assert row is not None  # an aggregate always has its one row
        return row

    @staticmethod
    def due_jobs(session: Transaction, horizon: datetime, limit: int) -> list[JobRow]:
        """Up to `limit` jobs due by `horizon`, earliest first, locked for this tick."""
        return _DUE_JOBS.all(session.connection(), {"horizon": horizon, "limit": limit})

    @staticmethod
    def calendars(session: Transaction, collection_id: int) -> dict[str, ExclusionCalendar]:
        """Every calendar of a collection, by lower-case name."""
        return readable_calendars(_CALENDARS.all(session.connection(),
                                                 {"collection_id": collection_id}))

    # The id and the row of an execution about to be made, as the services make theirs.
    new_execution_id = staticmethod(new_execution_id)
    execution_row = staticmethod(execution_row)

    @staticmethod
    def insert_executions(session: Transaction, rows: list[NewRow]) -> set[str]:
        """Insert executions (rows of `execution_row`), skipping any whose (job, scheduled
        time) exists; returns the ids of those inserted. The unique key is what makes firing
        twice impossible."""
        if not rows:
            return set()
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            inserted = insert_rows(conn, EXECUTIONS, rows, skip_conflicts_on=_OCCURRENCE,
                                   conflict_where=OCCURRENCE_WHERE, returning=("id",))
            return {execution_id for execution_id, in inserted}
        if _MAKE_ON_SQLITE.execute_many(conn, rows) == len(rows):
            return {row["id"] for row in rows}
        # Ids are new, so those found are the ones this statement inserted.
        ids = [row["id"] for row in rows]
        found = _FOUND.all(conn, {"ids": among_values(conn, EXECUTIONS.c.id, ids)})
        return {row.id for row in found}

    # The open runs of jobs whose overlap policy decides what their new runs do.
    open_runs = staticmethod(open_runs)

    @staticmethod
    def cancel_replaced(session: Transaction, execution_ids: list[str], now: datetime,
                        node: str) -> None:
        """Cancel open runs that new runs of their jobs replace (`replace`), as a cancel by
        hand does: the node running one is told to drop it when the tick commits."""
        cancel_open(session, execution_ids, now, REPLACED_MESSAGE, node=node)
        notify_canceled(session, execution_ids)

    @staticmethod
    def move_jobs_on(session: Transaction, moves: list[NewRow]) -> None:
        """Write each job's counters and next fire time, all in one statement."""
        update_rows(session.connection(), JOBS, "id", moves)

    @staticmethod
    def fault_jobs(session: Transaction, details: Mapping[int, str]) -> None:
        """Park these jobs as faulted, each with its reason as its state details."""
        update_rows(session.connection(), JOBS, "id", [
            {"id": pk, "state": JobState.FAULTED, "state_details": reason[:1024]}
            for pk, reason in details.items()])

    @staticmethod
    def insert_history(session: Transaction, rows: list[NewRow]) -> None:
        """Add history rows, all in one statement."""
        insert_rows(session.connection(), HISTORY, rows)

    # The history rows of runs ended without an attempt (missed, skipped), as the node and
    # its recorder make them.
    unattempted_history = staticmethod(unattempted_history)
    skipped_history = staticmethod(skipped_history)

    # An execution's event, as the node writes it, and a detail many events share, encoded
    # once.
    event_row = staticmethod(event_row)
    encoded_detail = staticmethod(encoded_detail)

    @staticmethod
    def insert_first_events(session: Transaction, rows: list[NewRow]) -> None:
        """Add the first events of executions this transaction made, in one statement."""
        insert_first_events(session.connection(), rows)

    @staticmethod
    def insert_events(session: Transaction, rows: list[NewRow]) -> None:
        """Add events of executions, in one statement, each within its execution's bound."""
        insert_events(session.connection(), rows)

    # --- disabled jobs enabled again ----------------------------------------------------

    @staticmethod
    def paused_jobs_due(session: Transaction, now: datetime, limit: int) -> list[PausedJob]:
        """Up to `limit` disabled jobs whose time to be enabled again came by `now`,
        earliest first (on PostgreSQL, those no other node holds, locked)."""
        return _PAUSED_DUE.all(session.connection(), {"now": now, "limit": limit})

    @staticmethod
    def enable_paused_job(session: Transaction, job: PausedJob, now: datetime,
                          next_time: datetime | None, note: str, by: str, etag: str) -> bool:
        """Enable a job `paused_jobs_due` read, its time to wait cleared, firing next at
        `next_time`, its state stamped (`by`, `now`, `note`) and given a new `etag`; unless
        it changed since it was read (another node enabled it, or a write changed it).
        Returns whether it was enabled here."""
        return _ENABLE_PAUSED.execute(session.connection(), {
            "job_pk": job.id, "seen_etag": job.etag, "now": now, "new_etag": etag,
            "next_time": next_time, "note": note, "by": by}) == 1

    # --- executions -> attempts ---------------------------------------------------------

    # Waiting runs let go on once nothing of their job is before them.
    release_waiting = staticmethod(release_waiting)

    @staticmethod
    def skip_overdue(session: Transaction, now: datetime, node: str) -> int:
        """Skip the waiting runs (of jobs whose policy is `skip`) whose time came while a
        run of their job was still open: each ends `skipped`, with its history entry and
        event. Returns how many."""
        overdue = overdue_waiting(session, now)
        if not overdue:
            return 0
        conn = session.connection()
        jobs = {row.id: row for row in _JOBS_LOCKED.all(conn, {"ids": among_values(
            conn, JOBS.c.id, {run.job_pk for run in overdue})})}
        update_rows(conn, EXECUTIONS, "id", [
            {"id": run.id, "status": ExecutionStatus.SKIPPED, "end_time": now,
             "next_attempt_at": None, "message": OVERDUE_MESSAGE} for run in overdue])
        insert_rows(conn, HISTORY, [
            skipped_history(run.job_pk, jobs[run.job_pk].state, run.repeat_count,
                            run.scheduled_time, now, run.id,
                            f"the occurrence due at {run.scheduled_time.isoformat()} was not "
                            f"run: {OVERDUE_MESSAGE}")
            for run in overdue if run.job_pk in jobs])
        insert_events(conn, [event_row(run.id, now, EventKind.SKIPPED, node=node, detail={
            "reason": "overlap", "policy": "skip", "message": OVERDUE_MESSAGE})
            for run in overdue])
        return len(overdue)

    @staticmethod
    def runnable_executions(session: Transaction, now: datetime, limit: int, name: str
                            ) -> list[Runnable]:
        """Up to `limit` executions runnable at `now` by the node named `name` (those of any
        node, and those naming it), locked, each with whether its job may still run."""
        return _RUNNABLE.all(session.connection(), {"now": now, "limit": limit,
                                                    "member": membership_pattern(name)})

    @staticmethod
    def lease_executions(session: Transaction, ids: Collection[str], node: str,
                         until: datetime, now: datetime) -> list[LeasedExecution]:
        """Mark executions running on `node`, leased until `until`; returns what running
        them needs."""
        conn = session.connection()
        return _LEASE.all(conn, {"ids": among_values(conn, EXECUTIONS.c.id, ids),
                                 "node": node, "until": until, "now": now})

    @staticmethod
    def collection_places(session: Transaction, collection_ids: Collection[int]
                          ) -> dict[int, tuple[str, str]]:
        """The name of each of these collections, and the region of its cloud service, by
        the collection's id."""
        dialect = session.get_bind().dialect.name
        rows = session.execute(
            select(JobCollection.id, JobCollection.name, CloudService.geo_region)
            .join(CloudService, CloudService.id == JobCollection.cloud_service_id)
            .where(among(dialect, COLLECTIONS.c.id, collection_ids)))
        return {place.id: (place.name, place.region)
                for place in (CollectionPlace(*row) for row in rows)}

    @staticmethod
    def jobs(session: Transaction, job_pks: Collection[int]) -> list[JobRow]:
        """These jobs, read as a tick reads them."""
        conn = session.connection()
        return _JOBS.all(conn, {"ids": among_values(conn, JOBS.c.id, job_pks)})

    @staticmethod
    def mark_jobs_run(session: Transaction, job_pks: Collection[int], now: datetime) -> None:
        """Set the last execution time of jobs whose executions a claim leased."""
        if job_pks:
            conn = session.connection()
            _MARK_RUN.execute(conn, {"ids": among_values(conn, JOBS.c.id, job_pks),
                                     "now": now})

    @staticmethod
    def running_etags(session: Transaction, job_pks: Collection[int]) -> dict[int, str]:
        """Of these jobs, those that may still run, with their etags now."""
        conn = session.connection()
        rows = _RUNNING_ETAGS.all(conn, {"ids": among_values(conn, JOBS.c.id, job_pks)})
        return {row.id: row.etag for row in rows}

    @staticmethod
    def cancel_executions(session: Transaction, execution_ids: list[str], now: datetime,
                          node: str | None = None) -> None:
        """Close open executions that will not run, their job (or its collection) having
        stopped: each gets the reason as its message, a job's one history entry saying so,
        and its `canceled` event by `node`."""
        if not execution_ids:
            return
        dialect = session.get_bind().dialect.name
        by_reason: dict[str, list[str]] = {}
        for row in session.execute(
                select(Execution.id, Execution.trigger, Job.state, JobCollection.state,
                       JobCollection.lifecycle)
                .outerjoin(Job, Job.id == Execution.job_pk)
                .join(JobCollection, JobCollection.id == Execution.collection_id)
                .where(among(dialect, EXECUTIONS.c.id, execution_ids))):
            reason = CancelReason(*row)
            by_reason.setdefault(why_stopped(reason), []).append(reason.id)
        for message, ids in by_reason.items():
            cancel_open(session, ids, now, message, node=node)

    @staticmethod
    def fail_executions(session: Transaction, execution_ids: list[str], now: datetime,
                        message: str, node: str | None = None) -> None:
        """Close open executions that cannot run (what they run cannot be read) as
        failed, each with its `failed` event by `node`."""
        if not execution_ids:
            return
        dialect = session.get_bind().dialect.name
        failed = session.scalars(update(EXECUTIONS).where(
            among(dialect, EXECUTIONS.c.id, execution_ids),
            EXECUTIONS.c.status.in_(OPEN_STATUSES),
        ).values(status=ExecutionStatus.FAILED, end_time=now, message=message,
                 next_attempt_at=None, revision=EXECUTIONS.c.revision + 1,
                 **LEASES.released(), **NO_CALLBACK).returning(EXECUTIONS.c.id)).all()
        insert_events(session.connection(), [
            event_row(execution_id, now, EventKind.FAILED, node=node,
                      detail={"message": message}) for execution_id in failed])

    # --- recording ----------------------------------------------------------------------

    @staticmethod
    def still_leased(session: Transaction, leases: Collection[tuple[str, str]]) -> set[str]:
        """Of these (execution, node) pairs, the executions whose lease that node still
        holds, locked; the others were taken over or canceled."""
        found: set[str] = set()
        conn = session.connection()
        for node in {node for _, node in leases}:
            ids = among_values(conn, EXECUTIONS.c.id,
                               [execution_id for execution_id, owner in leases if owner == node])
            found.update(row.id for row in _HELD.all(conn, {"ids": ids, "node": node}))
        return found

    @staticmethod
    def job_standings(session: Transaction, job_pks: Collection[int]
                      ) -> list[tuple[JobStanding, int]]:
        """The jobs of a batch, locked, each with how many executions it has open: counted
        only for jobs with no occurrence left, as only those can end (0 for the others).

        A recurring job keeps up to `history_keep` executions, and counting them for every
        attempt made recording slower the longer the engine ran."""
        if not job_pks:
            return []
        conn = session.connection()
        rows = _JOBS_LOCKED.all(conn, {"ids": among_values(conn, JOBS.c.id, job_pks)})
        ending = [row.id for row in rows if row.next_execution_time is None]
        still_open = {row.job_pk: row.open for row in _STILL_OPEN.all(
            conn, {"ids": among_values(conn, JOBS.c.id, ending)})} if ending else {}
        return [(row, int(still_open.get(row.id, 0))) for row in rows]

    @staticmethod
    def record_outcomes(session: Transaction, outcomes: Outcomes) -> None:
        """Write what a batch of attempts came to: history, executions, the jobs' counters
        and the states of the jobs that ended, one statement each."""
        EngineStore.insert_history(session, outcomes.history)
        connection = session.connection()
        update_rows(connection, EXECUTIONS, "id", outcomes.executions)
        if outcomes.failures:
            connection.execute(_COUNT_FAILURES, [
                {"b_id": pk, "b_failures": failures, "b_faults": faults}
                for pk, failures, faults in outcomes.failures])
        update_rows(connection, JOBS, "id", [{"id": pk, "state": state}
                                             for pk, state in outcomes.ended.items()])
        insert_events(connection, outcomes.events)

    # The lease columns of an execution nobody holds.
    released = staticmethod(Leases.released)

    # --- calls that wait for their target's callback ------------------------------------

    @staticmethod
    def arm_callbacks(session: Transaction, hashes: Mapping[str, str]) -> None:
        """Keep, for each of these executions leased to make a call that waits for a
        callback, the hash of its callback URL's token (the token itself is never stored)."""
        if hashes:
            session.connection().execute(_ARM_CALLBACK, [
                {"b_id": execution_id, "b_hash": digest}
                for execution_id, digest in hashes.items()])

    @staticmethod
    def await_callbacks(session: Transaction, rows: list[NewRow]) -> None:
        """Record calls their targets accepted (202): each execution stays running, held by
        no node, until its callback comes or its deadline passes; a result posted while the
        call was still out keeps the deadline it was given (now, to be recorded at once)."""
        if rows:
            session.connection().execute(_AWAIT_CALLBACK, rows)

    @staticmethod
    def clear_callbacks(session: Transaction, execution_ids: Collection[str]) -> None:
        """Forget the callbacks of these executions: their URLs are dead."""
        if execution_ids:
            dialect = session.get_bind().dialect.name
            session.execute(update(EXECUTIONS).where(
                among(dialect, EXECUTIONS.c.id, execution_ids)).values(**NO_CALLBACK))

    @staticmethod
    def callbacks_pending(session: Transaction) -> int:
        """How many executions wait for their target's callback."""
        return int(session.scalar(select(func.count()).select_from(EXECUTIONS).where(
            EXECUTIONS.c.callback_deadline.is_not(None),
            EXECUTIONS.c.status == ExecutionStatus.RUNNING)) or 0)

    # --- leases held while calls run ----------------------------------------------------

    @staticmethod
    def extend_leases(session: Transaction, execution_ids: Collection[str], node: str,
                      until: datetime) -> set[str]:
        """Extend the leases `node` still holds on these executions; returns those."""
        return set(session.scalars(LEASES.extend(
            session.get_bind().dialect.name, execution_ids, node, until)
            .returning(EXECUTIONS.c.id)))

    @staticmethod
    def not_held(session: Transaction, execution_ids: Collection[str], node: str) -> set[str]:
        """Of these executions, those `node` no longer holds (canceled, or taken over)."""
        dialect = session.get_bind().dialect.name
        held = set(session.scalars(select(Execution.id).where(
            among(dialect, EXECUTIONS.c.id, execution_ids), LEASES.held_by(node))))
        return set(execution_ids) - held

    # --- the node's life ----------------------------------------------------------------

    @staticmethod
    def heartbeat(session: Transaction, node: str, now: datetime,
                  dead_before: datetime | None, unsent: Collection[str],
                  unrunnable: Mapping[str, int] | None = None, name: str | None = None
                  ) -> tuple[int, int]:
        """Renew the heartbeat of `node` (named `name`), with its `unrunnable` attempts of
        the last minute; hand back the executions of the nodes whose last one came before
        `dead_before`, if given (and forget those nodes), and those of `unsent`, the
        executions `node` holds but could not send. Returns how many of each were handed
        back."""
        HEARTBEATS.beat(session, node, now, unrunnable, name)
        dialect = session.get_bind().dialect.name
        taken_over = handed_back = 0
        dead = HEARTBEATS.dead(session, dead_before, node) if dead_before is not None else []
        if dead:
            taken_over = _take_from(session, LEASES.release_owners(dialect, dead), node, now,
                                    HEARTBEAT_STOPPED)
            alerts.release_leases(session, dead)
            HEARTBEATS.forget(session, dead)
        if unsent:
            handed = _released(session, LEASES.release(dialect, unsent, node))
            insert_events(session.connection(), [
                event_row(row.id, now, EventKind.HANDED_BACK, node=node) for row in handed])
            handed_back = len(handed)
        return taken_over, handed_back

    @staticmethod
    def take_over(session: Transaction, node: str, now: datetime, alive_since: datetime,
                  sole: bool, unrunnable: Mapping[str, int] | None = None,
                  name: str | None = None) -> int:
        """`node` starts under `name`: renew its heartbeat (with its `unrunnable` attempts),
        and hand back the executions of every node whose last heartbeat came before
        `alive_since`, or that has none (with `sole`: of every other node). Returns how many
        were handed back. Unless `sole`, raises `NodeNameTaken` and changes nothing while
        another node alive since `alive_since` runs under `name`."""
        if name is not None and not sole:
            holder = HEARTBEATS.holder(session, name, alive_since, node)
            if holder is not None:
                raise NodeNameTaken(name, holder)
        HEARTBEATS.beat(session, node, now, unrunnable, name)
        if sole:
            HEARTBEATS.forget_all_but(session, node)
        live = HEARTBEATS.live(alive_since)
        alerts.release_leases(session, live, keep=True)
        return _take_from(session, LEASES.release_unless_owned_by(live), node, now,
                          NODE_REPLACED if sole else HEARTBEAT_STOPPED)

    @staticmethod
    def waiting_for_nodes(session: Transaction, alive_since: datetime) -> WaitingForNodes:
        """The pending or running executions that only nodes none of which has beaten since
        `alive_since` may run."""
        names = [name for name, in session.execute(HEARTBEATS.live_names(alive_since))]
        return waiting_for_nodes(session.connection(), names)

    @staticmethod
    def leave(session: Transaction, node: str) -> None:
        """`node` stops: its heartbeat row goes."""
        HEARTBEATS.forget(session, [node])

    # --- history retention --------------------------------------------------------------

    @staticmethod
    def prune_history(session: Transaction, now: datetime, keep: int, max_age: timedelta
                      ) -> int:
        """Drop history entries and finished executions older than `max_age`, and all but
        each job's newest `keep` of either, and each collection's newest `keep` runs of
        inline definitions; returns how many rows went."""
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
            crowded = session.scalars(select(model.job_pk).where(model.job_pk.is_not(None))
                                      .group_by(model.job_pk).having(func.count() > keep)).all()
            for job_pk in crowded:
                cutoff = session.scalar(select(order).where(model.job_pk == job_pk)
                                        .order_by(order.desc()).offset(keep).limit(1))
                condition = and_(model.job_pk == job_pk, order <= cutoff)
                removed += _delete(session, delete(model).where(
                    condition if final is None else and_(condition, final)))
        return removed + _prune_inline_runs(session, keep)

    # --- the cluster's heartbeat to an outside monitor ----------------------------------

    @staticmethod
    def ping_due(conn: Connection, due_before: datetime) -> bool:
        """Whether the cluster's last ping to its monitor came at `due_before` or earlier,
        or never, in a read that takes no lock: a node whose try is not due writes nothing."""
        pinged_at = conn.execute(select(CLUSTER_HEARTBEAT.c.pinged_at).where(
            CLUSTER_HEARTBEAT.c.id == _CLUSTER_ROW)).scalar()
        return pinged_at is None or pinged_at <= due_before

    @staticmethod
    def take_ping(session: Transaction, now: datetime, due_before: datetime) -> int | None:
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

    # --- alerts -------------------------------------------------------------------------

    # A job's streak of failures, the alerts made of its events, their delivery.
    default_alert_rules = staticmethod(alerts.default_rules)
    load_alert_rules = staticmethod(alerts.load_rules)
    alert_streaks = staticmethod(alerts.streaks)
    write_alert_streaks = staticmethod(alerts.write_streaks)
    insert_alerts = staticmethod(alerts.insert_alerts)
    take_due_alerts = staticmethod(alerts.take_due_alerts)
    alert_channels = staticmethod(alerts.channels_of)
    finish_alert_tries = staticmethod(alerts.finish_tries)
    next_alert_time = staticmethod(alerts.next_alert_time)
    unstarted_executions = staticmethod(alerts.unstarted)
    prune_alerts = staticmethod(alerts.prune_alerts)

    @staticmethod
    def count_missed(session: Transaction, missed: int) -> None:
        """Add occurrences recorded as missed to those the next ping reports."""
        table = CLUSTER_HEARTBEAT
        session.connection().execute(update(table).where(table.c.id == _CLUSTER_ROW)
                                     .values(missed=table.c.missed + missed))


def _prune_inline_runs(session: Session, keep: int) -> int:
    """Drop the finished inline runs of each collection but its newest `keep` runs (those
    older than the history's age went with the executions of jobs)."""
    inline = Execution.job_pk.is_(None)
    crowded = session.scalars(select(Execution.collection_id).where(inline)
                              .group_by(Execution.collection_id)
                              .having(func.count() > keep)).all()
    removed = 0
    for collection_id in crowded:
        of_collection = and_(inline, Execution.collection_id == collection_id)
        # By id as well: runs started at one instant are told apart, and ids grow with time.
        newest = (select(Execution.id).where(of_collection)
                  .order_by(Execution.created_at.desc(), Execution.id.desc()).limit(keep))
        removed += _delete(session, delete(Execution).where(
            of_collection, Execution.status.in_(FINAL_STATUSES),
            Execution.id.not_in(newest)))
    return removed


def _released(session: Session, release: Update) -> list[Released]:
    """Run a statement that hands executions back; those it handed back."""
    return [Released(*row) for row in session.execute(
        release.returning(EXECUTIONS.c.id, EXECUTIONS.c.node))]


def _take_from(session: Session, release: Update, node: str, now: datetime, reason: str
               ) -> int:
    """Hand back, for any node to take at once, the executions of nodes that `node` finds
    gone, each with its `taken_over` event: from the node that had leased it, by `node`,
    and why. Returns how many."""
    released = _released(session, release)
    insert_events(session.connection(), [
        event_row(row.id, now, EventKind.TAKEN_OVER, node=node,
                  detail={"from": row.node, "by": node, "reason": reason})
        for row in released])
    return len(released)


def _delete(session: Session, statement: Any) -> int:
    result: Any = session.execute(statement)
    return int(result.rowcount or 0)
