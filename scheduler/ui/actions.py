"""The dashboard's forms: run now, backfill, disable (until a time, if given) and enable with
a note, delete, cancel, resume, run again. Each goes through the use case the API's route calls,
and is audited under the session's certificate."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import g, request
from flask import redirect as flask_redirect
from werkzeug.wrappers import Response as WerkzeugResponse

from scheduler.api.executions import check_runnable
from scheduler.api.jobs import check_enabling, parse_disabled_until
from scheduler.api.requests import field_error
from scheduler.api.runtime import call, transaction
from scheduler.api.schemas.executions import parse_backfill
from scheduler.domain import InvalidField
from scheduler.domain.overlap import Overlap, validate_overlap
from scheduler.domain.states import SETTABLE_JOB_STATES, JobState
from scheduler.errors import BadRequest
from scheduler.services import backfill, executions
from scheduler.services import jobs as job_services
from scheduler.services.audit import MAX_NOTE_CHARS
from scheduler.services.backfill import BackfillRequest
from scheduler.services.calls import record_and_wake
from scheduler.ui.blueprint import PREFIX, bp
from scheduler.ui.pages import COLLECTION, JOB


def _redirect(path: str) -> WerkzeugResponse:
    """After a form, GET the page that shows its outcome (303: not posted again)."""
    return flask_redirect(path, code=303)


def _collection_path(cs: str, jc: str) -> str:
    return (f"{PREFIX}/{g.subscription_id}/cloudservices/{cs}/resources/scheduler/~/"
            f"jobcollections/{jc}")


def _note() -> str | None:
    note = request.form.get("note", "").strip()
    if len(note) > MAX_NOTE_CHARS:
        raise BadRequest(f"note: at most {MAX_NOTE_CHARS} characters, not {len(note)}")
    return note or None


def _state() -> str:
    state = request.form.get("state", "").lower()
    if state not in SETTABLE_JOB_STATES:
        raise BadRequest("state: must be enabled or disabled")
    return state


def _until(now: datetime) -> datetime | None:
    """The form's time a disabled job is to be enabled again (`until`, UTC unless it says
    otherwise); None when none is given."""
    text = request.form.get("until", "").strip()
    if not text:
        return None
    try:
        return parse_disabled_until(text, now, "until")
    except InvalidField as exc:
        raise field_error(exc) from None


def run_parameters() -> dict[str, Any]:
    """A run's parameters from its form: one field per parameter of the job
    (`param.NAME`), and any others as a JSON object (`parameters`)."""
    extra = request.form.get("parameters", "").strip()
    try:
        parameters = json.loads(extra) if extra else {}
    except ValueError as exc:
        raise BadRequest(f"parameters: not a JSON object ({exc})") from None
    if not isinstance(parameters, dict):
        raise BadRequest("parameters: must be a JSON object")
    for key, value in request.form.items():
        if key.startswith("param.") and key[6:]:
            parameters.setdefault(key[6:], value)
    return parameters


def _overlap() -> Overlap | None:
    """The overlap policy a form names in place of the job's; None: the job's."""
    value = request.form.get("overlap", "").strip()
    try:
        return validate_overlap(value, "overlap") if value else None
    except InvalidField as exc:
        raise field_error(exc) from None


def backfill_request() -> BackfillRequest:
    """A backfill from its form: `start` and `end` (ISO 8601; UTC without an offset, as a
    datetime-local field sends them), `onlyMissed` checked or not, `overlap`; read as the
    API reads its body, so that a form is refused as that body would be."""
    document = {"start": request.form.get("start", "").strip() or None,
                "end": request.form.get("end", "").strip() or None,
                "onlyMissed": "onlyMissed" in request.form,
                "overlap": request.form.get("overlap", "").strip() or None}
    try:
        return parse_backfill(document)
    except InvalidField as exc:
        raise field_error(exc) from None


@bp.post(JOB + "/run")
def run_now(sub: str, cs: str, jc: str, job_id: str) -> WerkzeugResponse:
    """Run a job now with the form's parameters, under the job's overlap policy or the one
    the form names; show its execution."""
    parameters, overlap = run_parameters(), _overlap()
    context = call()
    with transaction() as session:
        run, name = executions.start_job_run(session, context, cs, jc, job_id, parameters,
                                             check_runnable(parameters), note=_note(),
                                             overlap=overlap)
        record_and_wake(session, context, "execution.run", 202)
        execution_id = run.id
    return _redirect(f"{_collection_path(cs, jc)}/jobs/{name}/executions/{execution_id}")


@bp.post(JOB + "/backfill")
def backfill_now(sub: str, cs: str, jc: str, job_id: str) -> WerkzeugResponse:
    """Run the occurrences of a past range of the job's schedule now; back on the job's
    page, say how many runs it made and what it left out."""
    asked, note = backfill_request(), _note()
    context = call()
    with transaction() as session:
        made, name = backfill.backfill_job(session, context, cs, jc, job_id, asked,
                                           note=note)
        record_and_wake(session, context, "job.backfill", 202)
        counts = {"backfilled": len(made.runs.runs), "ranAlready": made.ran_already,
                  "excluded": made.excluded}
    return _redirect(f"{_collection_path(cs, jc)}/jobs/{name}?{urlencode(counts)}")


@bp.post(JOB + "/state")
def set_state(sub: str, cs: str, jc: str, job_id: str) -> WerkzeugResponse:
    """Disable or enable a job, with a note saying why; disabled, until a time if the form
    gives one (then the engine enables it again)."""
    state, note = _state(), _note()
    context = call()
    # The form's Enable shares the field with its Disable: enabling reads no time.
    until = _until(context.now) if state == JobState.DISABLED else None
    with transaction() as session:
        written = job_services.set_job_state(session, context, cs, jc, job_id, state, note,
                                             check_enabling, until)
        record_and_wake(session, context, "job.patch", 200, fire_times=written.fire_times)
        name = written.job.job_id
    return _redirect(f"{_collection_path(cs, jc)}/jobs/{name}")


@bp.post(COLLECTION + "/jobs/state")
def set_states(sub: str, cs: str, jc: str) -> WerkzeugResponse:
    """Disable or enable the jobs selected in a list, with one note."""
    state, note = _state(), _note()
    chosen = request.form.getlist("job")
    if not chosen:
        raise BadRequest("job: select at least one job")
    context = call()
    with transaction() as session:
        job_services.set_job_states(session, context, cs, jc, chosen, state, note,
                                   check_enabling)
        record_and_wake(session, context, "jobs.state", 200)
    return _redirect(f"{_collection_path(cs, jc)}/jobs")


@bp.post(JOB + "/delete")
def delete(sub: str, cs: str, jc: str, job_id: str) -> WerkzeugResponse:
    """Delete a job and its history, once its id is typed to confirm."""
    if request.form.get("confirm", "").strip().lower() != job_id.lower():
        raise BadRequest(f"confirm: type the job's id ({job_id}) to delete it")
    context = call()
    with transaction() as session:
        fired_next = job_services.remove_job(session, context, cs, jc, job_id, note=_note())
        record_and_wake(session, context, "job.delete", 200, fire_times=(fired_next,))
    return _redirect(f"{_collection_path(cs, jc)}/jobs")


def _execution_page(cs: str, jc: str, execution_id: str, job_id: str | None) -> str:
    base = _collection_path(cs, jc)
    return (f"{base}/jobs/{job_id}/executions/{execution_id}" if job_id
            else f"{base}/executions/{execution_id}")


@bp.post(COLLECTION + "/executions/<execution_id>/cancel")
@bp.post(JOB + "/executions/<execution_id>/cancel")
def cancel(sub: str, cs: str, jc: str, execution_id: str, job_id: str | None = None
           ) -> WerkzeugResponse:
    """Cancel an open execution; its history names the session's certificate."""
    context = call()
    with transaction() as session:
        found, name, running = executions.cancel_run(
            session, context, cs, jc, execution_id, job_id, None,
            f"certificate {g.thumbprint} ({context.actor}) in the dashboard", note=_note())
        record_and_wake(session, context, "execution.cancel", 204, wake=False,
                        canceled=[found.id] if running else ())
    return _redirect(_execution_page(cs, jc, execution_id, name))


@bp.post(COLLECTION + "/executions/<execution_id>/resume")
@bp.post(JOB + "/executions/<execution_id>/resume")
def resume(sub: str, cs: str, jc: str, execution_id: str, job_id: str | None = None
           ) -> WerkzeugResponse:
    """Resume a paused execution: retry its failed step, or run its manual step."""
    context = call()
    with transaction() as session:
        _found, name = executions.resume_run(session, context, cs, jc, execution_id, job_id,
                                             None, note=_note())
        record_and_wake(session, context, "execution.resume", 202)
    return _redirect(_execution_page(cs, jc, execution_id, name))


@bp.post(JOB + "/executions/<execution_id>/again")
def run_again(sub: str, cs: str, jc: str, execution_id: str, job_id: str
              ) -> WerkzeugResponse:
    """Run a job again with the parameters an execution of it ran with."""
    context = call()
    with transaction() as session:
        found, name = executions.find_execution(session, context, cs, jc, execution_id,
                                                job_id)
        parameters = json.loads(found.parameters or "{}")
        run, name = executions.start_job_run(session, context, cs, jc, job_id, parameters,
                                             check_runnable(parameters),
                                             note=f"again, as {execution_id}")
        record_and_wake(session, context, "execution.run", 202)
        new_id = run.id
    return _redirect(_execution_page(cs, jc, new_id, name))
