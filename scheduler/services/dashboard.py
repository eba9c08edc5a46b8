"""What the dashboard shows, read in a few queries per page: each job's status mark, its
recent runs, what needs attention, the engine's nodes. The dashboard renders these; it
writes through the same use cases as the API."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    and_,
    bindparam,
    cast,
    func,
    not_,
    null,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.orm import Session

from scheduler.db.models import (
    OCCURRENCE_WHERE,
    TAKEN_OVER_WHERE,
    CloudService,
    EngineNode,
    Execution,
    ExecutionEvent,
    Job,
    JobCollection,
    ManagementCertificate,
)
from scheduler.db.stored_jobs import StoredJobError, public_definition, stored_schedule
from scheduler.domain.jobs import JobDefinition
from scheduler.domain.occurrences import occurrences, upcoming
from scheduler.domain.recurrence import Recurrence
from scheduler.domain.states import (
    FINAL_JOB_STATES,
    FINAL_STATUSES,
    ExecutionStatus,
    JobState,
    Lifecycle,
)
from scheduler.security import pki
from scheduler.services.collections import CollectionQuota, collection_limits
from scheduler.settings import PlanSettings

# A job whose next fire time passed this long ago without firing is late.
LATE_AFTER = timedelta(seconds=60)
STRIP_LENGTH = 20
# How many planned runs of a job the calendar counts; past them it only marks the days.
PLANNED_COUNTED = 2_000
# How long a subscription's fire lateness is shown before it is read again.
LATENESS_KEPT = timedelta(seconds=15)
# The jobs with missed runs the overview names, those that missed the most.
MISSED_SHOWN = 20

FAILED, COMPLETED = ExecutionStatus.FAILED.value, ExecutionStatus.COMPLETED.value
_ENDED = tuple(status.value for status in FINAL_STATUSES)


@dataclass(frozen=True)
class Run:
    """One execution as a strip, a table row or a heatmap counts it."""

    id: str
    job_pk: int | None
    trigger: str
    scheduled_time: datetime
    status: str
    attempts: int
    node: str | None
    start_time: datetime | None
    end_time: datetime | None
    message: str | None
    output: str | None

    @property
    def kind(self) -> str:
        """What a strip shows: the status, and `retried` for one that succeeded after
        more than one attempt."""
        if self.status == COMPLETED and self.attempts > 1:
            return "retried"
        return self.status

    @property
    def duration(self) -> timedelta | None:
        """From its first attempt to its end."""
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time

    @property
    def lateness(self) -> timedelta | None:
        """How long after its scheduled time its first attempt started."""
        if self.start_time is None:
            return None
        return max(self.start_time - self.scheduled_time, timedelta(0))


@dataclass(frozen=True)
class JobLine:
    """A job as the lists show it: where it is, its state, its mark, its recent runs."""

    pk: int
    cloud_service: str
    collection: str
    job_id: str
    state: str
    state_details: str | None
    definition: str
    next_execution_time: datetime | None
    last_execution_time: datetime | None
    execution_count: int
    failure_count: int
    faulted_count: int
    created_at: datetime
    state_note: str | None
    state_changed_by: str | None
    state_changed_at: datetime | None
    mark: str = "ok"
    runs: tuple[Run, ...] = ()
    disabled_until: datetime | None = None  # disabled: when it is enabled again, if ever

    @property
    def last_run(self) -> Run | None:
        """Its latest run that has ended."""
        return next((run for run in self.runs if run.status in _ENDED), None)


@dataclass(frozen=True)
class Failing:
    """A job failing now: since when, and how many times in a row."""

    job: JobLine
    since: datetime
    streak: int
    last: Run


@dataclass(frozen=True)
class NodeLine:
    """An engine node: its heartbeat's age, and what it holds."""

    id: str
    started_at: datetime
    heartbeat_age: timedelta
    alive: bool
    running: int = 0  # calls in flight
    readied: int = 0  # calls leased ahead of their instant, held until it comes
    take_overs: int = 0

    @property
    def leases(self) -> int:
        """The executions it holds: calls in flight and readied."""
        return self.running + self.readied


@dataclass(frozen=True)
class Overview:
    """What needs attention in a subscription, first."""

    failing: list[Failing]
    faulted: list[JobLine]
    late: list[JobLine]
    missed: list[tuple[JobLine, int]]  # the jobs that missed the most, at most MISSED_SHOWN
    missed_jobs: int  # how many jobs missed a run
    paused: list[JobLine]
    lateness_p50: timedelta | None
    lateness_p99: timedelta | None
    runs_last_hour: int
    nodes: list[NodeLine]
    job_count: int


@dataclass(frozen=True)
class CollectionLine:
    """A job collection with its plan, quota use and state."""

    cloud_service: str
    name: str
    region: str
    plan: str
    state: str
    jobs: int
    max_jobs: int | None
    max_recurrence: str | None


@dataclass(frozen=True)
class CertificateLine:
    """A management certificate of the subscription."""

    name: str
    thumbprint: str
    not_after: datetime
    created_at: datetime


@dataclass
class DayCounts:
    """Runs of one day by outcome (the heatmap's cell)."""

    day: date
    counts: Counter[str] = field(default_factory=Counter)


_JOB_COLUMNS = (Job.id.label("pk"), CloudService.name.label("cloud_service"),
                JobCollection.name.label("collection"), Job.job_id, Job.state,
                Job.state_details, Job.definition, Job.next_execution_time,
                Job.last_execution_time, Job.execution_count, Job.failure_count,
                Job.faulted_count, Job.created_at, Job.state_note, Job.state_changed_by,
                Job.state_changed_at, Job.disabled_until)
_RUN_COLUMNS = (Execution.id, Execution.job_pk, Execution.trigger, Execution.scheduled_time,
                Execution.status, Execution.attempts, Execution.node, Execution.start_time,
                Execution.end_time, Execution.message, Execution.output)
_VISIBLE = and_(CloudService.lifecycle == Lifecycle.ACTIVE.value,
                JobCollection.lifecycle == Lifecycle.ACTIVE.value)


def _jobs_query(subscription_id: str) -> Any:
    return (select(*_JOB_COLUMNS).select_from(Job)
            .join(JobCollection, JobCollection.id == Job.collection_id)
            .join(CloudService, CloudService.id == JobCollection.cloud_service_id)
            .where(CloudService.subscription_id == subscription_id, _VISIBLE))


# Newest first: a tick makes a job's missed occurrences and the run it fires for them at
# one `now`, so their creation ties and the later scheduled time is the later run.
_NEWEST_FIRST = (Execution.created_at.desc(), Execution.scheduled_time.desc())


def _latest_runs(*columns: Any) -> Any:
    """`columns` of a job's latest `top` runs, newest first: the index on (job, created)
    reads them backwards."""
    return (select(*columns).where(Execution.job_pk == bindparam("job_pk"))
            .order_by(*_NEWEST_FIRST).limit(bindparam("top")))


_LATEST_RUNS = _latest_runs(*_RUN_COLUMNS)
# The same without what a strip does not show (a run's message and answer, which may be
# kilobytes each): those are read for each job's last ended run only.
_LATEST_STRIP = _latest_runs(*_RUN_COLUMNS[:-2], null().label("message"),
                             null().label("output"))
# Whether a job's latest ended run failed, for every job of a selection at once.
_LAST_ENDED_STATUS = (
    select(Execution.status).where(Execution.job_pk == Job.id,
                                   Execution.status.in_(_ENDED))
    .order_by(*_NEWEST_FIRST).limit(1).correlate(Job).scalar_subquery())
# SQLite, without statistics, may read a job's runs through the index on status, all jobs'
# failed runs; a job's own are few and indexed by job.
_BY_JOB = "INDEXED BY ix_executions_job"
# The jobs with a run in flight: read by status, through the index the engine claims by.
_RUNNING_JOBS = (select(Execution.job_pk).distinct()
                 .where(Execution.status == ExecutionStatus.RUNNING.value,
                        Execution.job_pk.is_not(None)))
# A schedule's occurrences, by job and time: the condition of the unique index on them,
# written out so that the planner uses that index.
_OCCURRENCES = text(OCCURRENCE_WHERE)


def status_mark(state: str, last_status: str | None, running: bool,
                next_time: datetime | None, now: datetime) -> str:
    """A job's mark: what is wrong first (faulted, failing, late), then running, disabled,
    completed, ok."""
    if state == JobState.FAULTED.value:
        return "faulted"
    if state == JobState.COMPLETED.value:
        return "completed"
    if last_status == FAILED:
        return "failing"
    if state == JobState.ENABLED.value and next_time is not None \
            and next_time < now - LATE_AFTER:
        return "late"
    if running:
        return "running"
    if state == JobState.DISABLED.value:
        return "disabled"
    return "ok"


MARK_ORDER = ("failing", "faulted", "late", "running", "ok", "disabled", "completed")
# The marks the overview lists.
_ATTENTION = ("failing", "faulted", "late")


@dataclass(frozen=True)
class JobPage:
    """One page of a job list, with how many jobs matched and how many of each mark."""

    jobs: list[JobLine]
    total: int
    marks: Counter[str]


def job_page(conn: Connection, subscription_id: str, now: datetime, *,
             cloud_service: str | None = None, collection: str | None = None,
             state: str | None = None, mark: str | None = None, search: str = "",
             page: int = 0, size: int = 100) -> JobPage:
    """A page of jobs, failing first then by id: of the subscription or one collection, of
    one state and mark, whose id contains `search`."""
    marked = marked_jobs(conn, subscription_id, now, cloud_service=cloud_service,
                         collection=collection, state=state, search=search)
    marks = Counter(mark_of for mark_of, _ in marked)
    if mark:
        marked = [(m, row) for m, row in marked if m == mark]
    marked.sort(key=_list_order)
    chosen = marked[page * size:(page + 1) * size]
    lines = job_lines(conn, subscription_id, [row.id for _, row in chosen], now)
    return JobPage(jobs=lines, total=len(marked), marks=marks)


def _list_order(item: tuple[str, Any]) -> tuple[int, str, str, str]:
    """Where a marked job stands in a list: what is wrong first, then by its collection and
    id."""
    mark, row = item
    return (MARK_ORDER.index(mark), row.cloud_service.lower(), row.collection.lower(),
            row.job_key)


def marked_jobs(conn: Connection, subscription_id: str, now: datetime, *,
                cloud_service: str | None = None, collection: str | None = None,
                state: str | None = None, search: str = "") -> list[tuple[str, Any]]:
    """Each job of the subscription or one collection, of one state, whose id contains
    `search`, with its mark (from its latest ended run, of all its runs), unordered."""
    query = (_jobs_query(subscription_id)
             .with_only_columns(Job.id, Job.state, Job.next_execution_time,
                                CloudService.name.label("cloud_service"),
                                JobCollection.name.label("collection"), Job.job_key,
                                _LAST_ENDED_STATUS.label("last_status")))
    if cloud_service is not None and collection is not None:
        query = query.where(CloudService.name_key == cloud_service.lower(),
                            JobCollection.name_key == collection.lower())
    if state:
        query = query.where(Job.state == state)
    if search:
        query = query.where(Job.job_key.contains(search.lower(), autoescape=True))
    running = set(conn.execute(_RUNNING_JOBS).scalars())
    return [(status_mark(row.state, row.last_status, row.id in running,
                         row.next_execution_time, now), row)
            for row in conn.execute(query)]


def job_lines(conn: Connection, subscription_id: str, pks: Sequence[int], now: datetime,
              runs: int = STRIP_LENGTH, *, answers: bool = False) -> list[JobLine]:
    """Jobs by primary key, in that order, each with its latest `runs` and its mark; the
    message and answer of its last ended run, or of every run with `answers`."""
    if not pks:
        return []
    rows = {row.pk: row for row in conn.execute(_jobs_query(subscription_id)
                                                .where(Job.id.in_(pks)))}
    lines = []
    for pk in pks:
        row = rows.get(pk)
        if row is None:
            continue
        recent = tuple(Run(*run) for run in conn.execute(
            _LATEST_RUNS if answers else _LATEST_STRIP, {"job_pk": pk, "top": runs}))
        last = next((run.status for run in recent if run.status in _ENDED), None)
        running = any(run.status == ExecutionStatus.RUNNING.value for run in recent)
        mark = status_mark(row.state, last, running, row.next_execution_time, now)
        lines.append(JobLine(**row._asdict(), mark=mark, runs=recent))
    return lines if answers else _with_last_answers(conn, lines)


def _with_last_answers(conn: Connection, lines: list[JobLine]) -> list[JobLine]:
    """The lines, the last ended run of each with its message and answer (one query)."""
    last = {line.last_run.id: line for line in lines if line.last_run is not None}
    if not last:
        return lines
    found = {run_id: (message, output) for run_id, message, output in conn.execute(
        select(Execution.id, Execution.message, Execution.output)
        .where(Execution.id.in_(list(last))))}
    answered = []
    for line in lines:
        run = line.last_run
        if run is None or run.id not in found:
            answered.append(line)
            continue
        message, output = found[run.id]
        full = replace(run, message=message, output=output)
        answered.append(replace(line, runs=tuple(full if r is run else r for r in line.runs)))
    return answered


def find_job_line(conn: Connection, subscription_id: str, cloud_service: str,
                  collection: str, job_id: str, now: datetime, runs: int = 50
                  ) -> JobLine | None:
    """One job by its path, with its latest `runs`; None when there is none."""
    pk = conn.execute(_jobs_query(subscription_id).with_only_columns(Job.id).where(
        CloudService.name_key == cloud_service.lower(),
        JobCollection.name_key == collection.lower(),
        Job.job_key == job_id.lower())).scalar()
    found = job_lines(conn, subscription_id, [pk], now, runs, answers=True) \
        if pk is not None else []
    return found[0] if found else None


def failing_streak(conn: Connection, job: JobLine) -> Failing | None:
    """How long a failing job has failed: how many of its runs ended failed since the last
    that ended otherwise, and when the first of them was scheduled; counted in the database
    through the index on the job's runs."""
    last = job.last_run
    if last is None or last.status != FAILED:
        return None
    other_end = conn.execute(
        select(Execution.created_at, Execution.scheduled_time)
        .with_hint(Execution, _BY_JOB, "sqlite")
        .where(Execution.job_pk == job.pk, Execution.status.in_(_ENDED),
               Execution.status != FAILED)
        .order_by(*_NEWEST_FIRST).limit(1)).first()
    since_end = [] if other_end is None else [
        tuple_(Execution.created_at, Execution.scheduled_time) > tuple_(*other_end)]
    streak, since = conn.execute(
        select(func.count(), func.min(Execution.scheduled_time))
        .with_hint(Execution, _BY_JOB, "sqlite")
        .where(Execution.job_pk == job.pk, Execution.status == FAILED, *since_end)).one()
    if not streak or since is None:
        return None
    return Failing(job=job, since=since, streak=streak, last=last)


@dataclass(frozen=True)
class Lateness:
    """How late the runs of an hour started: median, 99th percentile, how many."""

    p50: timedelta | None
    p99: timedelta | None
    runs: int


class LatenessMemo:
    """The fire lateness of each subscription's last hour, kept for `LATENESS_KEPT`: an hour
    of a thousand jobs a minute is 60,000 runs to read, and an open overview asks every few
    seconds for a figure that moves slowly."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[datetime, Lateness]] = {}
        self._lock = threading.Lock()

    def lateness(self, conn: Connection, subscription_id: str, now: datetime) -> Lateness:
        """The subscription's lateness over the hour before `now`, at most LATENESS_KEPT
        old."""
        with self._lock:
            kept = self._kept.get(subscription_id)
        if kept is not None and timedelta(0) <= now - kept[0] < LATENESS_KEPT:
            return kept[1]
        found = Lateness(*_lateness(conn, subscription_id, now - timedelta(hours=1)))
        with self._lock:
            self._kept[subscription_id] = (now, found)
        return found


def overview(conn: Connection, subscription_id: str, now: datetime,
             dead_after: timedelta, memo: LatenessMemo | None = None) -> Overview:
    """What needs attention: failing, faulted, late, missed in the last day, paused; how
    late runs started in the last hour; the engine's nodes."""
    marked = marked_jobs(conn, subscription_id, now)
    # Only the jobs that may need attention are read with their runs. A job's mark from
    # its latest 20 runs can be failing only when the mark from all its runs is; late only
    # when that one is late or failing; faulted when that one is: so these hold every job
    # the overview lists, in the order a full page of them had.
    marked.sort(key=_list_order)
    candidates = [row.id for mark, row in marked if mark in _ATTENTION
                  or row.state == JobState.DISABLED.value]
    by_mark: dict[str, list[JobLine]] = {}
    wanted = [job for job in job_lines(conn, subscription_id, candidates, now)
              if job.mark in _ATTENTION or job.state == JobState.DISABLED.value]
    for job in wanted:
        by_mark.setdefault(job.mark, []).append(job)
    failing = [streak for job in by_mark.get("failing", [])
               if (streak := failing_streak(conn, job)) is not None]
    failing.sort(key=lambda item: item.since)
    missed = _missed_since(conn, subscription_id, now - timedelta(days=1))
    most_missed = [pk for pk, _ in missed.most_common(MISSED_SHOWN)]
    missed_lines = {job.pk: job for job in job_lines(conn, subscription_id, most_missed, now)}
    late = (memo or LatenessMemo()).lateness(conn, subscription_id, now)
    return Overview(
        failing=failing, faulted=by_mark.get("faulted", []), late=by_mark.get("late", []),
        missed=[(missed_lines[pk], n) for pk, n in missed.most_common() if pk in missed_lines],
        missed_jobs=len(missed),
        paused=[job for job in wanted if job.state == JobState.DISABLED.value],
        lateness_p50=late.p50, lateness_p99=late.p99, runs_last_hour=late.runs,
        nodes=engine_nodes(conn, now, dead_after), job_count=len(marked))


def _occurrences_since(subscription_id: str, since: datetime) -> Any:
    """The subscription's scheduled runs since `since`, found job by job through the index
    on (job, scheduled time): a page's cost follows its jobs, not the whole history."""
    return (_jobs_query(subscription_id).with_only_columns()
            .join(Execution, and_(Execution.job_pk == Job.id, _OCCURRENCES,
                                  Execution.scheduled_time >= since)))


def _missed_since(conn: Connection, subscription_id: str, since: datetime) -> Counter[int]:
    rows = conn.execute(_occurrences_since(subscription_id, since)
                        .add_columns(Execution.job_pk, func.count())
                        .where(Execution.status == ExecutionStatus.MISSED.value)
                        .group_by(Execution.job_pk))
    return Counter({pk: n for pk, n in rows})


def _lateness(conn: Connection, subscription_id: str, since: datetime
              ) -> tuple[timedelta | None, timedelta | None, int]:
    """The median and 99th percentile of how late the runs scheduled since `since` started
    (those that have), to the millisecond: the database counts the runs of each millisecond
    of lateness, so that an hour of a thousand jobs a minute is a few rows."""
    late = cast(_seconds_late(conn.dialect.name) * 1000, Integer).label("late_ms")
    rows = conn.execute(_occurrences_since(subscription_id, since)
                        .add_columns(late, func.count())
                        .where(Execution.start_time.is_not(None))
                        .group_by(late).order_by(late)).all()
    total = sum(count for _, count in rows)
    if not total:
        return None, None, 0
    return (_rank(rows, total, 0.50), _rank(rows, total, 0.99), total)


def _rank(counted: Sequence[Any], total: int, fraction: float) -> timedelta:
    """The nearest-rank percentile of lateness counted by millisecond, in order."""
    rank = max(1, min(total, round(fraction * total + 0.5)))
    seen = 0
    for late_ms, count in counted:
        seen += count
        if seen >= rank:
            return timedelta(milliseconds=max(int(late_ms), 0))
    return timedelta(milliseconds=max(int(counted[-1][0]), 0))


def _seconds_late(dialect: str) -> Any:
    """Seconds from a run's scheduled time to its start, as the database computes them."""
    if dialect == "sqlite":
        return (func.julianday(Execution.start_time)
                - func.julianday(Execution.scheduled_time)) * 86_400.0
    return func.extract("epoch", Execution.start_time - Execution.scheduled_time)


def engine_nodes(conn: Connection, now: datetime, dead_after: timedelta) -> list[NodeLine]:
    """The engine's nodes, live first: heartbeat age, executions running and readied on
    each, and how many executions each took over from a dead node in the last day."""
    # A node leases a call ahead of its instant and holds it readied until then: its
    # start (a first attempt) or its next attempt (a retry) is still to come.
    ahead = or_(func.coalesce(Execution.start_time, now) > now,
                func.coalesce(Execution.next_attempt_at, now) > now)
    running, readied = (Counter(dict(conn.execute(
        select(Execution.lease_owner, func.count())
        .where(Execution.status == ExecutionStatus.RUNNING.value,
               Execution.lease_owner.is_not(None), when)
        .group_by(Execution.lease_owner)).all())) for when in (not_(ahead), ahead))
    take_overs = Counter(dict(conn.execute(
        select(ExecutionEvent.node, func.count())
        .where(text(TAKEN_OVER_WHERE), ExecutionEvent.at >= now - timedelta(days=1))
        .group_by(ExecutionEvent.node)).all()))
    nodes = [NodeLine(id=node.id, started_at=node.started_at,
                      heartbeat_age=max(now - node.heartbeat_at, timedelta(0)),
                      alive=now - node.heartbeat_at < dead_after,
                      running=running[node.id], readied=readied[node.id],
                      take_overs=take_overs[node.id])
             for node in Session(bind=conn).scalars(select(EngineNode))]
    nodes.sort(key=lambda node: (not node.alive, node.heartbeat_age))
    return nodes


def collection_lines(conn: Connection, subscription_id: str,
                     plans: Mapping[str, PlanSettings] | None = None) -> list[CollectionLine]:
    """The subscription's collections with their job counts; with `plans`, the most jobs
    each may hold is its plan's limit where its own quota sets none or a higher one."""
    counts = (select(func.count()).where(Job.collection_id == JobCollection.id)
              .correlate(JobCollection).scalar_subquery())
    rows = conn.execute(
        select(CloudService.name, JobCollection.name, CloudService.geo_region,
               JobCollection.plan, JobCollection.state, JobCollection.jobs_disabled,
               counts, JobCollection.max_job_count, JobCollection.max_recurrence_frequency,
               JobCollection.max_recurrence_interval)
        .select_from(JobCollection)
        .join(CloudService, CloudService.id == JobCollection.cloud_service_id)
        .where(CloudService.subscription_id == subscription_id, _VISIBLE)
        .order_by(CloudService.name_key, JobCollection.name_key))
    return [CollectionLine(
        cloud_service=cs, name=name, region=region, plan=plan,
        state="Disabled" if disabled and state == "Started" else state, jobs=jobs,
        max_jobs=max_jobs if plans is None or plan not in plans else collection_limits(
            CollectionQuota(0, plan, max_jobs, frequency, interval), plans).max_job_count,
        max_recurrence=f"every {interval} {frequency}" if frequency and interval else None)
        for cs, name, region, plan, state, disabled, jobs, max_jobs, frequency, interval
        in rows]


def certificate_lines(conn: Connection, subscription_id: str) -> list[CertificateLine]:
    """The subscription's management certificates, soonest to expire first."""
    rows = Session(bind=conn).scalars(
        select(ManagementCertificate)
        .where(ManagementCertificate.subscription_id == subscription_id)
        .order_by(ManagementCertificate.not_after))
    return [CertificateLine(name=pki.name_of_der(row.der), thumbprint=row.thumbprint,
                            not_after=row.not_after, created_at=row.created_at)
            for row in rows]


def daily_counts(conn: Connection, job_pk: int, since: datetime) -> dict[date, Counter[str]]:
    """A job's ended runs per day (UTC) since `since`, by kind."""
    day = func.date(Execution.scheduled_time)
    rows = conn.execute(
        select(day, Execution.status, func.count())
        .where(Execution.job_pk == job_pk, Execution.scheduled_time >= since,
               Execution.status.in_(_ENDED))
        .group_by(day, Execution.status))
    found: dict[date, Counter[str]] = {}
    for value, status, count in rows:
        when = value if isinstance(value, date) else date.fromisoformat(str(value))
        found.setdefault(when, Counter())[status] += count
    return found


def planned_per_day(job: JobLine, now: datetime, days: int) -> dict[date, int | None]:
    """How many runs a job has planned on each UTC day from today to `days` ahead: counted
    up to PLANNED_COUNTED runs; past them, a day the schedule still fires on reads None
    (some, not counted), so that a job every second costs what one every hour does."""
    start, recurrence = schedule_of(job)
    if job.state in FINAL_JOB_STATES:
        return {}
    end = datetime.combine(now.date() + timedelta(days=days + 1), time(), UTC)
    planned: dict[date, int | None] = {}
    counted, last = 0, now
    times = upcoming(recurrence, start, job.created_at, now, job.execution_count, job.job_id)
    for moment in itertools.islice(times, PLANNED_COUNTED):
        if moment >= end:
            return planned
        planned[moment.date()] = (planned.get(moment.date()) or 0) + 1
        counted, last = counted + 1, moment
    if counted < PLANNED_COUNTED:  # the schedule ends before the calendar does
        return planned
    planned[last.date()] = None  # its runs after the last counted were not counted
    day = last.date() + timedelta(days=1)
    while day < end.date():
        since = datetime.combine(day, time(), UTC)
        following = next(occurrences(recurrence, start, job.created_at, since, job.job_id),
                         None)
        if following is None:
            break
        if following.date() == day:
            planned[day] = None
        day = max(day + timedelta(days=1), following.date())
    return planned


def schedule_of(job: JobLine) -> tuple[datetime | None, Recurrence | None]:
    """A job's start time and recurrence, from its stored definition."""
    try:
        return stored_schedule(job.definition)
    except StoredJobError:
        return None, None


def definition_of(job: JobLine) -> JobDefinition | None:
    """A job's definition with its secrets left sealed; None if it does not read."""
    try:
        return public_definition(job.definition)
    except StoredJobError:
        return None


def execution_definition(session: Session, execution: Execution) -> JobDefinition | None:
    """What an execution runs, its secrets left sealed: its own definition (an inline run),
    or its job's current one."""
    text = execution.definition
    if text is None and execution.job_pk is not None:
        text = session.scalar(select(Job.definition).where(Job.id == execution.job_pk))
    if text is None:
        return None
    try:
        return public_definition(text)
    except StoredJobError:
        return None
