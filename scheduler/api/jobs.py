"""Jobs and job history: the JSON half of the ASM API."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, g, request
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from scheduler.api.requests import (
    check_api_version,
    equality_filter,
    field_error,
    paging,
    read_json,
)
from scheduler.api.responses import json_response
from scheduler.api.runtime import read_connection, request_id, runtime, snapshot, transaction
from scheduler.api.schemas.jobs import (
    MAX_JOB_BYTES,
    merge_patch,
    parse_job,
)
from scheduler.api.schemas.templates import check_placeholders
from scheduler.db.compiled import Record
from scheduler.db.models import HistoryEntry, Job, JobCollection
from scheduler.db.notify import announce_on_commit
from scheduler.domain import InvalidField
from scheduler.domain.durations import format_datetime
from scheduler.domain.jobs import STATES, JobSpec
from scheduler.domain.occurrences import upcoming
from scheduler.domain.states import SETTABLE_JOB_STATES, JobState
from scheduler.errors import BadRequest
from scheduler.services import collections
from scheduler.services import jobs as services
from scheduler.services.definitions import read_schedule
from scheduler.services.operations import record_finished_operation

bp = Blueprint("jobs", __name__)

JOBS = "/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>/jobs"
HISTORY_STATUSES = ("completed", "failed", "postponed", "missed", "canceled")


@bp.before_request
def _api_version() -> None:
    check_api_version()


# --- documents -----------------------------------------------------------------------------

def job_json(job: Job | Record) -> str:
    """A job as Azure's JSON document: definition, state and status, no secrets.

    The stored definition is already compact JSON, so it is spliced in rather than parsed
    and written again: listing a page of jobs is mostly this.
    """
    status: dict[str, Any] = {}
    if job.last_execution_time is not None:
        status["lastExecutionTime"] = format_datetime(job.last_execution_time)
    if job.next_execution_time is not None and job.state not in services.FINAL_STATES:
        status["nextExecutionTime"] = format_datetime(job.next_execution_time)
    status["executionCount"] = job.execution_count
    status["failureCount"] = job.failure_count
    status["faultedCount"] = job.faulted_count
    tail: dict[str, Any] = {"state": job.state}
    if job.state_details:
        tail["stateDetails"] = job.state_details
    tail["status"] = status
    definition = job.definition.strip()
    inner = definition[1:-1]
    return (f'{{"id":{json.dumps(job.job_id)}{"," if inner else ""}{inner},'
            f"{json.dumps(tail, separators=(',', ':'))[1:]}")


def jobs_json(jobs: list[Job] | list[Record]) -> str:
    """A JSON array of jobs."""
    return "[" + ",".join(job_json(job) for job in jobs) + "]"


def history_json(entry: HistoryEntry, job_id: str) -> dict[str, Any]:
    """A history entry as Azure's JSON, with what ran: `executionId`, and in a sequence
    `stepIndex` (from 0, as an execution's `currentStep`) and `stepName`, each left out
    where the entry has none."""
    document: dict[str, Any] = {
        "jobId": job_id,
        "timestamp": format_datetime(entry.timestamp),
        "startTime": format_datetime(entry.start_time),
    }
    if entry.end_time is not None:
        document["endTime"] = format_datetime(entry.end_time)
    if entry.expected_execution_time is not None:
        document["expectedExecutionTime"] = format_datetime(entry.expected_execution_time)
    document.update({
        "state": entry.state, "status": entry.status, "actionName": entry.action_name,
        "message": entry.message, "retryCount": entry.retry_count,
        "repeatCount": entry.repeat_count,
    })
    for key, value in (("executionId", entry.execution_id), ("stepIndex", entry.step_index),
                       ("stepName", entry.step_name)):
        if value is not None:
            document[key] = value
    return document


def _etag_headers(job: Job | Record) -> dict[str, str]:
    return {"ETag": f'"{job.etag}"'}


# --- helpers -------------------------------------------------------------------------------

def _parse(document: Any, job_id: str | None) -> JobSpec:
    rt = runtime()
    try:
        return parse_job(document, now=rt.clock.now(), brokers=rt.settings.broker_kinds,
                         job_id=job_id,
                         private_networks=rt.settings.outbound.allow_private_networks)
    except InvalidField as exc:
        raise field_error(exc) from None


def _collection(session: Session, cs: str, jc: str, *, for_update: bool = False
                ) -> JobCollection:
    return collections.get_collection(session, g.subscription_id, cs, jc, for_update=for_update)


def _collection_id(conn: Connection, cs: str, jc: str) -> int:
    return collections.collection_id(conn, g.subscription_id, cs, jc)


def _job_to_write(session: Session, cs: str, jc: str, job_id: str) -> Record | None:
    return services.job_to_write(session.connection(), g.subscription_id, cs, jc, job_id)


def _require(session: Session, found: Record | None, cs: str, jc: str, job_id: str) -> Record:
    return services.require_job(session.connection(), found, g.subscription_id, cs, jc,
                                job_id)


def _replace(session: Session, found: Record, spec: JobSpec) -> Record:
    rt = runtime()
    return services.replace_job(session.connection(), found, spec, rt.box, rt.settings.plans,
                                rt.clock.now())


def _create(session: Session, cs: str, jc: str, job_id: str, spec: JobSpec) -> Record | None:
    rt = runtime()
    return services.create_job(session.connection(), g.subscription_id, cs, jc, job_id, spec,
                               rt.box, rt.settings.plans, rt.clock.now())


def _record(session: Session, kind: str, status: int,
            fire_times: tuple[datetime | None, ...] | None = None) -> None:
    """Make the call pollable, and wake the engines once the change is committed: always, or,
    given the job's next fire times before and after the change, when one of them is so near
    that an engine could otherwise sleep past it, or hold a call readied for it."""
    rt = runtime()
    now = rt.clock.now()
    record_finished_operation(session, request_id(), g.subscription_id, kind, status, now)
    if fire_times is None or services.engines_must_know(fire_times, now, _wake_horizon()):
        announce_on_commit(session, rt.settings.home)


def _wake_horizon() -> timedelta:
    """How far ahead an engine readies calls, and how long it may sleep: a job changed that
    fires later than this from now is seen by every engine in time without a signal."""
    engine = runtime().settings.engine
    return timedelta(seconds=engine.lookahead_seconds + engine.max_sleep_seconds)


# --- routes --------------------------------------------------------------------------------

@bp.get(JOBS, strict_slashes=False)
def list_jobs(sub: str, cs: str, jc: str) -> Response:
    """The collection's jobs: `$filter=state eq 'X'`, `$top`, `$skip`."""
    state = equality_filter("state", STATES)
    top, skip = paging()
    conn = read_connection()
    found = services.read_jobs(conn, _collection_id(conn, cs, jc), state, top, skip)
    return json_response(jobs_json(found))


@bp.post(JOBS, strict_slashes=False)
def create_job_with_new_id(sub: str, cs: str, jc: str) -> Response:
    """Create a job whose id the service makes."""
    job_id = services.new_job_id()
    spec = _parse(read_json(MAX_JOB_BYTES), None)
    with transaction() as session:
        job = _create(session, cs, jc, job_id, spec)
        assert job is not None, "a new random id is taken by no job"
        _record(session, "job.create", 201, (job.next_execution_time,))
        return json_response(job_json(job), 201, _etag_headers(job))


@bp.patch(JOBS, strict_slashes=False)
def set_all_states(sub: str, cs: str, jc: str) -> Response:
    """Enable or disable every job of the collection."""
    body = read_json(MAX_JOB_BYTES)
    if not isinstance(body, dict) or set(body) - {"state"} or "state" not in body:
        raise BadRequest('The body must be {"state": "enabled"} or {"state": "disabled"}.')
    state = str(body["state"]).lower() if isinstance(body["state"], str) else ""
    if state not in SETTABLE_JOB_STATES:
        raise BadRequest("state: must be enabled or disabled")
    rt = runtime()
    with transaction() as session:
        collection = _collection(session, cs, jc, for_update=True)
        if state == JobState.ENABLED:
            _check_enabling(services.list_jobs(session, collection.id))
        services.set_all_job_states(session, collection.id, state, rt.clock.now())
        _record(session, "jobs.state", 200)
        found = services.list_jobs(session, collection.id)
        return json_response(jobs_json(found))


def _check_enabling(jobs: list[Job]) -> None:
    """Jobs about to be enabled run on their own parameters: each placeholder they name
    must have its value there, as when one job is enabled."""
    for job in jobs:
        if job.state != JobState.DISABLED:
            continue
        document = json.loads(job.definition)
        try:
            check_placeholders(document, document.get("parameters") or {}, require_values=True)
        except InvalidField as exc:
            raise field_error(InvalidField(f"{job.job_id}: {exc.field}", exc.message)) from None


@bp.delete(JOBS, strict_slashes=False)
def delete_all_jobs(sub: str, cs: str, jc: str) -> Response:
    """Delete every job of the collection, with its history."""
    with transaction() as session:
        collection = _collection(session, cs, jc, for_update=True)
        services.delete_all_jobs(session, collection.id)
        _record(session, "jobs.delete", 200)
    return Response(b"", status=200)


@bp.get(JOBS + "/<job_id>", strict_slashes=False)
def get_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """One job."""
    job = services.read_job(read_connection(), g.subscription_id, cs, jc, job_id)
    return json_response(job_json(job), headers=_etag_headers(job))


@bp.put(JOBS + "/<job_id>", strict_slashes=False)
def put_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """Create a job (201) or replace it whole (200)."""
    services.check_job_id(job_id)
    spec = _parse(read_json(MAX_JOB_BYTES), job_id)
    if_match, if_none_match = request.headers.get("If-Match"), request.headers.get(
        "If-None-Match")
    with transaction() as session:
        existing = _job_to_write(session, cs, jc, job_id)
        job = None
        if existing is None:
            if if_match is not None:  # no job matches: 404 if its collection is missing
                _collection_id(session.connection(), cs, jc)
                services.check_preconditions(None, if_match, if_none_match)
            job = _create(session, cs, jc, job_id, spec)
            if job is None:  # made since it was looked for: this PUT replaces it
                existing = _job_to_write(session, cs, jc, job_id)
        if existing is not None:
            services.check_preconditions(existing, if_match, if_none_match)
            job = _replace(session, existing, spec)
        assert job is not None
        before = existing.next_execution_time if existing else None
        status = 200 if existing else 201
        _record(session, "job.put", status, (before, job.next_execution_time))
        return json_response(job_json(job), status, _etag_headers(job))


@bp.patch(JOBS + "/<job_id>", strict_slashes=False)
def patch_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """Merge a partial document into a job."""
    patch = read_json(MAX_JOB_BYTES)
    if not isinstance(patch, dict):
        raise BadRequest("The body must be a JSON object.")
    if "status" in patch:
        raise BadRequest("status: is read-only and cannot be patched")
    rt = runtime()
    with transaction() as session:
        found = _require(session, _job_to_write(session, cs, jc, job_id), cs, jc, job_id)
        services.check_preconditions(found, request.headers.get("If-Match"), None)
        spec = _parse(merge_patch(services.patchable_document(found, rt.box), patch),
                      found.job_id)
        services.keep_final_state(found, spec, "state" in patch)
        job = _replace(session, found, spec)
        _record(session, "job.patch", 200, (found.next_execution_time, job.next_execution_time))
        return json_response(job_json(job), 200, _etag_headers(job))


@bp.delete(JOBS + "/<job_id>", strict_slashes=False)
def delete_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """Delete a job and its history."""
    with transaction() as session:
        fired_next = services.delete_job(session.connection(), g.subscription_id, cs, jc,
                                         job_id, request.headers.get("If-Match"))
        _record(session, "job.delete", 200, (fired_next,))
    return Response(b"", status=200)


# Each skipped occurrence is computed: the cap keeps one request's work bounded.
MAX_OCCURRENCE_SKIP = 10_000


@bp.get(JOBS + "/<job_id>/occurrences", strict_slashes=False)
def job_occurrences(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """The next `$top` (default 10) fire times after `$skip`, honouring count and endTime."""
    top, skip = paging(MAX_OCCURRENCE_SKIP)
    job = services.read_job(read_connection(), g.subscription_id, cs, jc, job_id)
    if job.state in services.FINAL_STATES:
        return json_response([])
    start, recurrence = read_schedule(services.job_definition(job))
    times = upcoming(recurrence, start, job.created_at, runtime().clock.now(),
                     job.execution_count)
    page = itertools.islice(times, skip, skip + (top or 10))
    return json_response([format_datetime(t) for t in page])


@bp.get(JOBS + "/<job_id>/history", strict_slashes=False)
def job_history(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """A job's history, newest first: `$filter=status eq 'X'`, `$top`, `$skip`."""
    status = equality_filter("status", HISTORY_STATUSES)
    top, skip = paging()
    with snapshot() as session:
        collection = _collection(session, cs, jc)
        job = services.get_job(session, collection.id, job_id)
        entries = services.list_history(session, job, status, top, skip)
        return json_response([history_json(entry, job.job_id) for entry in entries])
