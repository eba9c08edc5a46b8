"""Resource Manager's jobs: listed, read, put, patched, deleted and run; and their
history. A job's `properties` is the job codec's document in Resource Manager's spelling
(`scheduler.api.arm.documents`): both APIs read and write the same typed job."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g

from scheduler.api.arm import paths
from scheduler.api.arm.documents import (
    HISTORY_TYPE,
    JOB_TYPE,
    PROVIDER,
    arm_spelling,
    asm_spelling,
    page,
    resource,
)
from scheduler.api.arm.requests import api_version, next_link, page_bounds
from scheduler.api.engines import live_names_for, note_queued_without_engine
from scheduler.api.executions import check_runnable
from scheduler.api.jobs import (
    HISTORY_STATUSES,
    check_waits,
    history_json,
    job_json,
    parse_document,
    patch_and_answer,
    put_and_answer,
    take_disabled_until,
    take_state_note,
)
from scheduler.api.jobs import delete_job as delete_asm_job
from scheduler.api.requests import equality_filter, read_json
from scheduler.api.responses import json_response
from scheduler.api.runtime import call, read_connection, snapshot, transaction
from scheduler.api.schemas.executions import execution_json
from scheduler.api.schemas.jobs import MAX_JOB_BYTES
from scheduler.domain.jobs import STATES, JobSpec
from scheduler.errors import BadRequest
from scheduler.services import collections, executions
from scheduler.services import jobs as services
from scheduler.services.calls import record_and_wake
from scheduler.services.records import HistoryRecord, StoredJob

bp = Blueprint("arm_jobs", __name__)

# Members a client may send back as it read them, which a write does not take.
READ_ONLY = ("status",)


@bp.before_request
def _api_version() -> None:
    api_version()


# --- documents -----------------------------------------------------------------------------

def job_id_path(group: str, collection: str, job_id: str) -> str:
    """A job's resource id."""
    return (f"/subscriptions/{g.subscription_id}/resourceGroups/{group}/providers/"
            f"{PROVIDER}/jobCollections/{collection}/jobs/{job_id}")


def job_resource(job: StoredJob, group: str, collection: str) -> dict[str, Any]:
    """A job as Resource Manager's resource: `properties` is the ASM API's document of it
    (without `id`), respelled."""
    document = json.loads(job_json(job))
    del document["id"]
    return resource(job_id_path(group, collection, job.job_id), JOB_TYPE,
                    f"{collection}/{job.job_id}", arm_spelling(document))


def history_resource(entry: HistoryRecord, job: StoredJob, group: str,
                     collection: str) -> dict[str, Any]:
    """A history entry as a resource, named by the entry's own id."""
    properties = history_json(entry, job.job_id)
    del properties["jobId"]
    return resource(f"{job_id_path(group, collection, job.job_id)}/history/{entry.id}",
                    HISTORY_TYPE, f"{collection}/{job.job_id}/{entry.id}",
                    arm_spelling(properties))


def _properties(body: Any) -> dict[str, Any]:
    """The job document under a resource's `properties`, in the ASM API's spelling."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise BadRequest("properties: is required, and must be an object.")
    document: dict[str, Any] = asm_spelling(properties)
    for key in READ_ONLY:
        document.pop(key, None)
    return document


def _parse(document: Any, job_id: str) -> JobSpec:
    return parse_document(document, job_id, "properties")


def _answer(written: services.Written, group: str, collection: str, status: int) -> Response:
    return json_response(job_resource(written.job, group, collection), status,
                         {"ETag": f'"{written.job.etag}"'})


# --- routes --------------------------------------------------------------------------------

@bp.get(paths.JOBS, strict_slashes=False)
def list_jobs(sub: str, rg: str, jc: str) -> Response:
    """One page of the collection's jobs: `$filter=state eq 'X'`, `$top`, `$skip`."""
    state = equality_filter("state", STATES)
    top, skip = page_bounds()
    conn = read_connection()
    found = services.read_jobs(conn, collections.collection_id(conn, g.subscription_id, rg, jc),
                               state, top + 1, skip)
    values = [job_resource(job, rg, jc) for job in found[:top]]
    return json_response(page(values, next_link(top, skip, len(found) > top)))


@bp.get(paths.JOB, strict_slashes=False)
def get_job(sub: str, rg: str, jc: str, job_id: str) -> Response:
    """One job."""
    job = services.read_job(read_connection(), g.subscription_id, rg, jc, job_id)
    return json_response(job_resource(job, rg, jc), headers={"ETag": f'"{job.etag}"'})


@bp.put(paths.JOB, strict_slashes=False)
def put_job(sub: str, rg: str, jc: str, job_id: str) -> Response:
    """Create a job (201) or replace it whole (200): what the document leaves out, the job
    no longer has; `stateNote` is the write's note, `disabledUntil` the time a disabled job
    waits until."""
    document = _properties(read_json(MAX_JOB_BYTES))
    note = take_state_note(document, "properties", null_clears=False)
    until = take_disabled_until(document, "properties")
    spec = check_waits(_parse(document, job_id), until, "properties")
    return put_and_answer(rg, jc, job_id, spec,
                          lambda written, status: _answer(written, rg, jc, status), note=note,
                          until=until, where="properties")


@bp.patch(paths.JOB, strict_slashes=False)
def patch_job(sub: str, rg: str, jc: str, job_id: str) -> Response:
    """Merge a partial document into a job, as the ASM API's PATCH does."""
    patch = _properties(read_json(MAX_JOB_BYTES))
    return patch_and_answer(rg, jc, job_id, patch, "properties",
                            lambda written, status: _answer(written, rg, jc, status))


@bp.delete(paths.JOB, strict_slashes=False)
def delete_job(sub: str, rg: str, jc: str, job_id: str) -> Response:
    """Delete a job and its history (200, the only success the client takes)."""
    return delete_asm_job(sub, rg, jc, job_id)


@bp.post(paths.JOB + "/run", strict_slashes=False)
def run_job(sub: str, rg: str, jc: str, job_id: str) -> Response:
    """Run a job now, outside its schedule: 200 (the only success the client takes) with
    the execution started."""
    context = call()
    with transaction() as session:
        execution, name = executions.start_job_run(session, context, rg, jc, job_id, {},
                                                   check_runnable({}))
        record_and_wake(session, context, "execution.run", 200)
        live = live_names_for(session, [execution])
        return note_queued_without_engine(
            session, json_response(execution_json(execution, name, live)))


@bp.get(paths.JOB + "/history", strict_slashes=False)
def job_history(sub: str, rg: str, jc: str, job_id: str) -> Response:
    """One page of a job's history, newest first: `$filter=status eq 'X'`, `$top`,
    `$skip`."""
    status = equality_filter("status", HISTORY_STATUSES)
    top, skip = page_bounds()
    with snapshot() as session:
        job, entries = services.read_history(session, call(), rg, jc, job_id, status,
                                             top + 1, skip)
        values = [history_resource(entry, job, rg, jc) for entry in entries[:top]]
    return json_response(page(values, next_link(top, skip, len(entries) > top)))
