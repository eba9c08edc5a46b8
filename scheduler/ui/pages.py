"""The dashboard's pages: overview, jobs, a job, an execution, audit, engine, collections,
certificates. Each reads through the services and renders a template."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, g, render_template, request

from scheduler.api.runtime import call, read_connection, runtime, snapshot
from scheduler.domain.dst import dst_marks
from scheduler.domain.occurrences import ABSOLUTE_UNITS, upcoming
from scheduler.domain.overlap import POLICIES
from scheduler.domain.recurrence import Recurrence
from scheduler.domain.states import ExecutionStatus
from scheduler.errors import NotFound
from scheduler.services import dashboard, dashboard_alerts, executions
from scheduler.services.audit import Target, read_changes
from scheduler.services.calendars import exclusion_of
from scheduler.services.jobs import FINAL_STATES
from scheduler.ui import charts, words
from scheduler.ui.blueprint import POLL_HIDDEN_MS, POLL_VISIBLE_MS, bp
from scheduler.ui.requests import answer_of, http_status, redacted_request

COLLECTION = "/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>"
JOB = COLLECTION + "/jobs/<job_id>"
PAGE_SIZE = 100
# Where the app keeps its subscriptions' fire lateness between overviews.
LATENESS_MEMO = "scheduler.ui.lateness"
UPCOMING = 20
# The counts a backfill's redirect carries back to its job's page.
BACKFILL_COUNTS = ("backfilled", "ranAlready", "excluded")


@bp.app_context_processor
def _page_context() -> dict[str, Any]:
    viewer = g.get("viewer")
    return {"viewer": viewer, "csrf": viewer.csrf_token if viewer else "",
            "read_only": runtime().settings.ui.read_only, "now": runtime().clock.now(),
            "words": words, "charts": charts, "http_status": http_status,
            "sub": g.get("subscription_id", ""), "poll_visible_ms": POLL_VISIBLE_MS,
            "poll_hidden_ms": POLL_HIDDEN_MS}


def _now() -> Any:
    return runtime().clock.now()


def _dead_after() -> timedelta:
    return timedelta(seconds=runtime().settings.engine.dead_after_seconds)


@bp.get("/<sub>/")
def overview(sub: str) -> str:
    """What needs attention first; the page title counts the failing jobs."""
    found = dashboard.overview(read_connection(), g.subscription_id, _now(), _dead_after(),
                               current_app.extensions[LATENESS_MEMO])
    return render_template("overview.html", overview=found)


def _job_list(cloud_service: str | None, collection: str | None) -> dict[str, Any]:
    page = max(0, request.args.get("page", 0, type=int))
    listing = dashboard.job_page(
        read_connection(), g.subscription_id, _now(), cloud_service=cloud_service,
        collection=collection, state=request.args.get("state") or None,
        mark=request.args.get("status") or None, search=request.args.get("q", "").strip(),
        page=page, size=PAGE_SIZE)
    schedules = {job.pk: dashboard.schedule_of(job) for job in listing.jobs}
    return {"listing": listing, "page": page, "pages": -(-listing.total // PAGE_SIZE),
            "schedules": schedules, "filters": request.args}


@bp.get("/<sub>/jobs")
def all_jobs(sub: str) -> str:
    """The jobs of every collection, failing first."""
    return render_template("jobs.html", collection=None, **_job_list(None, None))


@bp.get(COLLECTION + "/jobs")
def collection_jobs(sub: str, cs: str, jc: str) -> str:
    """The jobs of one collection, failing first; several can be disabled or enabled at
    once with one note."""
    line = collection_line(cs, jc)
    return render_template("jobs.html", collection=line, **_job_list(cs, jc))


def collection_line(cs: str, jc: str) -> dashboard.CollectionLine:
    """A collection of the session's subscription by its path, names as it spells them;
    404 when there is none."""
    for line in dashboard.collection_lines(read_connection(), g.subscription_id):
        if line.cloud_service.lower() == cs.lower() and line.name.lower() == jc.lower():
            return line
    raise NotFound(f"The job collection {cs}/{jc} does not exist.")


@bp.get(JOB)
def job(sub: str, cs: str, jc: str, job_id: str) -> str:
    """A job: its state and why, counters, actions, what runs next with DST marks, its
    recent runs, a calendar and durations, its alert rules and alerts, and its audit."""
    conn, now = read_connection(), _now()
    line = dashboard.find_job_line(conn, g.subscription_id, cs, jc, job_id, now)
    if line is None:
        raise NotFound(f"The job {job_id} does not exist in {cs}/{jc}.")
    start, recurrence = dashboard.schedule_of(line)
    zone = words.zone_of(recurrence)
    shown = [] if line.state in FINAL_STATES else list(itertools.islice(
        upcoming(recurrence, start, line.created_at, now, line.execution_count,
                 line.job_id), UPCOMING))
    wall_clock = recurrence is not None and recurrence.frequency not in ABSOLUTE_UNITS
    marks = dst_marks(shown, zone, wall_clock)
    today = charts.today_of(now)
    past = dashboard.daily_counts(conn, line.pk, now - timedelta(days=90))
    planned = dashboard.planned_per_day(line, now, days=30)
    definition = dashboard.definition_of(line)
    return render_template(
        "job.html", job=line, cs=cs, jc=jc, zone=zone,
        upcoming=list(zip(shown, marks, skipped_by(cs, jc, recurrence, shown), strict=True)),
        schedule=words.schedule_in_words(start, recurrence), definition=definition,
        timeout=words.attempt_timeout(definition, runtime().settings),
        policies=words.policies(definition, line.disabled_until, runtime().settings, now,
                                zone),
        backfilled=backfill_notice(), overlaps=POLICIES,
        parameters=dict(definition.parameters) if definition else {},
        heatmap=charts.heatmap(past, planned, today), strip=charts.run_strip(line.runs),
        durations=charts.duration_bars(line.runs),
        alert_rules=dashboard_alerts.job_rules(conn, g.subscription_id, cs, jc,
                                               definition.alerts if definition else None),
        alerts=dashboard_alerts.job_alerts(conn, g.subscription_id, cs, jc, line.job_id),
        changes=read_changes(conn, g.subscription_id,
                             Target(line.cloud_service, line.collection, line.job_id),
                             limit=20))


def backfill_notice() -> dict[str, int] | None:
    """What the backfill the page follows made (`?backfilled=N&ranAlready=N&excluded=N`,
    as the backfill form's redirect says), or None after no backfill."""
    counts = {key: request.args.get(key, type=int) for key in BACKFILL_COUNTS}
    if any(value is None or value < 0 for value in counts.values()):
        return None
    return {key: value for key, value in counts.items() if value is not None}


def skipped_by(cs: str, jc: str, recurrence: Recurrence | None, moments: list[datetime]
               ) -> list[str | None]:
    """For each upcoming time, the exclusion calendar that skips it, if any."""
    excluding = exclusion_of(read_connection(), g.subscription_id, cs, jc, recurrence)
    return [None if excluding is None else excluding(moment) for moment in moments]


@bp.get(COLLECTION + "/executions/<execution_id>")
@bp.get(JOB + "/executions/<execution_id>")
def execution(sub: str, cs: str, jc: str, execution_id: str, job_id: str | None = None
              ) -> str:
    """An execution: its timeline of recorded events, attempts and steps, the request as
    sent (secrets redacted) and the answer kept; cancel, resume, run again, copy as curl."""
    with snapshot() as session:
        found, name = executions.find_execution(session, call(), cs, jc, execution_id, job_id)
        run = dashboard.Run(found.id, found.job_pk, found.trigger, found.scheduled_time,
                            found.status, found.attempts, found.node, found.start_time,
                            found.end_time, found.message, found.output)
        steps = json.loads(found.steps) if found.steps else []
        parameters = json.loads(found.parameters or "{}")
        definition = dashboard.execution_definition(session, found)
    events = executions.read_execution_events(read_connection(), g.subscription_id, cs, jc,
                                              execution_id)
    # Its target accepted the call: the result is to come by then (or came, to be recorded).
    waits = found.status == ExecutionStatus.RUNNING and found.callback_deadline is not None
    return render_template(
        "execution.html", run=run, job_id=name, cs=cs, jc=jc, steps=steps, events=events,
        parameters=parameters, answer=answer_of(run),
        callback_deadline=found.callback_deadline
        if waits and found.callback_result is None else None,
        callback_received=waits and found.callback_result is not None,
        request_sent=redacted_request(definition, parameters, found.id, found.scheduled_time,
                                      runtime().public_url)
        if definition else None)


@bp.get("/<sub>/audit")
def audit(sub: str) -> str:
    """Every change made through the API or the dashboard in the subscription."""
    before = request.args.get("before", type=int)
    changes = read_changes(read_connection(), g.subscription_id, before_id=before, limit=100)
    return render_template("audit.html", changes=changes, title="Audit", more=len(changes) == 100)


@bp.get(COLLECTION + "/audit")
def collection_audit(sub: str, cs: str, jc: str) -> str:
    """Every change made to a collection and its jobs."""
    line = collection_line(cs, jc)
    before = request.args.get("before", type=int)
    changes = read_changes(read_connection(), g.subscription_id,
                           Target(line.cloud_service, line.name), before_id=before, limit=100)
    return render_template("audit.html", changes=changes, title=f"Audit of {line.name}",
                           more=len(changes) == 100)


@bp.get("/<sub>/engine")
def engine(sub: str) -> str:
    """The engine's nodes: heartbeat age, calls in flight and readied, take-overs."""
    nodes = dashboard.engine_nodes(read_connection(), _now(), _dead_after())
    return render_template("engine.html", nodes=nodes)


@bp.get("/<sub>/collections")
def collections(sub: str) -> str:
    """The subscription's job collections: plan, quota use, state."""
    return render_template("collections.html",
                           collections=dashboard.collection_lines(
                               read_connection(), g.subscription_id,
                               runtime().settings.plans))


@bp.get("/<sub>/certificates")
def certificates(sub: str) -> str:
    """The subscription's management certificates: name, thumbprint, expiry."""
    return render_template("certificates.html",
                           certificates=dashboard.certificate_lines(read_connection(),
                                                                    g.subscription_id))
