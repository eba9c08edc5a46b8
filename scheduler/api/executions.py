"""Executions: run a job now, run an inline definition once, watch, cancel and resume; the
events of one. Runs, cancels and resumes are audited, naming the caller."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, g, request
from sqlalchemy.orm import Session

from scheduler.api.auth import peer_certificate
from scheduler.api.engines import live_names_for, note_queued_without_engine
from scheduler.api.origin import absolute_url
from scheduler.api.requests import (
    check_api_version,
    equality_filter,
    field_error,
    paging,
    read_json,
)
from scheduler.api.responses import json_response
from scheduler.api.runtime import call, read_connection, runtime, snapshot, transaction
from scheduler.api.schemas.executions import (
    EXECUTION_STATUSES,
    execution_json,
    parse_backfill,
    parse_cancel,
    parse_inline,
    parse_run,
)
from scheduler.api.schemas.job_codec import encode
from scheduler.api.schemas.jobs import MAX_JOB_BYTES
from scheduler.api.schemas.templates import check_placeholders
from scheduler.domain import InvalidField
from scheduler.domain.durations import format_datetime
from scheduler.domain.jobs import JobDefinition
from scheduler.security import pki
from scheduler.services import backfill, executions
from scheduler.services.calls import record_and_wake
from scheduler.services.executions import ExecutionEventRecord
from scheduler.services.records import ExecutionRecord

bp = Blueprint("executions", __name__)

COLLECTION = "/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>"
JOB = COLLECTION + "/jobs/<job_id>"
# Every execution is reached under its collection; one of a job, under its job as well.
PLACES = (COLLECTION + "/executions/<execution_id>", JOB + "/executions/<execution_id>")


@bp.before_request
def _api_version() -> None:
    check_api_version()


# --- helpers -------------------------------------------------------------------------------

def _optional_json() -> object:
    """The body as JSON, or None when there is none."""
    if not request.get_data(cache=True).strip():
        return None
    return read_json(MAX_JOB_BYTES)


def _answer(session: Session, execution: ExecutionRecord, job_id: str | None,
            status: int = 200, location: str | None = None) -> Response:
    headers = {"ETag": f'"{executions.execution_etag(execution)}"'}
    if location is not None:
        headers["Location"] = location
    live = live_names_for(session, [execution])
    return json_response(execution_json(execution, job_id, live), status, headers)


def _requester() -> str:
    """Who makes this request, as a cancel's history names them: the client certificate's
    thumbprint, and its subject (authentication has read the certificate already); or the
    service principal whose bearer token it carries."""
    client_id = g.get("client_id")
    if client_id:
        return f"service principal {client_id}"
    server = runtime().settings.server
    der = peer_certificate(request.environ, server.trusted_proxies, server.client_cert_header)
    try:
        subject = pki.load_certificate(der).subject.rfc4514_string() if der else None
    except ValueError:  # a thumbprint that matched is enough to say who it was
        subject = None
    thumbprint: str = g.thumbprint
    return f"certificate {thumbprint}" + (f" (subject {subject})" if subject else "")


def check_runnable(parameters: dict[str, Any]) -> Callable[[JobDefinition], None]:
    """What a job's definition must hold to run with `parameters` over its own: a value for
    each placeholder it names."""
    def check(definition: JobDefinition) -> None:
        try:
            check_placeholders(encode(definition), {**definition.parameters, **parameters},
                               require_values=True)
        except InvalidField as exc:
            raise field_error(exc) from None
    return check


# --- starting ------------------------------------------------------------------------------

@bp.post(JOB + "/run", strict_slashes=False)
def run_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """Run a job now, with optional parameters, outside its schedule (202)."""
    try:
        asked = parse_run(_optional_json())
    except InvalidField as exc:
        raise field_error(exc) from None
    context = call()
    with transaction() as session:
        execution, name = executions.start_job_run(
            session, context, cs, jc, job_id, asked.parameters,
            check_runnable(asked.parameters), overlap=asked.overlap, run_on=asked.run_on)
        record_and_wake(session, context, "execution.run", 202)
        base = absolute_url(request.path.rsplit("/", 1)[0])
        return note_queued_without_engine(session, _answer(
            session, execution, name, 202, f"{base}/executions/{execution.id}"))


@bp.post(JOB + "/backfill", strict_slashes=False)
def backfill_job(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """Run the occurrences of a past range of the job's schedule now (202), each as a new
    execution of trigger `backfill`."""
    try:
        asked = parse_backfill(read_json(MAX_JOB_BYTES))
    except InvalidField as exc:
        raise field_error(exc) from None
    context = call()
    with transaction() as session:
        made, name = backfill.backfill_job(session, context, cs, jc, job_id, asked)
        record_and_wake(session, context, "job.backfill", 202)
        return note_queued_without_engine(session, json_response({
            "executions": [execution_json(run, name) for run in made.runs.runs],
            "leftOut": {"ranAlready": made.ran_already, "excluded": made.excluded}}, 202))


@bp.post(COLLECTION + "/executions", strict_slashes=False)
def run_inline(sub: str, cs: str, jc: str) -> Response:
    """Run an action once without storing a job (202)."""
    rt = runtime()
    try:
        spec = parse_inline(read_json(MAX_JOB_BYTES), rt.clock.now(), rt.settings.outbound,
                            rt.settings.broker_kinds)
    except InvalidField as exc:
        raise field_error(exc) from None
    context = call()
    with transaction() as session:
        execution = executions.start_inline_run(session, context, cs, jc, spec)
        record_and_wake(session, context, "execution.inline", 202)
        base = absolute_url(request.path.rstrip("/"))
        return note_queued_without_engine(
            session, _answer(session, execution, None, 202, f"{base}/{execution.id}"))


# --- reading -------------------------------------------------------------------------------

@bp.get(JOB + "/executions", strict_slashes=False)
@bp.get(COLLECTION + "/executions", strict_slashes=False)
def list_executions(sub: str, cs: str, jc: str, job_id: str | None = None) -> Response:
    """Executions of a job or of a collection, newest first: `$filter=status eq 'X'`,
    `$top`, `$skip`."""
    status = equality_filter("status", EXECUTION_STATUSES)
    top, skip = paging()
    with snapshot() as session:
        found = executions.read_executions(session, call(), cs, jc, job_id, status, top, skip)
        live = live_names_for(session, [run for run, _name in found])
        return json_response([execution_json(run, name, live) for run, name in found])


@bp.get(PLACES[0], strict_slashes=False)
@bp.get(PLACES[1], strict_slashes=False)
def get_execution(sub: str, cs: str, jc: str, execution_id: str,
                  job_id: str | None = None) -> Response:
    """One execution, with its ETag."""
    with snapshot() as session:
        execution, name = executions.find_execution(session, call(), cs, jc, execution_id,
                                                    job_id)
        return _answer(session, execution, name)


@bp.get(PLACES[0] + "/events", strict_slashes=False)
def list_execution_events(sub: str, cs: str, jc: str, execution_id: str) -> Response:
    """What happened to an execution, as recorded when it happened, oldest first."""
    events = executions.read_execution_events(read_connection(), call().subscription_id, cs,
                                              jc, execution_id)
    return json_response({"value": [event_json(event) for event in events]})


def event_json(event: ExecutionEventRecord) -> dict[str, Any]:
    """An execution's event as the API shows it; the detail's names in camelCase."""
    return {"id": event.id, "time": format_datetime(event.at), "kind": event.kind,
            "node": event.node, "attempt": event.attempt, "detail": camel_keys(event.detail)}


def camel_keys(detail: Mapping[str, Any]) -> dict[str, Any]:
    """A detail's names (not those of the values it holds) in camelCase."""
    return {_CAMEL_PART.sub(lambda part: part.group(1).upper(), key): value
            for key, value in detail.items()}


_CAMEL_PART = re.compile(r"_([a-z0-9])")


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
    context = call()
    with transaction() as session:
        execution, _name, running = executions.cancel_run(
            session, context, cs, jc, execution_id, job_id, request.headers.get("If-Match"),
            _requester())
        record_and_wake(session, context, "execution.cancel", 204, wake=False,
                        canceled=[execution.id] if running else ())
        etag = executions.execution_etag(execution)
    return Response(b"", status=204, headers={"ETag": f'"{etag}"'})


@bp.post(PLACES[0] + "/resume", strict_slashes=False)
@bp.post(PLACES[1] + "/resume", strict_slashes=False)
def resume_execution(sub: str, cs: str, jc: str, execution_id: str,
                     job_id: str | None = None) -> Response:
    """Resume a paused execution: retry its failed step, or run its manual step (202)."""
    context = call()
    with transaction() as session:
        execution, name = executions.resume_run(session, context, cs, jc, execution_id,
                                                job_id, request.headers.get("If-Match"))
        record_and_wake(session, context, "execution.resume", 202)
        return _answer(session, execution, name, 202)
