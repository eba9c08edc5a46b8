"""Jobs and their history."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select
from sqlalchemy.orm import Session

from scheduler.db.compiled import CompiledStatement, Record
from scheduler.db.models import CloudService, HistoryEntry, Job, JobCollection
from scheduler.domain.jobs import JobSpec
from scheduler.domain.occurrences import upcoming
from scheduler.domain.quotas import QuotaExceeded, check_job_count, check_recurrence
from scheduler.domain.states import FINAL_JOB_STATES
from scheduler.errors import BadRequest, Conflict, NotFound, PreconditionFailed
from scheduler.security.secrets import SecretBox
from scheduler.services import new_etag
from scheduler.services.collections import (
    COLLECTION_BY_PATH,
    collection_id,
    collection_limits,
    path_params,
)
from scheduler.services.definitions import with_secrets
from scheduler.services.executions import open_inline_runs
from scheduler.settings import PlanSettings

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", re.ASCII)
FINAL_STATES = FINAL_JOB_STATES


def check_job_id(job_id: str) -> None:
    """Job ids are 1-100 letters, digits, '-', '_' and '.'."""
    if not JOB_ID.fullmatch(job_id):
        raise BadRequest(f"The job id {job_id!r} is not valid: use 1-100 letters, digits, "
                         "'-', '_' and '.', starting with a letter or digit.")


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


def check_preconditions(job: Job | None, if_match: str | None, if_none_match: str | None) -> None:
    """Honour `If-Match` and `If-None-Match: *`."""
    if if_none_match == "*" and job is not None:
        raise PreconditionFailed(f"The job {job.job_id} already exists.")
    if if_match not in (None, "*") and (job is None or if_match.strip('"') != job.etag):
        raise PreconditionFailed("The job was changed since the given ETag was read.")
    if if_match == "*" and job is None:
        raise PreconditionFailed("The job does not exist.")


def _check_quota(
    session: Session, collection: JobCollection, spec: JobSpec, is_new: bool,
    plans: Mapping[str, PlanSettings],
) -> None:
    limits = collection_limits(collection, plans)
    try:
        if is_new:
            count = session.scalar(
                select(func.count()).select_from(Job).where(Job.collection_id == collection.id))
            # Runs of inline definitions count as jobs while they are open.
            check_job_count(limits, int(count or 0) + open_inline_runs(session, collection.id)
                            + 1)
        check_recurrence(limits, spec.recurrence)
    except QuotaExceeded as exc:
        raise Conflict(f"The job breaks a quota: {exc}.") from None
    if spec.uses_authentication and collection.plan == "Free":
        raise Conflict("Outbound authentication is not available on the Free plan.")


def save_job(
    session: Session, collection: JobCollection, job_id: str, spec: JobSpec,
    box: SecretBox, plans: Mapping[str, PlanSettings], now: datetime,
    existing: Job | None,
) -> Job:
    """Create a job or replace an existing one with a valid spec, within the quotas."""
    _check_quota(session, collection, spec, existing is None, plans)
    job = existing or Job(
        collection_id=collection.id, job_id=job_id, job_key=job_id.lower(), created_at=now,
        execution_count=0, failure_count=0, faulted_count=0,
    )
    job.definition = json.dumps(spec.definition, separators=(",", ":"))
    job.secrets = box.seal(spec.secrets)
    job.state = spec.state
    job.state_details = spec.state_details
    job.shortest_gap_seconds = spec.shortest_gap_seconds
    job.uses_authentication = spec.uses_authentication
    job.etag = new_etag()
    job.updated_at = now
    job.next_execution_time = next_fire_time(spec, job.created_at, now, job.execution_count)
    if job.next_execution_time is None and spec.recurrence is not None \
            and job.execution_count == 0:
        raise BadRequest("recurrence: the schedule never fires (before its endTime, if any)")
    if existing is None:
        session.add(job)
    session.flush()
    return job


def next_fire_time(spec: JobSpec, created: datetime, now: datetime,
                   executed: int) -> datetime | None:
    """When a job fires next, if ever."""
    return next(upcoming(spec.recurrence, spec.start_time, created, now, executed), None)


def new_job_id() -> str:
    """An id for a job created with POST."""
    return uuid.uuid4().hex


def delete_job(session: Session, collection_id: int, job_id: str,
               if_match: str | None = None) -> datetime | None:
    """Delete a job and its history; returns when it would have fired next."""
    job = get_job(session, collection_id, job_id, for_update=True)
    check_preconditions(job, if_match, None)
    session.execute(delete(Job).where(Job.id == job.id))
    return job.next_execution_time


def engines_must_know(fire_times: Iterable[datetime | None], now: datetime,
                      horizon: timedelta) -> bool:
    """Whether a job changed with these next fire times (before and after) must be signalled
    to the engines: one of them falls within `horizon` (an engine readies calls, and sleeps,
    for at most that long), or has passed. Later ones every engine finds on its next pass."""
    return any(moment is not None and moment <= now + horizon for moment in fire_times)


# Built once: the hot read paths run them with bound parameters only.
_PAGE_QUERY = (select(Job.__table__).where(Job.collection_id == bindparam("collection_id"))
               .order_by(Job.job_key).limit(bindparam("top")).offset(bindparam("skip")))
_PAGE = CompiledStatement(_PAGE_QUERY)
_PAGE_OF_STATE = CompiledStatement(_PAGE_QUERY.where(Job.state == bindparam("state")))
UNLIMITED = 2**62


_JOB_BY_PATH = CompiledStatement(
    select(Job.__table__)
    .join(JobCollection, JobCollection.id == Job.collection_id)
    .join(CloudService, COLLECTION_BY_PATH[0])
    .where(*COLLECTION_BY_PATH[1:], Job.job_key == bindparam("job_key"))
)


def read_job(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
             job_id: str) -> Record:
    """A job's row found by its path in one query; 404 naming what does not exist."""
    params = {**path_params(subscription_id, cloud_service, collection),
              "job_key": job_id.lower()}
    row = _JOB_BY_PATH.first(conn, params)
    if row is None:
        collection_id(conn, subscription_id, cloud_service, collection)
        raise NotFound(f"The job {job_id} does not exist.")
    return row


def read_jobs(
    conn: Connection, collection_id: int, state: str | None, top: int | None, skip: int
) -> list[Record]:
    """The collection's jobs by id, optionally of one state, one page."""
    params = {"collection_id": collection_id, "top": UNLIMITED if top is None else top,
              "skip": skip, "state": state}
    return (_PAGE if state is None else _PAGE_OF_STATE).all(conn, params)


def list_jobs(session: Session, collection_id: int) -> list[Job]:
    """Every job of the collection, by id, as models to change."""
    return list(session.scalars(
        select(Job).where(Job.collection_id == collection_id).order_by(Job.job_key)))


def set_all_job_states(session: Session, collection_id: int, state: str, now: datetime) -> None:
    """Enable or disable every job of the collection that is not finished."""
    jobs = session.scalars(select(Job).where(
        Job.collection_id == collection_id, Job.state.not_in(FINAL_STATES)).with_for_update())
    for job in jobs:
        job.state, job.etag, job.updated_at = state, new_etag(), now


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


def job_definition(job: Job | Record) -> dict[str, Any]:
    """The stored public definition of a job."""
    value: dict[str, Any] = json.loads(job.definition)
    return value


def patchable_document(job: Job, box: SecretBox) -> dict[str, Any]:
    """The whole document a merge patch applies to: the job's definition with its secrets
    put back, its state (unless the job ended) and its state details."""
    current = with_secrets(job_definition(job), box.open(job.secrets))
    if job.state not in FINAL_STATES:
        current["state"] = job.state
    if job.state_details:
        current["stateDetails"] = job.state_details
    return current


def keep_final_state(job: Job, spec: JobSpec, patch_sets_state: bool) -> None:
    """A job that ended stays ended through a patch, unless the patch sets its state."""
    if job.state in FINAL_STATES and not patch_sets_state:
        spec.state = job.state
