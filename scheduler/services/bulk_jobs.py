"""Many jobs of a collection in one call: copies of one job under new ids, each from a start
of its own, and one new schedule for every job of a collection.

What fills a collection with thousands of jobs in seconds, where a create per job takes
minutes (the benchmarks load a million so). Each keeps the rules a job's own create or
replace keeps: the quota on the collection's jobs (copies are counted in its bound on its
jobs as created jobs are), the plan's shortest recurrence, a schedule that fires. Both work
in the caller's transaction; an error leaves it to be rolled back, with nothing written.
Neither wakes the engines: each finds the jobs on its next pass (its longest sleep), or the
caller wakes them (`services.calls.wake_after_commit`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.db.bulk import among, insert_rows, update_rows
from scheduler.db.compiled import CompiledStatement, Record
from scheduler.db.models import COLLECTIONS, JOBS
from scheduler.db.stored_jobs import dump_definition, texts_from_each_start
from scheduler.domain.jobs import JobDefinition
from scheduler.domain.occurrences import occurrences, upcoming
from scheduler.domain.quotas import QuotaExceeded, check_job_count, check_recurrence
from scheduler.domain.recurrence import Recurrence, shortest_gap
from scheduler.domain.states import JobState
from scheduler.services import check_name, new_etag
from scheduler.services.collections import (
    QUOTA_FIELDS,
    CollectionQuota,
    collection_id,
    collection_limits,
    count_held_jobs,
    get_collection,
    path_params,
    quota_of,
)
from scheduler.services.errors import BadRequest, Conflict, NotFound
from scheduler.services.jobs import job_by_path, readable_definition
from scheduler.settings import PlanSettings

# Copies go to the database this many at a time: one statement each, its arrays (or its
# executemany) a few megabytes.
COPY_BATCH = 20_000

# The job copied, with its collection's quotas (`c_` columns).
_SOURCE = CompiledStatement(job_by_path(
    JOBS.c.job_id, JOBS.c.definition, JOBS.c.secrets, JOBS.c.state,
    JOBS.c.shortest_gap_seconds, JOBS.c.uses_authentication,
    COLLECTIONS.c.id.label("c_id"), *(COLLECTIONS.c[name].label(f"c_{name}")
                                       for name in QUOTA_FIELDS)))
# Copies take their turn on the collection's row, as creates do, and count themselves in its
# bound on its jobs; the bound is set to the count when it passes the quota.
_RAISE_BOUND = CompiledStatement(
    update(COLLECTIONS).where(COLLECTIONS.c.id == bindparam("collection_id"))
    .values(jobs_at_most=COLLECTIONS.c.jobs_at_most + bindparam("added"))
    .returning(COLLECTIONS.c.jobs_at_most))
_SET_BOUND = CompiledStatement(
    update(COLLECTIONS).where(COLLECTIONS.c.id == bindparam("collection_id"))
    .values(jobs_at_most=bindparam("held")))
# Every job of a collection, its row locked (PostgreSQL), with what its next fire time
# depends on.
_SCHEDULED = CompiledStatement(
    select(JOBS.c.id, JOBS.c.job_id, JOBS.c.definition, JOBS.c.created_at,
           JOBS.c.execution_count)
    .where(JOBS.c.collection_id == bindparam("collection_id"))
    .order_by(JOBS.c.id).with_for_update(of=JOBS))


def copy_job(session: Session, subscription_id: str, cloud_service: str, collection: str,
             job_id: str, copies: Iterable[tuple[str, datetime]],
             plans: Mapping[str, PlanSettings], now: datetime) -> int:
    """Copy a job of the collection under each new id of `copies`, starting at the start
    time given with it; returns how many were made.

    A copy is a new job that has never run: the source's action, recurrence, parameters and
    sealed secrets, enabled (disabled if the source is). It is due at the first occurrence
    from its start on, even when that has passed: a copy whose start is past stands for a
    job made before it, created at its start. 404 if the job or its collection does not
    exist, 400 for an id that is not valid or a copy that never fires, 409 for an id a job
    has already or copies past the collection's quota."""
    conn = session.connection()
    source = _source(session, subscription_id, cloud_service, collection, job_id)
    definition = readable_definition(source)
    quota = CollectionQuota(source.c_id, *(getattr(source, f"c_{name}")
                                           for name in QUOTA_FIELDS))
    sealed = Sealed(conn.dialect.name, quota.id, source.secrets)
    fields = {"collection_id": quota.id, "secrets": sealed.inserted,
              "state": JobState.DISABLED if source.state == JobState.DISABLED
              else JobState.ENABLED, "state_details": None,
              "shortest_gap_seconds": source.shortest_gap_seconds,
              "uses_authentication": source.uses_authentication, "updated_at": now,
              "last_execution_time": None, "execution_count": 0, "failure_count": 0,
              "faulted_count": 0}
    documents = _Documents(definition)
    made = 0
    batch: list[dict[str, Any]] = []
    for new_id, start in copies:
        check_name(new_id, "job id")
        created = min(start, now)
        due = next(occurrences(definition.recurrence, start, created, job_id=new_id), None)
        if due is None:
            raise BadRequest(f"recurrence: the copy {new_id} never fires from its start "
                             f"{start.isoformat()} (before its endTime, if any)")
        batch.append({**fields, "job_id": new_id, "job_key": new_id.lower(),
                      "definition": documents.starting(start), "etag": new_etag(),
                      "created_at": created, "next_execution_time": due})
        if len(batch) == COPY_BATCH:
            made += _insert(session, batch, sealed)
            batch = []
    made += _insert(session, batch, sealed)
    if made:
        _count_copies(conn, quota, made, plans)
    return made


def reschedule_jobs(session: Session, subscription_id: str, cloud_service: str,
                    collection: str, start: datetime | None, recurrence: Recurrence | None,
                    plans: Mapping[str, PlanSettings], now: datetime) -> datetime | None:
    """Give every job of the collection this start time and recurrence, each stored as a
    replace of the job with them would store it (its next fire time worked out from its own
    creation and runs, a new ETag); the rest of each job, its state and counts included, is
    left as it is. Returns the soonest of their next fire times (None if none fires, or the
    collection holds no job). 404 if the collection does not exist; 409 for a recurrence
    its quota does not allow, or a job whose stored definition does not read; 400 if the
    schedule never fires for a job that has not run."""
    found = get_collection(session, subscription_id, cloud_service, collection,
                           for_update=True)
    try:
        check_recurrence(collection_limits(quota_of(found), plans), recurrence)
    except QuotaExceeded as exc:
        raise Conflict(f"The schedule breaks a quota: {exc}.") from None
    gap = None if recurrence is None else int(shortest_gap(recurrence).total_seconds())
    conn = session.connection()
    written: dict[str, str] = {}  # stored document before -> after: copies share them
    rows: list[dict[str, Any]] = []
    soonest: datetime | None = None
    for job in _SCHEDULED.all(conn, {"collection_id": found.id}):
        text = written.get(job.definition)
        if text is None:
            definition = replace(readable_definition(job), start=start, recurrence=recurrence)
            text = written[job.definition] = dump_definition(definition)[0]
        fire = next(upcoming(recurrence, start, job.created_at, now, job.execution_count,
                             job.job_id), None)
        if fire is None and recurrence is not None and job.execution_count == 0:
            raise BadRequest(f"recurrence: the schedule never fires for the job {job.job_id} "
                             "(before its endTime, if any)")
        if fire is not None and (soonest is None or fire < soonest):
            soonest = fire
        rows.append({"id": job.id, "definition": text, "next_execution_time": fire,
                     "shortest_gap_seconds": gap, "etag": new_etag(), "updated_at": now})
    for first in range(0, len(rows), COPY_BATCH):
        update_rows(conn, JOBS, "id", rows[first:first + COPY_BATCH])
    return soonest


class _Documents:
    """A definition's stored document from each start on; the last one made is kept, for
    copies that share a start."""

    def __init__(self, definition: JobDefinition) -> None:
        self.text_from = texts_from_each_start(definition)
        self.start: datetime | None = None
        self.text = ""

    def starting(self, start: datetime) -> str:
        if start != self.start:
            self.text = self.text_from(start)
            self.start = start
        return self.text


def _source(session: Session, subscription_id: str, cloud_service: str, collection: str,
            job_id: str) -> Record:
    """The job to copy, with its collection's quotas; 404 naming what does not exist."""
    conn = session.connection()
    found = _SOURCE.first(conn, {**path_params(subscription_id, cloud_service, collection),
                                 "job_key": job_id.lower()})
    if found is None:
        collection_id(conn, subscription_id, cloud_service, collection)
        raise NotFound(f"The job {job_id} does not exist.")
    return found


class Sealed:
    """The source's sealed secrets, as its copies get them: inserted with each row on
    SQLite; on PostgreSQL, whose arrays of many rows carry no bytes, set on each batch
    after its insert."""

    def __init__(self, dialect: str, collection_id: int, secrets: bytes | None) -> None:
        self.dialect, self.collection_id, self.secrets = dialect, collection_id, secrets
        self.after = secrets is not None and dialect == "postgresql"

    @property
    def inserted(self) -> bytes | None:
        """What a copy's row is inserted with."""
        return None if self.after else self.secrets

    def set_on(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Give inserted copies the secrets their rows were inserted without."""
        if self.after:
            conn.execute(update(JOBS).where(
                JOBS.c.collection_id == self.collection_id,
                among(self.dialect, JOBS.c.job_key, [row["job_key"] for row in rows]),
            ).values(secrets=self.secrets))


def _insert(session: Session, rows: list[dict[str, Any]], sealed: Sealed) -> int:
    """Insert copies; 409 if one's id is taken (the caller's transaction is then to be
    rolled back: PostgreSQL has ended it)."""
    if not rows:
        return 0
    conn = session.connection()
    # The driver's own error, too: SQLite's plain inserts run on its cursor.
    taken = (IntegrityError, conn.dialect.loaded_dbapi.IntegrityError)
    try:
        insert_rows(conn, JOBS, rows)
    except taken:
        raise Conflict("A job of one of the copies' ids exists already; nothing was "
                       "copied.") from None
    sealed.set_on(conn, rows)
    return len(rows)


def _count_copies(conn: Connection, quota: CollectionQuota, added: int,
                  plans: Mapping[str, PlanSettings]) -> None:
    """Count the copies in the collection's bound on its jobs; 409 if they pass its quota.
    The jobs are counted only when the bound says they might pass it, as for a create."""
    raised = _RAISE_BOUND.first(conn, {"collection_id": quota.id, "added": added})
    assert raised is not None, "the collection was found in this transaction"
    limits = collection_limits(quota, plans)
    if raised.jobs_at_most <= limits.max_job_count:
        return
    held = count_held_jobs(conn, quota.id)
    _SET_BOUND.execute(conn, {"collection_id": quota.id, "held": held})
    try:
        check_job_count(limits, held)
    except QuotaExceeded as exc:
        raise Conflict(f"The copies break a quota: {exc}.") from None
