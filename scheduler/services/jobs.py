"""Jobs and their history."""

from __future__ import annotations

import uuid
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Select, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from scheduler.clock import Clock
from scheduler.db.compiled import CompiledStatement, Record
from scheduler.db.models import (
    COLLECTIONS,
    EXECUTIONS,
    JOBS,
    CloudService,
    HistoryEntry,
    Job,
    JobCollection,
)
from scheduler.db.session import Database
from scheduler.db.stored_jobs import (
    SealedSecretsError,
    StoredJobError,
    fire_time_from,
    open_definition,
    public_definition,
    seal_definition,
    stored_schedule,
)
from scheduler.domain.durations import format_datetime
from scheduler.domain.jobs import JobDefinition, JobSpec
from scheduler.domain.occurrences import upcoming
from scheduler.domain.quotas import QuotaExceeded, check_recurrence
from scheduler.domain.recurrence import Recurrence
from scheduler.domain.states import (
    FINAL_JOB_STATES,
    OPEN_STATUSES,
    SETTABLE_JOB_STATES,
    JobState,
)
from scheduler.security.secrets import SecretBox
from scheduler.services import check_name, new_etag, new_request_id
from scheduler.services.audit import ARROW, Target, described, record_change
from scheduler.services.calendars import calendar_names
from scheduler.services.calls import Call, wake_on_commit
from scheduler.services.cloudservices import DELETING
from scheduler.services.collections import (
    COLLECTION_BY_PATH,
    QUOTA_FIELDS,
    CollectionQuota,
    check_authentication_allowed,
    check_room_for_one_more,
    collection_id,
    collection_id_by_path,
    collection_limits,
    collection_missing,
    get_collection,
    path_params,
)
from scheduler.services.errors import BadRequest, Conflict, NotFound, PreconditionFailed
from scheduler.services.notifications import check_channels_exist
from scheduler.services.records import StoredJob
from scheduler.settings import PlanSettings

FINAL_STATES = FINAL_JOB_STATES
# Say who last set a job's state, when, and why (the note given then).
STAMP_COLUMNS = ("state_note", "state_changed_by", "state_changed_at")
# Checks a job about to be enabled (its id, its definition, secrets sealed); raises to refuse.
CheckEnabling = Callable[[str, JobDefinition], None]
# Whom the audit and a job's state name when the service itself enables a job that was
# disabled until a time.
SCHEDULER_ACTOR = "scheduler"
ONLY_DISABLED_WAITS = "disabledUntil: only a disabled job waits to be enabled"


@dataclass(frozen=True, slots=True)
class StateNote:
    """A note a write gives about the job's state: why it is set so; None clears it."""

    text: str | None


@dataclass(frozen=True, slots=True)
class StateChange:
    """Who sets jobs' states, when, and the note they give (None: none)."""

    by: str
    at: datetime
    note: str | None = None

    @classmethod
    def of(cls, call: Call, note: StateNote | None = None) -> StateChange:
        """The change a call makes, with the note it gives."""
        return cls(call.actor or "unknown", call.now, note.text if note else None)

    def columns(self) -> dict[str, Any]:
        """The job's columns that say it."""
        return {"state_note": self.note, "state_changed_by": self.by,
                "state_changed_at": self.at}


@dataclass(frozen=True, slots=True)
class DisabledUntil:
    """When a write says a disabled job is to be enabled again (`disabledUntil`); None: it
    waits for no time, and stays disabled until enabled."""

    at: datetime | None


def disabled_until_after(before: datetime | None, state: str, given: DisabledUntil | None,
                         *, keeps: bool) -> datetime | None:
    """The time a job waits until once written in `state`: none unless it is disabled; the
    time the write gives, else the job's own (`before`) where the write keeps what it does
    not name (a patch), else none. A write that gives a time to a job it leaves other
    than disabled is refused."""
    if state != JobState.DISABLED:
        if given is not None and given.at is not None:
            raise BadRequest(ONLY_DISABLED_WAITS)
        return None
    if given is not None:
        return given.at
    return before if keeps else None


def _until_text(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


def _stamp(call: Call, found: Record | None, after: str, note: StateNote | None,
           until: datetime | None) -> dict[str, Any] | None:
    """`state_stamp` of a write to `found` (None: a new job), stamped anew also when the
    write changes the time the job waits until (the note kept unless one is given)."""
    before, before_note = (None, None) if found is None else (found.state, found.state_note)
    stamp = state_stamp(call, before, before_note, after, note)
    if stamp is None and found is not None and until != found.disabled_until:
        stamp = StateChange.of(call, note or StateNote(before_note)).columns()
    return stamp


def state_stamp(call: Call, before: str | None, before_note: str | None, after: str,
                note: StateNote | None) -> dict[str, Any] | None:
    """The stamp columns a write of a job sets: who, when and why, when it changes the
    job's state (a new job's is `before` None, taken as enabled) or gives a note other than
    the job's; None when it leaves them as they are."""
    if after == (before or JobState.ENABLED) and (note is None or note.text == before_note):
        return None
    return StateChange.of(call, note).columns()


def find_job(session: Session, collection_id: int, job_id: str, *,
             for_update: bool = False) -> Job | None:
    """A job of the collection, or None."""
    query = select(Job).where(Job.collection_id == collection_id, Job.job_key == job_id.lower())
    if for_update:
        query = query.with_for_update()
    return session.scalar(query)


def get_job(session: Session, collection_id: int, job_id: str, *,
            for_update: bool = False) -> Job:
    """A job of the collection; 404 if it does not exist."""
    job = find_job(session, collection_id, job_id, for_update=for_update)
    if job is None:
        raise NotFound(f"The job {job_id} does not exist.")
    return job


def check_preconditions(job: Job | Record | None, if_match: str | None,
                        if_none_match: str | None) -> None:
    """Honour `If-Match` and `If-None-Match: *`."""
    if if_none_match == "*" and job is not None:
        raise PreconditionFailed(f"The job {job.job_id} already exists.")
    if if_match not in (None, "*") and (job is None or if_match.strip('"') != job.etag):
        raise PreconditionFailed("The job was changed since the given ETag was read.")
    if if_match == "*" and job is None:
        raise PreconditionFailed("The job does not exist.")


# The collection's columns beside a job's, named apart from the job's own.
_QUOTA_COLUMNS = (COLLECTIONS.c.id.label("c_id"),
                  *(COLLECTIONS.c[name].label(f"c_{name}") for name in QUOTA_FIELDS))


def _quota_of(row: Record, prefix: str = "c_") -> CollectionQuota:
    return CollectionQuota(getattr(row, f"{prefix}id"),
                           *(getattr(row, prefix + name) for name in QUOTA_FIELDS))


# A visible collection's id by its path; its own FROM, not the statement's it is used in.
_COLLECTION_ID_BY_PATH = collection_id_by_path().correlate(None).scalar_subquery()


def job_by_path(*columns: Any) -> Select[Any]:
    """`columns` of the job at a path, from the job joined to its collection and cloud
    service; it binds COLLECTION_BY_PATH's parameters and `job_key`."""
    return (select(*columns).join(JobCollection, JobCollection.id == Job.collection_id)
            .join(CloudService, COLLECTION_BY_PATH[0])
            .where(*COLLECTION_BY_PATH[1:], Job.job_key == bindparam("job_key")))


# A job and its collection's quotas by the job's path, the job's row locked (PostgreSQL;
# SQLite's writer holds the database): the first statement of a replace or a patch.
_JOB_TO_WRITE = CompiledStatement(job_by_path(JOBS, *_QUOTA_COLUMNS).with_for_update(of=JOBS))
# A create takes its turn on the collection's row (creates take turns, so that the quota
# holds) and counts itself in the bound on its jobs, in one statement.
_TAKE_CREATE_TURN = CompiledStatement(
    update(COLLECTIONS)
    .where(COLLECTIONS.c.id == _COLLECTION_ID_BY_PATH, COLLECTIONS.c.lifecycle != DELETING)
    .values(jobs_at_most=COLLECTIONS.c.jobs_at_most + 1)
    .returning(*(COLLECTIONS.c[name] for name in ("id", *QUOTA_FIELDS, "jobs_at_most")))
)
# What a write sets: the job's definition and what the service derives from it. The engine's
# columns (counts, last execution time) are left as they are.
_WRITTEN = ("definition", "secrets", "state", "state_details", "shortest_gap_seconds",
            "uses_authentication", "etag", "updated_at", "next_execution_time",
            "disabled_until", *STAMP_COLUMNS)
_REPLACE = CompiledStatement(
    update(JOBS).where(JOBS.c.id == bindparam("job_pk"))
    .values({name: bindparam(f"set_{name}", type_=JOBS.c[name].type) for name in _WRITTEN}))
_JOB_PK_BY_PATH = job_by_path(JOBS.c.id).correlate(None).scalar_subquery()
_DELETE = CompiledStatement(
    delete(JOBS).where(JOBS.c.id == _JOB_PK_BY_PATH)
    .returning(JOBS.c.job_id, JOBS.c.etag, JOBS.c.next_execution_time, JOBS.c.state))
# A job's open executions, locked, by id (and below, those of every job of a collection).
# An engine holds an execution's row while it waits for its job's (to mark the job run, or
# to record an attempt), so a delete takes these first and the jobs' rows after them: it
# never waits for an execution while it holds a job. Not IN: a list of values there is
# rendered when run, not compiled once.
_LOCK_OPEN_EXECUTIONS = CompiledStatement(
    select(EXECUTIONS.c.id)
    .where(EXECUTIONS.c.job_pk == _JOB_PK_BY_PATH,
           or_(*(EXECUTIONS.c.status == status for status in OPEN_STATUSES)))
    .order_by(EXECUTIONS.c.id).with_for_update(of=EXECUTIONS))
_LOCK_OPEN_EXECUTIONS_OF_COLLECTION = CompiledStatement(
    select(EXECUTIONS.c.id)
    .where(EXECUTIONS.c.job_pk.in_(
        select(JOBS.c.id).where(JOBS.c.collection_id == bindparam("collection_id"))),
        or_(*(EXECUTIONS.c.status == status for status in OPEN_STATUSES)))
    .order_by(EXECUTIONS.c.id).with_for_update(of=EXECUTIONS))
_JOB_FIELDS = tuple(column.key for column in JOBS.c)
# A job as written, read as a row of the jobs table would be.
_job_row = cast("Callable[..., Record]", namedtuple("JobValues", _JOB_FIELDS))


def _insert_job(dialect: str) -> Insert:
    """A new job's INSERT that makes nothing if a job of its id was made meanwhile."""
    insert_into = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert_into(JOBS)
            .values({name: bindparam(name, type_=JOBS.c[name].type)
                     for name in _JOB_FIELDS if name != "id"})
            .on_conflict_do_nothing(index_elements=[JOBS.c.collection_id, JOBS.c.job_key])
            .returning(JOBS.c.id))


_INSERT = CompiledStatement(_insert_job)


def job_to_write(conn: Connection, subscription_id: str, cloud_service: str,
                 collection: str, job_id: str) -> Record | None:
    """A job found by its path, its row locked for the rest of the transaction, with its
    collection's quotas (`c_` columns); None if it does not exist."""
    params = {**path_params(subscription_id, cloud_service, collection),
              "job_key": job_id.lower()}
    return _JOB_TO_WRITE.first(conn, params)


def require_job(conn: Connection, found: Record | None, subscription_id: str,
                cloud_service: str, collection: str, job_id: str) -> Record:
    """The job found; 404 naming what does not exist when it is None."""
    if found is None:
        collection_id(conn, subscription_id, cloud_service, collection)
        raise NotFound(f"The job {job_id} does not exist.")
    return found


def _check_spec(quota: CollectionQuota, spec: JobSpec, plans: Mapping[str, PlanSettings]
                ) -> None:
    """Refuse a job its collection's plan and quotas do not allow, its count apart."""
    try:
        check_recurrence(collection_limits(quota, plans), spec.recurrence)
    except QuotaExceeded as exc:
        raise Conflict(f"The job breaks a quota: {exc}.") from None
    check_authentication_allowed(quota.plan, spec.uses_authentication)


def check_calendars_exist(conn: Connection, collection_pk: int,
                          recurrence: Recurrence | None) -> None:
    """Refuse a recurrence that skips the days of a calendar its collection does not have."""
    if recurrence is None or not recurrence.exclude_calendars:
        return
    known = calendar_names(conn, collection_pk)
    for index, name in enumerate(recurrence.exclude_calendars):
        if name.lower() not in known:
            raise BadRequest(f"recurrence.excludeCalendars.{index}: the job collection has "
                             f"no calendar named {name}")


def _written(spec: JobSpec, box: SecretBox, now: datetime, created: datetime,
             executed: int, job_id: str) -> dict[str, Any]:
    """The columns a write sets, for a job created at `created` that ran `executed` times."""
    next_time = next_fire_time(spec, created, now, executed, job_id)
    if next_time is None and spec.recurrence is not None and executed == 0:
        raise BadRequest("recurrence: the schedule never fires (before its endTime, if any)")
    definition, secrets = seal_definition(spec.job, box)
    return {
        "definition": definition, "secrets": secrets, "state": spec.state,
        "state_details": spec.state_details,
        "shortest_gap_seconds": spec.shortest_gap_seconds,
        "uses_authentication": spec.uses_authentication, "etag": new_etag(),
        "updated_at": now, "next_execution_time": next_time,
    }


def replace_job(conn: Connection, found: Record, spec: JobSpec, box: SecretBox,
                plans: Mapping[str, PlanSettings], now: datetime,
                stamp: Mapping[str, Any] | None = None, *,
                until: datetime | None = None) -> Record:
    """Replace a job read by `job_to_write` with a valid spec, within the quotas; returns
    the job as written, disabled `until` that time if given. Who last set its state, when
    and why are kept, unless `stamp` gives them anew."""
    quota = _quota_of(found)
    _check_spec(quota, spec, plans)
    check_calendars_exist(conn, quota.id, spec.recurrence)
    check_channels_exist(conn, quota.id, spec.job.alerts, "alerts.channels")
    values = _written(spec, box, now, found.created_at, found.execution_count, found.job_id)
    values["disabled_until"] = until
    values.update(stamp if stamp is not None
                  else {name: getattr(found, name) for name in STAMP_COLUMNS})
    _REPLACE.execute(conn, {"job_pk": found.id,
                            **{f"set_{name}": value for name, value in values.items()}})
    written: Record = found._replace(**values)
    return written


def create_job(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
               job_id: str, spec: JobSpec, box: SecretBox, plans: Mapping[str, PlanSettings],
               now: datetime, stamp: Mapping[str, Any] | None = None, *,
               until: datetime | None = None) -> Record | None:
    """Create a job with a valid spec, within the quotas, disabled `until` that time if
    given; returns it as written, or None if a job of that id was made since the caller
    looked (the caller replaces it instead). `stamp` says who set its state, when and why,
    if anyone did."""
    values = {"job_id": job_id, "job_key": job_id.lower(), "created_at": now,
              "last_execution_time": None, "execution_count": 0, "failure_count": 0,
              "faulted_count": 0, "disabled_until": until, **dict.fromkeys(STAMP_COLUMNS),
              **_written(spec, box, now, now, 0, job_id), **(stamp or {})}
    turn = _TAKE_CREATE_TURN.first(conn, path_params(subscription_id, cloud_service,
                                                     collection))
    if turn is None:
        raise collection_missing(cloud_service, collection)
    quota = _quota_of(turn, "")
    _check_spec(quota, spec, plans)
    check_calendars_exist(conn, quota.id, spec.recurrence)
    check_channels_exist(conn, quota.id, spec.job.alerts, "alerts.channels")
    try:
        check_room_for_one_more(conn, quota, turn.jobs_at_most, plans)
    except QuotaExceeded as exc:
        raise Conflict(f"The job breaks a quota: {exc}.") from None
    made = _INSERT.first(conn, {"collection_id": quota.id, **values})
    if made is None:
        return None
    return _job_row(id=made.id, collection_id=quota.id, **values)


def next_fire_time(spec: JobSpec, created: datetime, now: datetime, executed: int,
                   job_id: str) -> datetime | None:
    """When a job fires next, if ever."""
    return next(upcoming(spec.recurrence, spec.start_time, created, now, executed, job_id),
                None)


def new_job_id() -> str:
    """An id for a job created with POST."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Written:
    """A job as a write left it, whether the write created it, and when the job was to fire
    next before the write (None if it was not, or did not exist)."""

    job: StoredJob
    created: bool
    fired_next_before: datetime | None

    @property
    def fire_times(self) -> tuple[datetime | None, datetime | None]:
        """When the job was to fire next before the write, and is to after it."""
        return self.fired_next_before, self.job.next_execution_time


def put_job(session: Session, call: Call, cloud_service: str, collection: str, job_id: str,
            spec: JobSpec, if_match: str | None, if_none_match: str | None, *,
            note: StateNote | None = None, until: DisabledUntil | None = None,
            check_waiting: CheckEnabling | None = None) -> Written:
    """Create a job, or replace it whole, honouring `If-Match` and `If-None-Match`; recorded
    in the audit (`job.create`, `job.put`). A job of that id made by another call between
    the look and the insert is replaced, as if it had been there first. Who set its state,
    when and why are stamped when the state changes or `note` is given. A disabled job
    waits `until` the time given (none if none is), checked first by `check_waiting`."""
    check_name(job_id, "job id")
    conn = session.connection()
    waits = _waiting_time(job_id, spec, None, until, False, check_waiting)
    existing = job_to_write(conn, call.subscription_id, cloud_service, collection, job_id)
    if existing is None:
        if if_match is not None:  # no job matches: 404 if its collection is missing
            collection_id(conn, call.subscription_id, cloud_service, collection)
            check_preconditions(None, if_match, if_none_match)
        made = create_job(conn, call.subscription_id, cloud_service, collection, job_id, spec,
                          call.box, call.plans, call.now,
                          _stamp(call, None, spec.state, note, waits), until=waits)
        if made is not None:
            return _created(session, call, cloud_service, collection, made, note)
        existing = require_job(  # made since it was looked for: this PUT replaces it
            conn, job_to_write(conn, call.subscription_id, cloud_service, collection, job_id),
            call.subscription_id, cloud_service, collection, job_id)
    check_preconditions(existing, if_match, if_none_match)
    job = replace_job(conn, existing, spec, call.box, call.plans, call.now,
                      _stamp(call, existing, spec.state, note, waits), until=waits)
    _record_job_write(session, call, "job.put", cloud_service, collection, existing, job, note)
    return Written(cast("StoredJob", job), False, existing.next_execution_time)


def create_job_with_new_id(session: Session, call: Call, cloud_service: str,
                           collection: str, spec: JobSpec, *,
                           note: StateNote | None = None, until: DisabledUntil | None = None,
                           check_waiting: CheckEnabling | None = None) -> Written:
    """Create a job under an id the service makes, disabled `until` a time if given (checked
    by `check_waiting`); recorded in the audit (`job.create`)."""
    job_id = new_job_id()
    waits = _waiting_time(job_id, spec, None, until, False, check_waiting)
    made = create_job(session.connection(), call.subscription_id, cloud_service, collection,
                      job_id, spec, call.box, call.plans, call.now,
                      _stamp(call, None, spec.state, note, waits), until=waits)
    assert made is not None, "a new random id is taken by no job"
    return _created(session, call, cloud_service, collection, made, note)


def _created(session: Session, call: Call, cloud_service: str, collection: str,
             made: Record, note: StateNote | None) -> Written:
    """A job just made, recorded in the audit."""
    waits = _until_text(made.disabled_until)
    record_change(session, call, "job.create", Target(cloud_service, collection, made.job_id),
                  detail=f"state: {made.state}" + (f"; disabled until: {waits}" if waits else ""),
                  note=note.text if note else None)
    return Written(cast("StoredJob", made), True, None)


def _waiting_time(job_id: str, spec: JobSpec, found: Record | None,
                  given: DisabledUntil | None, keeps: bool,
                  check_waiting: CheckEnabling | None) -> datetime | None:
    """The time a job written as `spec` waits until (`disabled_until_after`), given first,
    when it has one, to `check_waiting`: the job is enabled then, as it is written now."""
    waits = disabled_until_after(None if found is None else found.disabled_until,
                                 spec.state, given, keeps=keeps)
    if waits is not None and check_waiting is not None:
        check_waiting(job_id, spec.job)
    return waits


def _record_job_write(session: Session, call: Call, kind: str, cloud_service: str,
                      collection: str, before: Record, after: Record,
                      note: StateNote | None) -> None:
    """Record a replace or patch of a job in the audit: what it changed, in words."""
    changes = described([("state", before.state, after.state),
                         ("disabled until", _until_text(before.disabled_until),
                          _until_text(after.disabled_until))])
    parts = (["definition changed"] if before.definition != after.definition else []) + \
        ([changes] if changes else [])
    record_change(session, call, kind, Target(cloud_service, collection, after.job_id),
                  detail="; ".join(parts) or None, note=note.text if note else None)


# What a patch is applied to: the job's definition with its secrets, its state (None once it
# has ended: a patch that leaves it out keeps the job ended) and its state details.
Patched = Callable[[JobDefinition, str | None, str | None], JobSpec]


def patch_job(session: Session, call: Call, cloud_service: str, collection: str,
              job_id: str, if_match: str | None, patched: Patched,
              patch_sets_state: bool, *, note: StateNote | None = None,
              until: DisabledUntil | None = None,
              check_waiting: CheckEnabling | None = None) -> Written:
    """Replace a job with what `patched` makes of it as it is (secrets opened); a job that
    ended stays ended unless the patch sets its state. Recorded in the audit (`job.patch`);
    who set its state, when and why are stamped when the state changes or `note` is
    given. A job left disabled waits `until` the time given (None clears it), else until
    its own, checked by `check_waiting`."""
    conn = session.connection()
    found = require_job(
        conn, job_to_write(conn, call.subscription_id, cloud_service, collection, job_id),
        call.subscription_id, cloud_service, collection, job_id)
    check_preconditions(found, if_match, None)
    spec = patched(opened_definition(found, call.box),
                   None if found.state in FINAL_STATES else found.state, found.state_details)
    keep_final_state(found, spec, patch_sets_state)
    waits = _waiting_time(found.job_id, spec, found, until, True, check_waiting)
    job = replace_job(conn, found, spec, call.box, call.plans, call.now,
                      _stamp(call, found, spec.state, note, waits), until=waits)
    _record_job_write(session, call, "job.patch", cloud_service, collection, found, job, note)
    return Written(cast("StoredJob", job), False, found.next_execution_time)


# A job's state and what goes with it, as a change of its state alone sets them.
_SET_STATE = CompiledStatement(
    update(JOBS).where(JOBS.c.id == bindparam("job_pk"))
    .values({name: bindparam(f"set_{name}", type_=JOBS.c[name].type)
             for name in ("state", "etag", "updated_at", "next_execution_time",
                          "disabled_until", *STAMP_COLUMNS)}))


def set_job_state(session: Session, call: Call, cloud_service: str, collection: str,
                  job_id: str, state: str, note: str | None,
                  check_enabling: CheckEnabling, until: datetime | None = None) -> Written:
    """Enable or disable a job, saying why (`note`; None gives none, "" clears the one it
    has), as a patch of its state and `stateNote` does: stamped with who, when and why, and
    recorded in the audit (`job.state`). A job enabled is first given to `check_enabling`,
    which may refuse it; one enabled again replays nothing. A job disabled waits `until`
    that time to be enabled again (given to `check_enabling` too), or for nobody. Setting
    the state a job has, the same time and no new note changes nothing. The caller wakes
    the engines (`record_and_wake` with the written job's fire times), as the API's writes
    do."""
    conn = session.connection()
    found = require_job(
        conn, job_to_write(conn, call.subscription_id, cloud_service, collection, job_id),
        call.subscription_id, cloud_service, collection, job_id)
    job = _set_state(session, call, cloud_service, collection, found, state,
                     _note_of(note), check_enabling, until)
    return Written(cast("StoredJob", job), False, found.next_execution_time)


def set_job_states(session: Session, call: Call, cloud_service: str, collection: str,
                   job_ids: Sequence[str], state: str, note: str | None,
                   check_enabling: CheckEnabling) -> list[StoredJob]:
    """Enable or disable jobs of a collection, each as `set_job_state` does (those disabled
    wait for no time), in one transaction: a job that does not exist (404) or is refused
    changes none. Returns the jobs as written, in the order given (an id given twice, once).
    The caller wakes the engines."""
    conn = session.connection()
    given = _note_of(note)
    written: list[StoredJob] = []
    seen: set[str] = set()
    for job_id in job_ids:
        if job_id.lower() in seen:
            continue
        seen.add(job_id.lower())
        found = require_job(
            conn, job_to_write(conn, call.subscription_id, cloud_service, collection, job_id),
            call.subscription_id, cloud_service, collection, job_id)
        job = _set_state(session, call, cloud_service, collection, found, state, given,
                         check_enabling)
        written.append(cast("StoredJob", job))
    return written


def _note_of(note: str | None) -> StateNote | None:
    """A note as the dashboard gives it: None for none, "" to clear the job's."""
    return None if note is None else StateNote(note or None)


def _set_state(session: Session, call: Call, cloud_service: str, collection: str,
               found: Record, state: str, note: StateNote | None,
               check_enabling: CheckEnabling, until: datetime | None = None) -> Record:
    """Set the state of a job read by `job_to_write` (disabled: `until` a time, if given),
    stamped and recorded; `found` itself when nothing changes."""
    if state not in SETTABLE_JOB_STATES:
        raise BadRequest("state: must be enabled or disabled")
    if until is not None and state != JobState.DISABLED:
        raise BadRequest(ONLY_DISABLED_WAITS)
    stamp = _stamp(call, found, state, note, until)
    if stamp is None:
        return found
    if until is not None:  # enabled then as it is now
        waiting = shown_definition(found.definition)
        if waiting is not None:
            check_enabling(found.job_id, waiting)
    values: dict[str, Any] = {"state": state, "etag": new_etag(), "updated_at": call.now,
                              "next_execution_time": found.next_execution_time,
                              "disabled_until": until, **stamp}
    if state == JobState.ENABLED and found.state != JobState.ENABLED:
        definition = shown_definition(found.definition)
        if definition is not None:  # one that does not read faults when it runs
            check_enabling(found.job_id, definition)
            # Its first occurrence from now on, as a patch that enables it finds.
            values["next_execution_time"] = next(upcoming(
                definition.recurrence, definition.start, found.created_at, call.now,
                found.execution_count, found.job_id), None)
    _SET_STATE.execute(session.connection(), {"job_pk": found.id, **{
        f"set_{name}": value for name, value in values.items()}})
    record_change(session, call, "job.state", Target(cloud_service, collection, found.job_id),
                  detail=described([("state", found.state, state),
                                    ("disabled until", _until_text(found.disabled_until),
                                     _until_text(until))]) or "note changed",
                  note=note.text if note else None)
    job: Record = found._replace(**values)
    return job


def reenabled_note(until: datetime) -> str:
    """The state note of a job the service enabled once its time to wait had come."""
    return f"re-enabled: disabled until {format_datetime(until)}"


def record_reenabled(session: Session, box: SecretBox, now: datetime, subscription_id: str,
                     target: Target, note: str) -> None:
    """Record in the audit (`job.state`, made by `SCHEDULER_ACTOR`) that the service
    enabled a job disabled until a time that has come, with the note it gave the job."""
    # The service's own change: it follows no plan and wakes no engine (one is awake).
    call = Call(request_id=new_request_id(), subscription_id=subscription_id, now=now,
                plans={}, box=box, home=Path(), wake_horizon=timedelta(0),
                actor=SCHEDULER_ACTOR)
    record_change(session, call, "job.state", target,
                  detail=described([("state", JobState.DISABLED, JobState.ENABLED)]),
                  note=note)


def set_collection_job_states(
    session: Session, call: Call, cloud_service: str, collection: str, state: str,
    check_enabled: CheckEnabling, *, note: StateNote | None = None,
) -> list[Job]:
    """Enable or disable every job of a collection; returns its jobs. Before enabling,
    `check_enabled` is given each disabled job's id and definition, and may refuse it. The
    jobs whose state changes are stamped with who, when and `note`; recorded in the audit
    (`jobs.state`)."""
    found = get_collection(session, call.subscription_id, cloud_service, collection,
                           for_update=True)
    changed = set_job_states_of(session, found, state, StateChange.of(call, note),
                                check_enabled)
    record_change(session, call, "jobs.state", Target(cloud_service, collection),
                  detail=jobs_state_detail(state, changed), note=note.text if note else None)
    return list_jobs(session, found.id)


def jobs_state_detail(state: str, changed: int) -> str:
    """What a change of every job's state did, in words."""
    return f"state {ARROW} {state}: {changed} job{'' if changed == 1 else 's'} changed"


def set_job_states_of(session: Session, collection: JobCollection, state: str,
                      change: StateChange, check_enabled: CheckEnabling) -> int:
    """Enable or disable every job of a collection whose row the caller holds locked; the
    collection reads `Disabled` in Resource Manager's API while they are disabled so.
    Returns how many jobs changed state (each stamped with `change`)."""
    if state == JobState.ENABLED:
        for job in list_jobs(session, collection.id):
            if job.state == JobState.DISABLED:
                definition = shown_definition(job.definition)
                if definition is not None:  # one that does not read faults when it runs
                    check_enabled(job.job_id, definition)
    changed = set_all_job_states(session, collection.id, state, change)
    collection.jobs_disabled = state == JobState.DISABLED
    return changed


def job_states_would_change(session: Session, collection: JobCollection, state: str) -> bool:
    """Whether enabling or disabling every job of a collection would change anything."""
    if collection.jobs_disabled != (state == JobState.DISABLED):
        return True
    differing = session.scalar(select(Job.id).where(
        Job.collection_id == collection.id, Job.state.not_in(FINAL_STATES),
        Job.state != state).limit(1))
    return differing is not None


def finish_set_job_states(
    db: Database, payload: Mapping[str, Any], _extend_lease: Callable[[], None], *,
    clock: Clock, home: Path, check_enabled: CheckEnabling,
) -> None:
    """Operation handler: enable or disable every job of a collection, stamped with whom
    the request that started it names (`actor`), and wake the engines."""
    with db.transaction() as session:
        collection = session.scalar(select(JobCollection).where(
            JobCollection.id == payload["collection_id"],
            JobCollection.lifecycle != DELETING).with_for_update())
        if collection is None:
            raise NotFound("The job collection was deleted.")
        change = StateChange(payload.get("actor") or "unknown", clock.now())
        set_job_states_of(session, collection, payload["state"], change, check_enabled)
        wake_on_commit(session, home)


def delete_collection_jobs(session: Session, call: Call, cloud_service: str,
                           collection: str) -> None:
    """Delete every job of a collection, with its history; recorded in the audit
    (`jobs.delete`)."""
    found = get_collection(session, call.subscription_id, cloud_service, collection,
                           for_update=True)
    deleted = delete_all_jobs(session, found.id)
    record_change(session, call, "jobs.delete", Target(cloud_service, collection),
                  detail=f"{deleted} job{'' if deleted == 1 else 's'} deleted")


def read_history(session: Session, call: Call, cloud_service: str, collection: str,
                 job_id: str, status: str | None, top: int | None, skip: int
                 ) -> tuple[Job, list[HistoryEntry]]:
    """A job and one page of its history, newest first, optionally of one status."""
    found = get_collection(session, call.subscription_id, cloud_service, collection)
    job = get_job(session, found.id, job_id)
    return job, list_history(session, job, status, top, skip)


# How many times a delete is made that meets a deadlock before it is answered 409.
DELETE_TRIES = 3
# SQLSTATEs of a transaction that lost a race for locks: deadlock detected, could not
# serialize. Trying the same statements again is the cure.
_LOST_LOCK_RACE = frozenset({"40P01", "40001"})
_Deleted = TypeVar("_Deleted")


def lost_lock_race(exc: BaseException) -> bool:
    """Whether a database error says the statement lost a race for locks (a deadlock, or a
    serialization failure), raised by SQLAlchemy or straight by the driver."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return getattr(cause, "sqlstate", None) in _LOST_LOCK_RACE


def _delete_despite_deadlocks(conn: Connection, delete_once: Callable[[], _Deleted],
                              what: str) -> _Deleted:
    """Run a delete's statements; made again, up to `DELETE_TRIES` times in all, when the
    database ends them to break a deadlock, then 409 naming `what` was not deleted.

    A delete locks the open executions before the jobs, as engines do, so that it waits
    for an engine rather than deadlock with it; a run made and claimed between its two
    steps can still close a cycle, and a second try finds that run among those to lock."""
    for _ in range(DELETE_TRIES):
        try:
            with conn.begin_nested():  # a lost try leaves nothing behind, locks included
                return delete_once()
        except Exception as exc:
            if not lost_lock_race(exc):
                raise
    raise Conflict(f"{what} could not be deleted: other changes kept getting in the way "
                   "(runs started or recorded meanwhile). Nothing was deleted; try again.")


def delete_job(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
               job_id: str, if_match: str | None = None) -> datetime | None:
    """Delete a job, its executions and its history; returns when it would have fired next.
    A precondition that fails raises after the delete: the caller's transaction is rolled
    back."""
    deleted = _delete_job(conn, subscription_id, cloud_service, collection, job_id, if_match)
    moment: datetime | None = deleted.next_execution_time
    return moment


def _delete_job(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
                job_id: str, if_match: str | None) -> Record:
    """Delete a job as `delete_job` does; returns its id as it spelled it, its state and
    when it would have fired next."""
    params = {**path_params(subscription_id, cloud_service, collection),
              "job_key": job_id.lower()}

    def delete_once() -> Record | None:
        _LOCK_OPEN_EXECUTIONS.all(conn, params)
        return _DELETE.first(conn, params)

    found = _delete_despite_deadlocks(conn, delete_once, f"The job {job_id}")
    deleted = require_job(conn, found, subscription_id, cloud_service, collection, job_id)
    check_preconditions(deleted, if_match, None)
    return deleted


def remove_job(session: Session, call: Call, cloud_service: str, collection: str,
               job_id: str, if_match: str | None = None, *,
               note: str | None = None) -> datetime | None:
    """Delete a job as a call asks, as `delete_job` does, recorded in the audit
    (`job.delete`, with the note given); returns when it would have fired next."""
    deleted = _delete_job(session.connection(), call.subscription_id, cloud_service,
                          collection, job_id, if_match)
    record_change(session, call, "job.delete", Target(cloud_service, collection,
                                                      deleted.job_id),
                  detail=f"state was {deleted.state}", note=note)
    moment: datetime | None = deleted.next_execution_time
    return moment


def delete_all_jobs(session: Session, collection_id: int) -> int:
    """Delete every job of the collection (their executions and history go with them);
    returns how many there were."""
    conn = session.connection()

    def delete_once() -> int:
        _LOCK_OPEN_EXECUTIONS_OF_COLLECTION.all(conn, {"collection_id": collection_id})
        deleted = session.execute(delete(Job).where(Job.collection_id == collection_id))
        return int(deleted.rowcount)  # type: ignore[attr-defined]

    return _delete_despite_deadlocks(conn, delete_once, "The jobs")


# Built once: the hot read paths run them with bound parameters only.
_PAGE_QUERY = (select(Job.__table__).where(Job.collection_id == bindparam("collection_id"))
               .order_by(Job.job_key).limit(bindparam("top")).offset(bindparam("skip")))
_PAGE = CompiledStatement(_PAGE_QUERY)
_PAGE_OF_STATE = CompiledStatement(_PAGE_QUERY.where(Job.state == bindparam("state")))
UNLIMITED = 2**62


_JOB_BY_PATH = CompiledStatement(job_by_path(JOBS))


def read_job(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
             job_id: str) -> StoredJob:
    """A job's row found by its path in one query; 404 naming what does not exist."""
    params = {**path_params(subscription_id, cloud_service, collection),
              "job_key": job_id.lower()}
    row = _JOB_BY_PATH.first(conn, params)
    if row is None:
        collection_id(conn, subscription_id, cloud_service, collection)
        raise NotFound(f"The job {job_id} does not exist.")
    return cast("StoredJob", row)


def read_jobs(
    conn: Connection, collection_id: int, state: str | None, top: int | None, skip: int
) -> list[StoredJob]:
    """The collection's jobs by id, optionally of one state, one page."""
    params = {"collection_id": collection_id, "top": UNLIMITED if top is None else top,
              "skip": skip, "state": state}
    return cast("list[StoredJob]", (_PAGE if state is None else _PAGE_OF_STATE).all(conn, params))


def list_jobs(session: Session, collection_id: int) -> list[Job]:
    """Every job of the collection, by id, as models to change."""
    return list(session.scalars(
        select(Job).where(Job.collection_id == collection_id).order_by(Job.job_key)))


def set_all_job_states(session: Session, collection_id: int, state: str,
                       change: StateChange) -> int:
    """Enable or disable every job of the collection that is not finished; a job enabled
    again replays nothing, as one enabled by itself does. None waits for a time to be
    enabled afterwards: each stays as the change leaves it. Those whose state changes, or
    that waited, are stamped with `change` (who, when, why); returns how many changed
    state."""
    jobs = session.scalars(select(Job).where(
        Job.collection_id == collection_id, Job.state.not_in(FINAL_STATES)).with_for_update())
    now, changed = change.at, 0
    for job in jobs:
        if state != job.state or job.disabled_until is not None:
            changed += state != job.state
            if state == JobState.ENABLED:
                job.next_execution_time = fire_time_from(
                    job.definition, job.created_at, job.execution_count, now,
                    job.next_execution_time, job.job_id)
            job.state_note, job.state_changed_by, job.state_changed_at = \
                change.note, change.by, change.at
        job.state, job.etag, job.updated_at, job.disabled_until = state, new_etag(), now, None
    return changed


def list_history(
    session: Session, job: Job, status: str | None, top: int | None, skip: int
) -> list[HistoryEntry]:
    """A job's history, newest first, optionally of one status, one page."""
    query = select(HistoryEntry).where(HistoryEntry.job_pk == job.id)
    if status is not None:
        query = query.where(HistoryEntry.status == status)
    query = query.order_by(HistoryEntry.id.desc()).offset(skip)
    if top is not None:
        query = query.limit(top)
    return list(session.scalars(query))


def shown_definition(stored: str) -> JobDefinition | None:
    """A stored job's definition as it is shown: its secrets left sealed; None if it does
    not read (the engine faults such a job, and says why in its state details)."""
    try:
        return public_definition(stored)
    except StoredJobError:
        return None


def readable_definition(job: Job | Record) -> JobDefinition:
    """A job's definition, its secrets left sealed; 409 if it does not read."""
    definition = shown_definition(job.definition)
    if definition is None:
        raise Conflict(f"The job {job.job_id}'s stored definition does not read (see its "
                       "state details); put the job whole to replace it.")
    return definition


def job_schedule(job: StoredJob) -> tuple[datetime | None, Recurrence | None]:
    """A job's start time and recurrence."""
    return stored_schedule(job.definition)


def opened_definition(job: Job | Record, box: SecretBox) -> JobDefinition:
    """A job's definition with its secrets opened; 409 if they do not open with the box."""
    try:
        return open_definition(job.definition, job.secrets, box)
    except SealedSecretsError:
        raise Conflict(f"The job {job.job_id}'s secrets do not open with this home's keys "
                       "(secret.key); put the job whole to replace them.") from None


def keep_final_state(job: Job | Record, spec: JobSpec, patch_sets_state: bool) -> None:
    """A job that ended stays ended through a patch, unless the patch sets its state."""
    if job.state in FINAL_STATES and not patch_sets_state:
        spec.state = job.state
