"""Jobs and job history: the JSON half of the ASM API."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, g, request

from scheduler.api.requests import (
    check_api_version,
    equality_filter,
    field_error,
    flag_parameter,
    paging,
    read_json,
)
from scheduler.api.responses import json_response
from scheduler.api.runtime import call, read_connection, runtime, snapshot, transaction
from scheduler.api.schemas.job_codec import encode
from scheduler.api.schemas.jobs import (
    MAX_JOB_BYTES,
    merge_patch,
    parse_datetime,
    parse_job,
    parse_state_note,
)
from scheduler.api.schemas.templates import check_placeholders
from scheduler.domain import InvalidField
from scheduler.domain.durations import format_datetime
from scheduler.domain.jobs import STATES, JobDefinition, JobSpec
from scheduler.domain.occurrences import upcoming
from scheduler.domain.states import SETTABLE_JOB_STATES, JobState
from scheduler.errors import BadRequest
from scheduler.services import collections
from scheduler.services import jobs as services
from scheduler.services.calendars import exclusion_of
from scheduler.services.calls import record_and_wake
from scheduler.services.records import HistoryRecord, StoredJob

bp = Blueprint("jobs", __name__)

JOBS = "/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>/jobs"
HISTORY_STATUSES = ("completed", "failed", "postponed", "missed", "canceled", "skipped")
# Who last set a job's state and when: the service writes them, a client cannot.
STATE_STAMP_MEMBERS = ("stateChangedBy", "stateChangedAt")
NOTE_MEMBER = "stateNote"
# When a disabled job is to be enabled again: a write's, kept apart from the definition.
UNTIL_MEMBER = "disabledUntil"


@bp.before_request
def _api_version() -> None:
    check_api_version()


# --- documents -----------------------------------------------------------------------------

def job_json(job: StoredJob) -> str:
    """A job as Azure's JSON document: definition, state and status, no secrets.

    A stored version's document is made once and spliced in: listing a page of jobs is
    mostly this.
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
    if job.state_note:
        tail["stateNote"] = job.state_note
    if job.state_changed_by:
        tail["stateChangedBy"] = job.state_changed_by
    if job.state_changed_at is not None:
        tail["stateChangedAt"] = format_datetime(job.state_changed_at)
    if job.disabled_until is not None:
        tail[UNTIL_MEMBER] = format_datetime(job.disabled_until)
    tail["status"] = status
    inner = _public_document(job.definition)
    return (f'{{"id":{json.dumps(job.job_id)}{"," if inner else ""}{inner},'
            f"{json.dumps(tail, separators=(',', ':'))[1:]}")


@functools.lru_cache(maxsize=4096)
def _public_document(stored: str) -> str:
    """The members of the document of a stored definition, without its secrets, as compact
    JSON without braces; made once per stored version (the text is its key)."""
    definition = services.shown_definition(stored)
    if definition is None:  # the job shows its state, which says why it cannot run
        return ""
    return json.dumps(encode(definition), separators=(",", ":"))[1:-1]


def jobs_json(jobs: Sequence[StoredJob]) -> str:
    """A JSON array of jobs."""
    return "[" + ",".join(job_json(job) for job in jobs) + "]"


def history_json(entry: HistoryRecord, job_id: str) -> dict[str, Any]:
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


def _etag_headers(job: StoredJob) -> dict[str, str]:
    return {"ETag": f'"{job.etag}"'}


# --- helpers -------------------------------------------------------------------------------

def parse_document(document: Any, job_id: str | None, where: str = "") -> JobSpec:
    """A job document read and checked as this service's settings allow; a field that
    does not hold is a 400 naming it (under `where`, the member that holds the job)."""
    rt = runtime()
    try:
        return parse_job(document, now=rt.clock.now(), brokers=rt.settings.broker_kinds,
                         job_id=job_id,
                         private_networks=rt.settings.outbound.allow_private_networks,
                         longest_timeout=rt.settings.outbound.longest_timeout)
    except InvalidField as exc:
        inner = exc.field.lstrip(".")
        field = f"{where}.{inner}" if where and inner else (inner or where)
        raise field_error(InvalidField(field, exc.message)) from None


def take_state_note(document: Any, where: str = "", *, null_clears: bool
                    ) -> services.StateNote | None:
    """Take a write's `stateNote` out of its job document (it says why the state is set, and
    is no part of the definition), checked; None when none is given. A null one clears the
    job's note where `null_clears` (a patch), and is none otherwise. The members the service
    writes (`stateChangedBy`, `stateChangedAt`) are refused, named under `where`."""
    if not isinstance(document, dict):
        return None
    prefix = f"{where}." if where else ""
    for key in STATE_STAMP_MEMBERS:
        if key in document:
            raise BadRequest(f"{prefix}{key}: is read-only and cannot be written")
    if NOTE_MEMBER not in document:
        return None
    value = document.pop(NOTE_MEMBER)
    if value is None:
        return services.StateNote(None) if null_clears else None
    try:
        return services.StateNote(parse_state_note(value, prefix + NOTE_MEMBER))
    except InvalidField as exc:
        raise field_error(exc) from None


def a_year_after(moment: datetime) -> datetime:
    """The same time a calendar year later (29 February: the 28th)."""
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:
        return moment.replace(year=moment.year + 1, day=28)


def parse_disabled_until(value: Any, now: datetime, name: str = UNTIL_MEMBER) -> datetime:
    """A time a disabled job is to be enabled again: an ISO-8601 date-time (UTC without an
    offset) after `now`, and at most a year after it."""
    moment = parse_datetime(value, name)
    if moment <= now:
        raise InvalidField(name, f"must be in the future (it is {format_datetime(now)} now)")
    if moment > a_year_after(now):
        raise InvalidField(name, "must be at most a year ahead")
    return moment


def take_disabled_until(document: Any, where: str = "") -> services.DisabledUntil | None:
    """Take a write's `disabledUntil` out of its job document (it says when the disabled
    job is to be enabled again, and is no part of the definition), checked; None when none
    is given, a null one clearing the job's time."""
    if not isinstance(document, dict) or UNTIL_MEMBER not in document:
        return None
    value = document.pop(UNTIL_MEMBER)
    if value is None:
        return services.DisabledUntil(None)
    name = f"{where}.{UNTIL_MEMBER}" if where else UNTIL_MEMBER
    try:
        return services.DisabledUntil(parse_disabled_until(value, runtime().clock.now(), name))
    except InvalidField as exc:
        raise field_error(exc) from None


def check_waits(spec: JobSpec, until: services.DisabledUntil | None, where: str = ""
                ) -> JobSpec:
    """A job written with a time to wait until must be disabled: 400 naming the member
    (under `where`) otherwise. Returns the spec."""
    if until is not None and until.at is not None and spec.state != JobState.DISABLED:
        prefix = f"{where}." if where else ""
        raise BadRequest(prefix + services.ONLY_DISABLED_WAITS)
    return spec


def check_waiting(where: str = "") -> services.CheckEnabling:
    """What checks a job that waits until a time to be enabled: then it runs on its own
    parameters, so each placeholder it names must have its value there, as when it is
    enabled; a 400 names `disabledUntil` (under `where`) and the placeholder's field."""
    name = f"{where}.{UNTIL_MEMBER}" if where else UNTIL_MEMBER

    def check(job_id: str, definition: JobDefinition) -> None:
        try:
            check_placeholders(encode(definition), definition.parameters, require_values=True)
        except InvalidField as exc:
            raise BadRequest(f"{name}: the job is enabled then, and {exc.field}: "
                             f"{exc.message}") from None

    return check


def patchable(definition: JobDefinition, state: str | None, details: str | None
              ) -> dict[str, Any]:
    """The whole document a merge patch applies to: the job's definition with its secrets,
    its state (None once it has ended) and its state details."""
    document = encode(definition, secrets=True)
    if state is not None:
        document["state"] = state
    if details:
        document["stateDetails"] = details
    return document


def _answer(written: services.Written, status: int) -> Response:
    return json_response(job_json(written.job), status, _etag_headers(written.job))


def check_enabling(job_id: str, definition: JobDefinition) -> None:
    """A job about to be enabled runs on its own parameters: each placeholder it names must
    have its value there, as when one job is enabled."""
    try:
        check_placeholders(encode(definition), definition.parameters, require_values=True)
    except InvalidField as exc:
        raise field_error(InvalidField(f"{job_id}: {exc.field}", exc.message)) from None


# --- routes --------------------------------------------------------------------------------

@bp.get(JOBS, strict_slashes=False)
def list_jobs(sub: str, cs: str, jc: str) -> Response:
    """The collection's jobs: `$filter=state eq 'X'`, `$top`, `$skip`."""
    state = equality_filter("state", STATES)
    top, skip = paging()
    conn = read_connection()
    found = services.read_jobs(conn, collections.collection_id(conn, g.subscription_id, cs, jc),
                               state, top, skip)
    return json_response(jobs_json(found))


@bp.post(JOBS, strict_slashes=False)
def create_job_with_new_id(sub: str, cs: str, jc: str) -> Response:
    """Create a job whose id the service makes."""
    document = read_json(MAX_JOB_BYTES)
    note = take_state_note(document, null_clears=False)
    until = take_disabled_until(document)
    spec = check_waits(parse_document(document, None), until)
    context = call()
    with transaction() as session:
        written = services.create_job_with_new_id(session, context, cs, jc, spec, note=note,
                                                  until=until, check_waiting=check_waiting())
        record_and_wake(session, context, "job.create", 201, fire_times=written.fire_times)
        return _answer(written, 201)


@bp.patch(JOBS, strict_slashes=False)
def set_all_states(sub: str, cs: str, jc: str) -> Response:
    """Enable or disable every job of the collection, saying why (`stateNote`)."""
    body = read_json(MAX_JOB_BYTES)
    if not isinstance(body, dict) or set(body) - {"state", NOTE_MEMBER} or "state" not in body:
        raise BadRequest('The body must be {"state": "enabled"} or {"state": "disabled"}, '
                         'with a "stateNote" if need be.')
    state = str(body["state"]).lower() if isinstance(body["state"], str) else ""
    if state not in SETTABLE_JOB_STATES:
        raise BadRequest("state: must be enabled or disabled")
    note = take_state_note(body, null_clears=False)
    context = call()
    with transaction() as session:
        found = services.set_collection_job_states(session, context, cs, jc, state,
                                                   check_enabling, note=note)
        record_and_wake(session, context, "jobs.state", 200)
        return json_response(jobs_json(found))


@bp.delete(JOBS, strict_slashes=False)
def delete_all_jobs(sub: str, cs: str, jc: str) -> Response:
    """Delete every job of the collection, with its history."""
    context = call()
    with transaction() as session:
        services.delete_collection_jobs(session, context, cs, jc)
        record_and_wake(session, context, "jobs.delete", 200)
    return Response(b"", status=200)


@bp.get(JOBS + "/<job_id>", strict_slashes=False)
def get_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """One job."""
    job = services.read_job(read_connection(), g.subscription_id, cs, jc, job_id)
    return json_response(job_json(job), headers=_etag_headers(job))


@bp.put(JOBS + "/<job_id>", strict_slashes=False)
def put_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """Create a job (201) or replace it whole (200)."""
    document = read_json(MAX_JOB_BYTES)
    note = take_state_note(document, null_clears=False)
    until = take_disabled_until(document)
    spec = check_waits(parse_document(document, job_id), until)
    return put_and_answer(cs, jc, job_id, spec, _answer, note=note, until=until)


def put_and_answer(cs: str, jc: str, job_id: str, spec: JobSpec,
                   answer: Callable[[services.Written, int], Response], *,
                   note: services.StateNote | None = None,
                   until: services.DisabledUntil | None = None, where: str = "") -> Response:
    """Create (201) or replace (200) a job whole, as either API's PUT does, with the note
    and the time to wait until that the write gives (a field that does not hold is named
    under `where`), and `answer` with what was written."""
    context = call()
    with transaction() as session:
        written = services.put_job(session, context, cs, jc, job_id, spec,
                                   request.headers.get("If-Match"),
                                   request.headers.get("If-None-Match"), note=note,
                                   until=until, check_waiting=check_waiting(where))
        status = 201 if written.created else 200
        record_and_wake(session, context, "job.put", status, fire_times=written.fire_times)
        return answer(written, status)


@bp.patch(JOBS + "/<job_id>", strict_slashes=False)
def patch_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """Merge a partial document into a job."""
    patch = read_json(MAX_JOB_BYTES)
    if not isinstance(patch, dict):
        raise BadRequest("The body must be a JSON object.")
    if "status" in patch:
        raise BadRequest("status: is read-only and cannot be patched")
    return patch_and_answer(cs, jc, job_id, patch, "", _answer)


def patch_and_answer(cs: str, jc: str, job_id: str, patch: dict[str, Any], where: str,
                     answer: Callable[[services.Written, int], Response]) -> Response:
    """Merge a partial document into a job, as either API's PATCH does (a field that does
    not hold is named under `where`; `stateNote` is the write's note, null clearing it;
    `disabledUntil` the time a job left disabled waits until, null clearing it), and
    `answer` with what was written."""
    note = take_state_note(patch, where, null_clears=True)
    until = take_disabled_until(patch, where)
    context = call()
    with transaction() as session:
        written = services.patch_job(
            session, context, cs, jc, job_id, request.headers.get("If-Match"),
            lambda *current: check_waits(parse_document(
                merge_patch(patchable(*current), patch), job_id, where), until, where),
            "state" in patch, note=note, until=until, check_waiting=check_waiting(where))
        record_and_wake(session, context, "job.patch", 200, fire_times=written.fire_times)
        return answer(written, 200)


@bp.delete(JOBS + "/<job_id>", strict_slashes=False)
def delete_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """Delete a job and its history (200, which is also the only success Resource Manager's
    clients take)."""
    context = call()
    with transaction() as session:
        fired_next = services.remove_job(session, context, cs, jc, job_id,
                                         request.headers.get("If-Match"))
        record_and_wake(session, context, "job.delete", 200, fire_times=(fired_next,))
    return Response(b"", status=200)


# Each skipped occurrence is computed: the cap keeps one request's work bounded.
MAX_OCCURRENCE_SKIP = 10_000


@bp.get(JOBS + "/<job_id>/occurrences", strict_slashes=False)
def job_occurrences(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """The next `$top` (default 10) fire times after `$skip`, honouring count and endTime;
    with `details=true`, each as an object that also names the calendar skipping it."""
    top, skip = paging(MAX_OCCURRENCE_SKIP)
    details = flag_parameter("details")
    conn = read_connection()
    job = services.read_job(conn, g.subscription_id, cs, jc, job_id)
    if job.state in services.FINAL_STATES:
        return json_response([])
    start, recurrence = services.job_schedule(job)
    times = upcoming(recurrence, start, job.created_at, runtime().clock.now(),
                     job.execution_count, job.job_id)
    page = list(itertools.islice(times, skip, skip + (top or 10)))
    if not details:
        return json_response([format_datetime(t) for t in page])
    excluding = exclusion_of(conn, g.subscription_id, cs, jc, recurrence)
    return json_response([occurrence_json(t, excluding) for t in page])


def occurrence_json(moment: datetime, excluding: Callable[[datetime], str | None] | None
                    ) -> dict[str, Any]:
    """One occurrence of the detailed preview: its time, and the calendar that skips it."""
    document: dict[str, Any] = {"time": format_datetime(moment)}
    calendar = None if excluding is None else excluding(moment)
    if calendar is not None:
        document["skippedBy"] = calendar
    return document


@bp.get(JOBS + "/<job_id>/history", strict_slashes=False)
def job_history(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """A job's history, newest first: `$filter=status eq 'X'`, `$top`, `$skip`."""
    status = equality_filter("status", HISTORY_STATUSES)
    top, skip = paging()
    with snapshot() as session:
        job, entries = services.read_history(session, call(), cs, jc, job_id, status, top, skip)
        return json_response([history_json(entry, job.job_id) for entry in entries])
