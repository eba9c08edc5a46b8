"""Executions by request: run a job now, run an inline definition once, list and read
executions and their events, cancel and resume them. (Those the engine makes, leases and
cancels are its store's, `scheduler.engine.store`.) Each change writes its event (see
`scheduler.domain.executions.EventKind`) in its own transaction, naming who asked.

The functions for requests work inside the caller's transaction; the caller wakes the
engines once it is committed, so that a run starts, or a canceled attempt stops, without
waiting for a pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Sequence_
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from scheduler.db.bulk import insert_rows
from scheduler.db.compiled import CompiledStatement
from scheduler.db.executions import (
    EVENTS,
    cancel_open,
    event_row,
    execution_row,
    insert_events,
    insert_first_events,
    new_execution_id,
    skipped_history,
)
from scheduler.db.models import EXECUTIONS, HISTORY, Execution, Job, JobCollection
from scheduler.db.notify import announce_on_commit
from scheduler.db.overlap import open_runs
from scheduler.db.stored_jobs import seal_definition
from scheduler.domain.durations import format_datetime
from scheduler.domain.executions import EventKind, StepRecord, resumed_steps, waiting_step
from scheduler.domain.jobs import JobDefinition, JobSpec, Sequence
from scheduler.domain.nodes import stored_run_on
from scheduler.domain.overlap import REPLACED_MESSAGE, Fate, Open, Overlap, decide, skip_reason
from scheduler.domain.quotas import QuotaExceeded
from scheduler.domain.run_limits import (
    ZERO,
    RunAllowance,
    describe_interval,
    wait_before_next_run,
    whole_seconds,
)
from scheduler.domain.states import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    CollectionState,
    ExecutionStatus,
    JobState,
    Trigger,
)
from scheduler.security.secrets import SecretBox
from scheduler.services.audit import Target, record_change
from scheduler.services.calls import Call
from scheduler.services.collections import (
    check_authentication_allowed,
    collection_limits,
    count_one_more,
    get_collection,
    quota_of,
)
from scheduler.services.collections import collection_id as id_of_collection
from scheduler.services.errors import Conflict, NotFound, PreconditionFailed, TooManyRequests
from scheduler.services.jobs import get_job, readable_definition
from scheduler.services.records import ExecutionRecord
from scheduler.settings import PlanSettings


def execution_etag(execution: ExecutionRecord) -> str:
    """The entity tag of an execution: it changes with every change of its status."""
    return f"{execution.id}-{execution.revision}"


def job_to_run(session: Session, collection_id: int, job_id: str) -> Job:
    """A job of the collection to run now, its row locked until the run is stored: a DELETE
    or PATCH of the job waits for the run, or goes first and the run finds the job gone
    (404) or as changed. Not locked against key-sharing readers, so that the engine's
    executions of it go on."""
    job = session.scalar(select(Job).where(
        Job.collection_id == collection_id, Job.job_key == job_id.lower(),
    ).with_for_update(key_share=True))
    if job is None:
        raise NotFound(f"The job {job_id} does not exist.")
    return job


def _first_step_waits(definition: JobDefinition) -> str | None:
    """The name of a definition's first step if it is manual (it waits for `resume` before
    it runs)."""
    if not definition.starts_waiting:
        return None
    assert isinstance(definition.action, Sequence)
    return definition.action.steps[0].name


def _new_run(job_pk: int | None, collection_id: int, definition: JobDefinition,
             parameters: Mapping[str, Any], repeat_count: int, now: datetime, *,
             scheduled: datetime | None = None, trigger: Trigger = Trigger.MANUAL,
             fate: Fate = Fate.RUN, message: str | None = None,
             run_on: tuple[str, ...] = ()) -> Execution:
    """A run started by hand (or a backfilled occurrence, `scheduled` then), due at once,
    or waiting if its first step is manual; or, as its job's overlap policy decided
    (`fate`), waiting behind an open run, or skipped with `message`. Run by the nodes
    `run_on` names, or else by those its definition names (none: any node)."""
    # A run that waits behind another keeps its manual first step for when it is let go.
    waits = _first_step_waits(definition) if fate is not Fate.SKIP else None
    steps: list[StepRecord] | None = [waiting_step(waits)] if waits else None
    if fate is Fate.SKIP:
        status, next_attempt = ExecutionStatus.SKIPPED, None
    elif fate is not Fate.RUN:
        status, next_attempt = ExecutionStatus.WAITING, None
    else:
        status = ExecutionStatus.PAUSED if waits else ExecutionStatus.PENDING
        next_attempt = None if waits else now
    row = execution_row(
        new_execution_id(), job_pk, collection_id, scheduled or now, repeat_count, now,
        status=status, trigger=trigger, next_attempt_at=next_attempt, steps=steps,
        end_time=now if fate is Fate.SKIP else None, message=message,
        run_on=stored_run_on(run_on or definition.run_on))
    return Execution(**row, parameters=json.dumps(dict(parameters), separators=(",", ":")))


def _store_run(session: Session, execution: Execution, definition: JobDefinition,
               actor: str, now: datetime, overlap: dict[str, Any] | None = None) -> None:
    """Store a run started by hand, with its first events: `scheduled` by `actor`, and
    `paused` if its first step waits for `resume`; or, as its job's overlap policy decided
    (`overlap`: the policy and the run in its way), `waiting` or `skipped`."""
    session.add(execution)
    session.flush()
    detail: dict[str, Any] = {"trigger": execution.trigger,
                              "scheduled_time": format_datetime(execution.scheduled_time)}
    if actor:
        detail["by"] = actor
    events = [event_row(execution.id, now, EventKind.SCHEDULED, detail=detail)]
    if execution.status == ExecutionStatus.SKIPPED:
        events.append(event_row(execution.id, now, EventKind.SKIPPED, detail={
            "reason": "overlap", **(overlap or {}), "message": execution.message}))
    elif execution.status == ExecutionStatus.WAITING:
        events.append(event_row(execution.id, now, EventKind.WAITING, detail=overlap or {}))
    waits = _first_step_waits(definition)
    if waits and execution.status == ExecutionStatus.PAUSED:
        events.append(event_row(execution.id, now, EventKind.PAUSED,
                                detail={"step": 0, "name": waits, "reason": "manual"}))
    insert_first_events(session.connection(), events)


@dataclass(frozen=True, slots=True)
class JobRuns:
    """The runs of a job a request made, earliest first, and the open runs of the job they
    replaced (`replace`), which the engines are to drop."""

    runs: list[Execution]
    replaced: list[str]


def make_job_runs(session: Session, job: Job, definition: JobDefinition,
                  times: Sequence_[datetime], parameters: Mapping[str, Any], now: datetime, *,
                  trigger: Trigger, policy: Overlap, actor: str = "",
                  run_on: tuple[str, ...] = ()) -> JobRuns:
    """Runs of a job due at `times` (now, for a run by hand; past occurrences, for a
    backfill), made as its overlap `policy` decides against the runs of it open: run,
    waiting, or skipped; the open ones canceled for `replace`. The caller holds the job's
    row locked (`job_to_run`), so that one decision is made at a time. They run on the
    nodes `run_on` names, or else on those the job names."""
    open_found = open_runs(session, [job.id]).get(job.id, Open())
    decision = decide(policy, open_found, times, now)
    if decision.cancel:
        cancel_open(session, list(decision.cancel), now, REPLACED_MESSAGE, actor=actor or None)
    blocking = next(iter((*open_found.active, *open_found.waiting)), None)
    runs: list[Execution] = []
    history: list[dict[str, Any]] = []
    for moment, fate in zip(times, decision.fates, strict=True):
        why = skip_reason(policy, blocking) if fate is Fate.SKIP else None
        run = _new_run(job.id, job.collection_id, definition, parameters,
                       job.execution_count, now, scheduled=moment, trigger=trigger, fate=fate,
                       message=why, run_on=run_on)
        _store_run(session, run, definition, actor, now,
                   None if fate is Fate.RUN else {"policy": policy.value, "behind": blocking})
        if why is not None:
            history.append(skipped_history(job.id, job.state, job.execution_count, moment,
                                           now, run.id, f"the run due at "
                                           f"{moment.isoformat()} was not run: {why}"))
        runs.append(run)
        blocking = blocking or run.id
    if history:
        insert_rows(session.connection(), HISTORY, history)
    return JobRuns(runs, list(decision.cancel))


def check_runs(collection: JobCollection) -> None:
    """409 unless the collection is started: nothing in a suspended one runs."""
    if collection.state != CollectionState.STARTED:
        raise Conflict(f"The job collection {collection.name} is suspended; nothing in it "
                       "runs until it is started again.")


# The `Retry-After` of a run refused because too many are open: they close as the engine
# runs them, or when canceled, at no time known in advance.
OPEN_RUNS_RETRY_SECONDS = 30


def run_allowance(collection: JobCollection, plans: Mapping[str, PlanSettings]
                  ) -> RunAllowance:
    """The limits on runs started by hand in the collection: its plan's burst and bound on
    open runs, the burst refilled as often as its plan and quota let a job recur."""
    plan = plans[collection.plan]
    interval = collection_limits(quota_of(collection), plans).min_recurrence
    return RunAllowance(plan.run_now_burst, interval, plan.max_open_runs)


def _check_allowance(allowance: RunAllowance, started: list[datetime], open_runs: int,
                     now: datetime, runs_of: str) -> None:
    """429 if one more run by hand would pass the allowance; `runs_of` names whose runs
    they are."""
    wait = wait_before_next_run(started, now, allowance)
    if wait > ZERO:
        seconds = whole_seconds(wait)
        raise TooManyRequests(
            f"Runs of {runs_of} started by hand are limited to {allowance.burst} at once and "
            f"one more every {describe_interval(allowance.interval)} after that, as the job "
            f"collection's plan and quota allow; the next run fits in {seconds} seconds.",
            seconds)
    if open_runs >= allowance.max_open:
        raise TooManyRequests(
            f"{open_runs} executions of {runs_of} are open (pending, running or paused), "
            f"the most the job collection's plan allows ({allowance.max_open}); one more "
            "fits once one of them finishes or is canceled.", OPEN_RUNS_RETRY_SECONDS)


def _started_since(session: Session, allowance: RunAllowance, now: datetime,
                   *runs: ColumnElement[bool]) -> list[datetime]:
    """When the runs that decide the next one started, newest first (from an index on the
    runs' owner and their start)."""
    if not allowance.limited:
        return []
    return list(session.scalars(
        select(Execution.created_at)
        .where(*runs, Execution.created_at > now - allowance.lookback)
        .order_by(Execution.created_at.desc())
        .offset(allowance.runs_to_skip).limit(allowance.runs_to_read)))


def _open_count(session: Session, *where: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(EXECUTIONS).where(
        *where, EXECUTIONS.c.status.in_(OPEN_STATUSES))) or 0)


def check_job_run_allowed(session: Session, job: Job, allowance: RunAllowance,
                          now: datetime) -> None:
    """429 if the job may not be run now once more: too many runs by hand lately, or too
    many of its executions open. The caller holds the job's row locked (`job_to_run`), so
    that requests on every API process and node count its runs one at a time."""
    started = _started_since(session, allowance, now, Execution.job_pk == job.id,
                             Execution.trigger == Trigger.MANUAL)
    open_runs = _open_count(session, EXECUTIONS.c.job_pk == job.id)
    _check_allowance(allowance, started, open_runs, now, f"the job {job.job_id}")


def check_inline_run_allowed(session: Session, collection: JobCollection,
                             allowance: RunAllowance, now: datetime) -> None:
    """429 if the collection may not run an inline definition once more: too many lately,
    or too many open. The caller holds the collection's row locked."""
    started = _started_since(session, allowance, now,
                             Execution.collection_id == collection.id,
                             Execution.job_pk.is_(None))
    open_runs = _open_count(session, EXECUTIONS.c.collection_id == collection.id,
                            EXECUTIONS.c.job_pk.is_(None))
    _check_allowance(allowance, started, open_runs, now,
                     f"inline definitions in the job collection {collection.name}")


def run_job_now(session: Session, collection: JobCollection, job: Job,
                definition: JobDefinition, parameters: Mapping[str, Any],
                plans: Mapping[str, PlanSettings], now: datetime, *, actor: str = "",
                overlap: Overlap | None = None, run_on: tuple[str, ...] = ()) -> JobRuns:
    """An execution of the job, due at once, outside its schedule and without moving it;
    `parameters` override the job's defaults, and `run_on` (if any) the nodes its own
    `runOn` names; its `scheduled` event names `actor`. It follows the job's overlap policy,
    unless the request names one (`overlap`): it may wait behind an open run, be skipped,
    or replace it. 429 past the collection's allowance of runs by hand."""
    check_runs(collection)
    if job.state == JobState.DISABLED:
        raise Conflict(f"The job {job.job_id} is disabled; enable it to run it.")
    check_job_run_allowed(session, job, run_allowance(collection, plans), now)
    merged = {**definition.parameters, **parameters}
    return make_job_runs(session, job, definition, [now], merged, now, trigger=Trigger.MANUAL,
                         policy=overlap or definition.concurrency_policy, actor=actor,
                         run_on=run_on)


def run_inline(session: Session, collection: JobCollection, definition: JobDefinition,
               box: SecretBox, plans: Mapping[str, PlanSettings], now: datetime, *,
               actor: str = "") -> Execution:
    """One run of an action that no job stores, counted against the collection's quota
    while it is open; its `scheduled` event names `actor`. 429 past the collection's
    allowance of runs by hand. The caller holds the collection's row locked."""
    check_runs(collection)
    check_inline_run_allowed(session, collection, run_allowance(collection, plans), now)
    try:
        count_one_more(session.connection(), quota_of(collection), plans)
    except QuotaExceeded as exc:
        raise Conflict(f"The run breaks a quota: {exc}; runs of inline definitions count "
                       "as jobs while they are open.") from None
    execution = _new_run(None, collection.id, definition, definition.parameters, 0, now)
    execution.definition, execution.secrets = seal_definition(definition, box)
    _store_run(session, execution, definition, actor, now)
    return execution


def get_execution(session: Session, collection_id: int, execution_id: str,
                  job_pk: int | None = None, *, for_update: bool = False) -> Execution:
    """An execution of the collection (and of the job, if one is named); 404 otherwise."""
    query = select(Execution).where(Execution.id == execution_id.lower(),
                                    Execution.collection_id == collection_id)
    if job_pk is not None:
        query = query.where(Execution.job_pk == job_pk)
    if for_update:
        query = query.with_for_update()
    execution = session.scalar(query)
    if execution is None:
        raise NotFound(f"The execution {execution_id} does not exist.")
    return execution


def list_executions(session: Session, collection_id: int, job_pk: int | None,
                    status: str | None, top: int | None, skip: int) -> list[Execution]:
    """Executions of the collection (or of one of its jobs), newest first, one page."""
    if job_pk is not None:
        query = select(Execution).where(Execution.job_pk == job_pk)
    else:  # its jobs' executions, by job, and its inline runs
        query = select(Execution).where(or_(
            Execution.job_pk.in_(select(Job.id).where(Job.collection_id == collection_id)),
            and_(Execution.job_pk.is_(None), Execution.collection_id == collection_id)))
    if status is not None:
        query = query.where(Execution.status == status)
    query = query.order_by(Execution.created_at.desc(), Execution.id.desc()).offset(skip)
    if top is not None:
        query = query.limit(top)
    return list(session.scalars(query))


def check_execution_preconditions(execution: Execution, if_match: str | None) -> None:
    """Honour `If-Match`: 412 when the execution changed since that ETag was read."""
    if if_match in (None, "*"):
        return
    tags = {tag.strip().removeprefix("W/").strip('"') for tag in if_match.split(",")}
    if execution_etag(execution) not in tags:
        raise PreconditionFailed(f"The execution {execution.id} changed since the given "
                                 "ETag was read.")


def cancel_execution(session: Session, execution: Execution, if_match: str | None,
                     now: datetime, canceled_by: str, *, actor: str = "") -> bool:
    """Cancel an open execution: no attempt, retry or step of it runs any more; its message
    and its job's history say who canceled it (`canceled_by`, as "certificate ..."), and its
    `canceled` event names `actor` (the certificate's name). Returns whether an attempt of
    it may be running on a node, which is to be told to drop it. The caller holds the
    execution's row locked (`get_execution(for_update=True)`)."""
    check_execution_preconditions(execution, if_match)
    if execution.status in FINAL_STATUSES:
        raise Conflict(f"The execution {execution.id} is {execution.status} already.")
    was_running = execution.status == ExecutionStatus.RUNNING
    cancel_open(session, [execution.id], now, f"Canceled by {canceled_by}.",
                actor=actor or canceled_by)
    session.refresh(execution)
    return was_running


def resume_execution(session: Session, execution: Execution, if_match: str | None,
                     now: datetime, *, actor: str = "") -> None:
    """Resume a paused execution: its failed step is retried, or its manual step runs; its
    `resumed` event names `actor`."""
    check_execution_preconditions(execution, if_match)
    if execution.status != ExecutionStatus.PAUSED:
        raise Conflict(f"The execution {execution.id} is {execution.status}, not paused; "
                       "only a paused execution can be resumed.")
    steps: list[StepRecord] = json.loads(execution.steps) if execution.steps else []
    step = execution.step or 0
    execution.steps = json.dumps(resumed_steps(steps, step))
    execution.status = ExecutionStatus.PENDING
    execution.attempt = 0
    execution.next_attempt_at = now
    execution.revision += 1
    session.flush()
    detail: dict[str, Any] = {"step": step}
    if step < len(steps):
        detail["name"] = steps[step].get("name")
    if actor:
        detail["by"] = actor
    insert_events(session.connection(),
                  [event_row(execution.id, now, EventKind.RESUMED, detail=detail)])


# --- use cases, for a call of the API --------------------------------------------------------

def start_job_run(session: Session, call: Call, cloud_service: str, collection: str,
                  job_id: str, parameters: Mapping[str, Any],
                  check_runnable: Callable[[JobDefinition], None], *,
                  note: str | None = None, overlap: Overlap | None = None,
                  run_on: tuple[str, ...] = ()) -> tuple[Execution, str]:
    """Run a job now with `parameters` over its own (on the nodes `run_on` names, if any,
    instead of those its job names), once `check_runnable` has accepted its definition,
    under its overlap policy or `overlap`, recorded in the audit (`execution.run`, with the
    note given); returns the run and the job's id. The engines are told, once it commits,
    to drop the runs it replaced."""
    found = get_collection(session, call.subscription_id, cloud_service, collection)
    job = job_to_run(session, found.id, job_id)
    definition = readable_definition(job)
    check_runnable(definition)
    made = run_job_now(session, found, job, definition, parameters, call.plans, call.now,
                       actor=call.actor, overlap=overlap, run_on=run_on)
    if made.replaced:
        announce_on_commit(session, call.home, made.replaced)
    [run] = made.runs
    record_change(session, call, "execution.run", Target(cloud_service, collection,
                                                         job.job_id),
                  detail=run.id, note=note)
    return run, job.job_id


def start_inline_run(session: Session, call: Call, cloud_service: str, collection: str,
                     spec: JobSpec) -> Execution:
    """Run a job definition once, stored as no job, within its collection's plan; recorded
    in the audit (`execution.inline`)."""
    found = get_collection(session, call.subscription_id, cloud_service, collection,
                           for_update=True)
    check_authentication_allowed(found.plan, spec.uses_authentication)
    run = run_inline(session, found, spec.job, call.box, call.plans, call.now,
                     actor=call.actor)
    record_change(session, call, "execution.inline", Target(cloud_service, collection),
                  detail=run.id)
    return run


def cancel_run(session: Session, call: Call, cloud_service: str, collection: str,
               execution_id: str, job_id: str | None, if_match: str | None,
               canceled_by: str, *, note: str | None = None
               ) -> tuple[Execution, str | None, bool]:
    """Cancel an execution as a call asks (`cancel_execution`, `canceled_by` naming the
    caller in its history), recorded in the audit; returns it, its job's id, and whether an
    attempt of it may be running on a node."""
    execution, name = find_execution(session, call, cloud_service, collection, execution_id,
                                     job_id, for_update=True)
    running = cancel_execution(session, execution, if_match, call.now, canceled_by,
                               actor=call.actor)
    record_change(session, call, "execution.cancel", Target(cloud_service, collection, name),
                  detail=execution.id, note=note)
    return execution, name, running


def resume_run(session: Session, call: Call, cloud_service: str, collection: str,
               execution_id: str, job_id: str | None, if_match: str | None, *,
               note: str | None = None) -> tuple[Execution, str | None]:
    """Resume a paused execution as a call asks (`resume_execution`), recorded in the
    audit; returns it and its job's id."""
    execution, name = find_execution(session, call, cloud_service, collection, execution_id,
                                     job_id, for_update=True)
    resume_execution(session, execution, if_match, call.now, actor=call.actor)
    record_change(session, call, "execution.resume", Target(cloud_service, collection, name),
                  detail=execution.id, note=note)
    return execution, name


def _job_of(session: Session, collection_id: int, job_id: str | None) -> Job | None:
    return None if job_id is None else get_job(session, collection_id, job_id)


def read_executions(session: Session, call: Call, cloud_service: str, collection: str,
                    job_id: str | None, status: str | None, top: int | None, skip: int
                    ) -> list[tuple[Execution, str | None]]:
    """One page of the executions of a collection, or of one of its jobs, newest first,
    optionally of one status; each with its job's id (None for an inline run)."""
    found = get_collection(session, call.subscription_id, cloud_service, collection)
    job = _job_of(session, found.id, job_id)
    runs = list_executions(session, found.id, job.id if job else None, status, top, skip)
    pks = {run.job_pk for run in runs if run.job_pk is not None}
    names = {job.id: job.job_id for job in (session.get(Job, pk) for pk in pks)
             if job is not None}
    return [(run, names.get(run.job_pk) if run.job_pk else None) for run in runs]


def find_execution(session: Session, call: Call, cloud_service: str, collection: str,
                   execution_id: str, job_id: str | None, *, for_update: bool = False
                   ) -> tuple[Execution, str | None]:
    """An execution of a collection (of its job, if one is named), with its job's id; the
    row locked `for_update`."""
    found = get_collection(session, call.subscription_id, cloud_service, collection)
    job = _job_of(session, found.id, job_id)
    execution = get_execution(session, found.id, execution_id, job.id if job else None,
                              for_update=for_update)
    if job is None and execution.job_pk is not None:
        job = session.get(Job, execution.job_pk)
    return execution, job.job_id if job else None


# --- an execution's events ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ExecutionEventRecord:
    """Something that happened to an execution, as recorded when it happened: its kind (an
    `EventKind`), the node it happened on, the attempt it concerns (from 1), and what else
    its kind tells (see docs/api.md)."""

    id: int
    at: datetime
    kind: str
    node: str | None
    attempt: int | None
    detail: dict[str, Any]


_EXECUTION_OF_COLLECTION = CompiledStatement(select(EXECUTIONS.c.id).where(
    EXECUTIONS.c.id == bindparam("execution_id"),
    EXECUTIONS.c.collection_id == bindparam("collection_id")))
_EVENTS_OF_EXECUTION = CompiledStatement(
    select(EVENTS.c.id, EVENTS.c.at, EVENTS.c.kind, EVENTS.c.node, EVENTS.c.attempt,
           EVENTS.c.detail)
    .where(EVENTS.c.execution_id == bindparam("execution_id")).order_by(EVENTS.c.id))


def read_execution_events(conn: Connection, subscription_id: str, cloud_service: str,
                          collection: str, execution_id: str) -> list[ExecutionEventRecord]:
    """The events of an execution of a collection, oldest first (at most `MAX_EVENTS`);
    404 when the collection or the execution is not there."""
    params = {"execution_id": execution_id.lower(),
              "collection_id": id_of_collection(conn, subscription_id, cloud_service,
                                                 collection)}
    if _EXECUTION_OF_COLLECTION.first(conn, params) is None:
        raise NotFound(f"The execution {execution_id} does not exist.")
    return [ExecutionEventRecord(row.id, row.at, row.kind, row.node, row.attempt,
                                 _detail(row.detail))
            for row in _EVENTS_OF_EXECUTION.all(conn, params)]


def _detail(text: str | None) -> dict[str, Any]:
    """An event's detail, read from its JSON object text (empty when there is none)."""
    detail = json.loads(text) if text else {}
    return detail if isinstance(detail, dict) else {"value": detail}
