"""Executions: run a job now, run an inline definition once, watch, cancel and resume."""

from __future__ import annotations

import json

from flask import Blueprint, Response, g, request
from sqlalchemy.orm import Session

from scheduler.api.auth import peer_certificate
from scheduler.api.engines import note_queued_without_engine
from scheduler.api.origin import absolute_url
from scheduler.api.requests import (
    check_api_version,
    equality_filter,
    field_error,
    paging,
    read_json,
)
from scheduler.api.responses import json_response
from scheduler.api.runtime import request_id, runtime, snapshot, transaction
from scheduler.api.schemas.executions import (
    EXECUTION_STATUSES,
    execution_json,
    parse_cancel,
    parse_inline,
    parse_run,
)
from scheduler.api.schemas.jobs import MAX_JOB_BYTES
from scheduler.api.schemas.templates import check_placeholders
from scheduler.db.models import Execution, Job, JobCollection
from scheduler.db.notify import announce_on_commit
from scheduler.domain import InvalidField
from scheduler.security import pki
from scheduler.services import collections, executions
from scheduler.services import jobs as job_services
from scheduler.services.operations import record_finished_operation

bp = Blueprint("executions", __name__)

COLLECTION = "/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>"
JOB = COLLECTION + "/jobs/<job_id>"
# Every execution is reached under its collection; one of a job, under its job as well.
PLACES = (COLLECTION + "/executions/<execution_id>", JOB + "/executions/<execution_id>")


@bp.before_request
def _api_version() -> None:
    check_api_version()


# --- helpers -------------------------------------------------------------------------------

def _collection(session: Session, cs: str, jc: str, *, for_update: bool = False
                ) -> JobCollection:
    return collections.get_collection(session, g.subscription_id, cs, jc, for_update=for_update)


def _optional_json() -> object:
    """The body as JSON, or None when there is none."""
    if not request.get_data(cache=True).strip():
        return None
    return read_json(MAX_JOB_BYTES)


def _answer(execution: Execution, job_id: str | None, status: int = 200,
            location: str | None = None) -> Response:
    headers = {"ETag": f'"{executions.execution_etag(execution)}"'}
    if location is not None:
        headers["Location"] = location
    return json_response(execution_json(execution, job_id), status, headers)


def _job_of(session: Session, collection: JobCollection, job_id: str | None) -> Job | None:
    if job_id is None:
        return None
    return job_services.get_job(session, collection.id, job_id)


def _job_ids(session: Session, found: list[Execution]) -> dict[int, str]:
    """The job ids of the executions' jobs, by job row."""
    pks = {e.job_pk for e in found if e.job_pk is not None}
    return {job.id: job.job_id for job in (session.get(Job, pk) for pk in pks)
            if job is not None}


def _requester() -> str:
    """Who makes this request, as a cancel's history names them: the client certificate's
    thumbprint, and its subject (authentication has read the certificate already)."""
    server = runtime().settings.server
    der = peer_certificate(request.environ, server.trusted_proxies, server.client_cert_header)
    try:
        subject = pki.load_certificate(der).subject.rfc4514_string() if der else None
    except ValueError:  # a thumbprint that matched is enough to say who it was
        subject = None
    thumbprint: str = g.thumbprint
    return f"certificate {thumbprint}" + (f" (subject {subject})" if subject else "")


def _record(session: Session, kind: str, status: int, *, wake: bool = True,
            canceled: list[str] | None = None) -> None:
    """Make the call pollable, and, once it is committed, wake the engines (telling them
    what was canceled)."""
    rt = runtime()
    record_finished_operation(session, request_id(), g.subscription_id, kind, status,
                              rt.clock.now())
    if canceled or wake:
        announce_on_commit(session, rt.settings.home, canceled or ())


# --- starting ------------------------------------------------------------------------------

@bp.post(JOB + "/run", strict_slashes=False)
def run_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """Run a job now, with optional parameters, outside its schedule (202)."""
    try:
        parameters = parse_run(_optional_json())
    except InvalidField as exc:
        raise field_error(exc) from None
    rt = runtime()
    with transaction() as session:
        collection = _collection(session, cs, jc)
        job = executions.job_to_run(session, collection.id, job_id)
        document = json.loads(job.definition)
        try:
            check_placeholders(document, {**(document.get("parameters") or {}), **parameters},
                               require_values=True)
        except InvalidField as exc:
            raise field_error(exc) from None
        execution = executions.run_job_now(session, collection, job, parameters,
                                           rt.settings.plans, rt.clock.now())
        _record(session, "execution.run", 202)
        base = absolute_url(request.path.rsplit("/", 1)[0])
        return note_queued_without_engine(
            session, _answer(execution, job.job_id, 202, f"{base}/executions/{execution.id}"))


@bp.post(COLLECTION + "/executions", strict_slashes=False)
def run_inline(sub: str, cs: str, jc: str) -> Response:
    """Run an action once without storing a job (202)."""
    rt = runtime()
    try:
        spec = parse_inline(read_json(MAX_JOB_BYTES), rt.clock.now(), rt.settings.broker_kinds,
                            rt.settings.outbound.allow_private_networks)
    except InvalidField as exc:
        raise field_error(exc) from None
    with transaction() as session:
        collection = _collection(session, cs, jc, for_update=True)
        collections.check_authentication_allowed(collection.plan, spec.uses_authentication)
        execution = executions.run_inline(session, collection, spec.definition, spec.secrets,
                                    spec.definition.get("parameters") or {}, rt.box,
                                    rt.settings.plans, rt.clock.now())
        _record(session, "execution.inline", 202)
        base = absolute_url(request.path.rstrip("/"))
        return note_queued_without_engine(
            session, _answer(execution, None, 202, f"{base}/{execution.id}"))


# --- reading -------------------------------------------------------------------------------

@bp.get(JOB + "/executions", strict_slashes=False)
@bp.get(COLLECTION + "/executions", strict_slashes=False)
def list_executions(sub: str, cs: str, jc: str, job_id: str | None = None) -> Response:
    """Executions of a job or of a collection, newest first: `$filter=status eq 'X'`,
    `$top`, `$skip`."""
    status = equality_filter("status", EXECUTION_STATUSES)
    top, skip = paging()
    with snapshot() as session:
        collection = _collection(session, cs, jc)
        job = _job_of(session, collection, job_id)
        found = executions.list_executions(session, collection.id, job.id if job else None,
                                     status, top, skip)
        names = _job_ids(session, found)
        return json_response([execution_json(e, names.get(e.job_pk) if e.job_pk else None)
                              for e in found])


@bp.get(PLACES[0], strict_slashes=False)
@bp.get(PLACES[1], strict_slashes=False)
def get_execution(sub: str, cs: str, jc: str, execution_id: str,
                  job_id: str | None = None) -> Response:
    """One execution, with its ETag."""
    with snapshot() as session:
        execution, job = _find(session, cs, jc, execution_id, job_id)
        return _answer(execution, job.job_id if job else None)


def _find(session: Session, cs: str, jc: str, execution_id: str, job_id: str | None,
          *, for_update: bool = False) -> tuple[Execution, Job | None]:
    collection = _collection(session, cs, jc)
    job = _job_of(session, collection, job_id)
    execution = executions.get_execution(session, collection.id, execution_id,
                                   job.id if job else None, for_update=for_update)
    if job is None and execution.job_pk is not None:
        job = session.get(Job, execution.job_pk)
    return execution, job


# --- changing ------------------------------------------------------------------------------

@bp.patch(PLACES[0], strict_slashes=False)
@bp.patch(PLACES[1], strict_slashes=False)
def cancel_execution(sub: str, cs: str, jc: str, execution_id: str,
                     job_id: str | None = None) -> Response:
    """Cancel an execution with `{"status": "canceled"}` (204); 412 on a stale ETag, 409
    once it has finished. Its message and its job's history name the certificate that
    canceled it."""
    try:
        parse_cancel(read_json(MAX_JOB_BYTES))
    except InvalidField as exc:
        raise field_error(exc) from None
    rt = runtime()
    with transaction() as session:
        execution, _job = _find(session, cs, jc, execution_id, job_id, for_update=True)
        running = executions.cancel_execution(session, execution, request.headers.get("If-Match"),
                                              rt.clock.now(), _requester())
        _record(session, "execution.cancel", 204, wake=False,
                canceled=[execution.id] if running else None)
        etag = executions.execution_etag(execution)
    return Response(b"", status=204, headers={"ETag": f'"{etag}"'})


@bp.post(PLACES[0] + "/resume", strict_slashes=False)
@bp.post(PLACES[1] + "/resume", strict_slashes=False)
def resume_execution(sub: str, cs: str, jc: str, execution_id: str,
                     job_id: str | None = None) -> Response:
    """Resume a paused execution: retry its failed step, or run its manual step (202)."""
    rt = runtime()
    with transaction() as session:
        execution, job = _find(session, cs, jc, execution_id, job_id, for_update=True)
        executions.resume_execution(session, execution, request.headers.get("If-Match"),
                              rt.clock.now())
        _record(session, "execution.resume", 202)
        return _answer(execution, job.job_id if job else None, 202)
