"""Backfills: the occurrences of a past range of a job's schedule run now, each as a new
execution (`trigger: backfill`, its occurrence's time as its scheduled time), under the job's
overlap policy or the one the request names.

A backfill is one transaction on the job's locked row: its runs are stored at once, then
taken by the engines like any pending execution, each by one node. With `onlyMissed`, an
occurrence is run only if none of its executions ran or is open: those that never ran
(missed, or never made) are."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from scheduler.db.models import Execution
from scheduler.db.notify import announce_on_commit
from scheduler.domain.calendars import first_excluding
from scheduler.domain.jobs import JobDefinition
from scheduler.domain.occurrences import upcoming
from scheduler.domain.overlap import Overlap
from scheduler.domain.states import ExecutionStatus, JobState, Trigger
from scheduler.services.audit import Target, record_change
from scheduler.services.calendars import read_calendars
from scheduler.services.calls import Call
from scheduler.services.collections import get_collection
from scheduler.services.errors import BadRequest, Conflict
from scheduler.services.executions import JobRuns, check_runs, job_to_run, make_job_runs
from scheduler.services.jobs import readable_definition

# The most occurrences one backfill runs: a wider range is refused, to be split.
MAX_BACKFILL = 1000
# The statuses of an occurrence's execution that did not run it: `onlyMissed` runs those.
_NOT_RUN = frozenset({ExecutionStatus.MISSED})


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """What a backfill asks: the range of occurrences (from `start` to `end`, both
    included), whether only those that never ran, and the overlap policy in place of the
    job's (None: the job's)."""

    start: datetime
    end: datetime
    only_missed: bool = False
    overlap: Overlap | None = None


@dataclass(frozen=True, slots=True)
class Backfill:
    """What a backfill made: its runs, and the occurrences of the range it left out, those
    that ran already (`onlyMissed`) and those the job's calendars exclude."""

    runs: JobRuns
    ran_already: int
    excluded: int


def backfill_job(session: Session, call: Call, cloud_service: str, collection: str,
                 job_id: str, asked: BackfillRequest, *, note: str | None = None
                 ) -> tuple[Backfill, str]:
    """Run the occurrences of a past range of a job's schedule now, recorded in the audit
    (`job.backfill`, with the note given); returns what it made and the job's id. 400 for a
    range not in the past or holding more than MAX_BACKFILL occurrences; 409 for a disabled
    job or a suspended collection."""
    if asked.end > call.now:
        raise BadRequest("end: must not be after now; a backfill runs past occurrences")
    if asked.start > asked.end:
        raise BadRequest("start: must not be after end")
    found = get_collection(session, call.subscription_id, cloud_service, collection)
    check_runs(found)
    job = job_to_run(session, found.id, job_id)
    if job.state == JobState.DISABLED:
        raise Conflict(f"The job {job.job_id} is disabled; enable it to backfill it.")
    definition = readable_definition(job)
    times = _occurrences(definition, job.created_at, job.job_id, asked.start, asked.end)
    excluding = _excluding(session, found.id, definition)
    excluded = [moment for moment in times if excluding is not None and excluding(moment)]
    times = [moment for moment in times if moment not in excluded]
    ran = _ran_already(session, job.id, times) if asked.only_missed else set()
    times = [moment for moment in times if moment not in ran]
    runs = make_job_runs(session, job, definition, times, definition.parameters, call.now,
                         trigger=Trigger.BACKFILL,
                         policy=asked.overlap or definition.concurrency_policy,
                         actor=call.actor)
    if runs.replaced:
        announce_on_commit(session, call.home, runs.replaced)
    record_change(session, call, "job.backfill", Target(cloud_service, collection, job.job_id),
                  detail=f"{asked.start.isoformat()}/{asked.end.isoformat()}: "
                         f"{len(runs.runs)} runs", note=note)
    return Backfill(runs, len(ran), len(excluded)), job.job_id


def _occurrences(definition: JobDefinition, created: datetime, job_id: str,
                 start: datetime, end: datetime) -> list[datetime]:
    """The job's occurrences from `start` to `end`, both included, as its schedule makes
    them (jitter too); 400 past MAX_BACKFILL."""
    found = itertools.takewhile(lambda moment: moment <= end, (
        moment for moment in upcoming(definition.recurrence, definition.start, created, start,
                                      0, job_id) if moment >= start))
    times = list(itertools.islice(found, MAX_BACKFILL + 1))
    if len(times) > MAX_BACKFILL:
        raise BadRequest(f"start: the range holds more than {MAX_BACKFILL} occurrences of "
                         "the job; backfill it in parts")
    return times


def _excluding(session: Session, collection_id: int, definition: JobDefinition
               ) -> Callable[[datetime], str | None] | None:
    """What says which of the job's calendars excludes an occurrence; None without any."""
    recurrence = definition.recurrence
    if recurrence is None or not recurrence.exclude_calendars:
        return None
    calendars = read_calendars(session, collection_id)
    return lambda moment: first_excluding(calendars, recurrence.exclude_calendars, moment)


def _ran_already(session: Session, job_pk: int, times: Iterable[datetime]) -> set[datetime]:
    """Of these occurrences of the job, those one of whose executions (by its schedule or a
    backfill) ran, or is open, or was skipped or canceled: all but those never run."""
    moments = list(times)
    if not moments:
        return set()
    ran: set[datetime] = set()
    for scheduled, status in session.execute(
            select(Execution.scheduled_time, Execution.status).where(and_(
                Execution.job_pk == job_pk, Execution.trigger != Trigger.MANUAL,
                Execution.scheduled_time >= min(moments),
                Execution.scheduled_time <= max(moments)))):
        if status not in _NOT_RUN:
            ran.add(scheduled)
    return ran & set(moments)
