"""Executions: made (one per occurrence, or by hand), leased to the node that runs them,
canceled when their job stops; and executions by request: run a job now, run an inline
definition once, list and read executions, cancel and resume them.

The functions for requests work inside the caller's transaction; the caller wakes the
engines once it is committed, so that a run starts, or a canceled attempt stops, without
waiting for a pass.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from scheduler.db.bulk import among, among_bound, among_values, insert_rows
from scheduler.db.compiled import CompiledStatement
from scheduler.db.models import (
    EXECUTIONS,
    HISTORY,
    JOBS,
    OCCURRENCE_WHERE,
    Execution,
    Job,
    JobCollection,
)
from scheduler.domain.executions import MAIN_ACTION, StepRecord, resumed_steps, waiting_step
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
    ExecutionStatus,
    JobState,
    Trigger,
)
from scheduler.errors import Conflict, NotFound, PreconditionFailed, TooManyRequests
from scheduler.security.secrets import SecretBox
from scheduler.services.cloudservices import DELETING
from scheduler.services.collections import (
    STARTED,
    collection_limits,
    count_one_more,
    quota_of,
)
from scheduler.services.leases import Leases, Moment
from scheduler.settings import PlanSettings

# Why an execution the engine was to run is canceled (`cancel_executions`): the first
# reason that holds when it is canceled. None may hold by then: the job's stored version
# could not be read, or the job was stopped and has run again since.
COLLECTION_DELETED_MESSAGE = "Canceled because the job collection is being deleted."
COLLECTION_SUSPENDED_MESSAGE = "Canceled because the job collection was suspended."
JOB_DISABLED_MESSAGE = "Canceled because the job was disabled."
JOB_ENDED_MESSAGE = "Canceled because the job is {state}: it runs no more occurrences."
STOPPED_MESSAGE = ("Canceled because the job stopped, or its stored version could not be "
                   "read, before this attempt was made.")
LEASES = Leases(EXECUTIONS, ExecutionStatus.RUNNING)
_MILLIS_MASK = (1 << 48) - 1
# Of the 80 bits after the time: the version (7) in 4, the variant (0b10) in 2, 74 random.
_RANDOM_MASK = ~(0xF << 76 | 0x3 << 62) & ((1 << 80) - 1)
_V7_BITS = 0x7 << 76 | 0x2 << 62
_OCCURRENCE = ("job_pk", "scheduled_time")


def new_execution_id() -> str:
    """An execution id; it is also the `x-ms-execution-tag` receivers de-duplicate on.

    A version 7 UUID (RFC 9562): its first 48 bits are the Unix time in milliseconds and
    the rest random, so that the ids an engine makes, thousands a second, go in at the end
    of the primary key's index instead of all over it. Random ids made every commit of a
    tick dirty a page of that index per execution, and commits slowed as the table grew."""
    millis = time.time_ns() // 1_000_000
    value = (millis & _MILLIS_MASK) << 80 | int.from_bytes(os.urandom(10)) & _RANDOM_MASK
    return f"{value | _V7_BITS:032x}"


def execution_row(execution_id: str, job_pk: int | None, collection_id: int,
                  scheduled: datetime, repeat_count: int, now: datetime, *,
                  status: ExecutionStatus, trigger: Trigger = Trigger.SCHEDULE,
                  next_attempt_at: datetime | None = None, lease_owner: str | None = None,
                  lease_until: datetime | None = None, node: str | None = None,
                  start_time: datetime | None = None, end_time: datetime | None = None,
                  steps: list[StepRecord] | None = None) -> dict[str, Any]:
    """A new executions row, its main action's first attempt (or first step) to come; every
    row has the same keys, so that a batch is one statement."""
    return {
        "id": execution_id, "job_pk": job_pk, "collection_id": collection_id,
        "scheduled_time": scheduled, "trigger": trigger, "status": status, "revision": 0,
        "action_name": MAIN_ACTION, "attempt": 0, "attempts": 0,
        "step": None if steps is None else 0,
        "steps": None if steps is None else json.dumps(steps),
        "repeat_count": repeat_count, "next_attempt_at": next_attempt_at,
        "lease_owner": lease_owner, "lease_until": lease_until, "node": node,
        "created_at": now, "start_time": start_time, "end_time": end_time,
    }


# The columns of every execution made (`execution_row`'s), and on SQLite the statement that
# makes them: by executemany, which returns no rows but counts them, so that only a batch
# that ran into an occurrence made already (the unique key) reads back which went in.
_MADE_COLUMNS = tuple(execution_row("", None, 0, datetime.min, 0, datetime.min,
                                    status=ExecutionStatus.PENDING))
_MAKE_ON_SQLITE = CompiledStatement(
    sqlite_insert(EXECUTIONS)
    .values({name: bindparam(name, type_=EXECUTIONS.c[name].type) for name in _MADE_COLUMNS})
    .on_conflict_do_nothing(index_elements=list(_OCCURRENCE),
                            index_where=text(OCCURRENCE_WHERE)))
_FOUND = CompiledStatement(lambda dialect: select(Execution.id).where(
    among_bound(dialect, EXECUTIONS.c.id, "ids")))


def insert_executions(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert executions (rows of `execution_row`), skipping any whose (job, scheduled time)
    exists; returns the ids of those inserted. The unique key is what makes firing twice
    impossible."""
    if not rows:
        return set()
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        inserted = insert_rows(conn, EXECUTIONS, rows, skip_conflicts_on=_OCCURRENCE,
                               conflict_where=OCCURRENCE_WHERE, returning=("id",))
        return {execution_id for execution_id, in inserted}
    if _MAKE_ON_SQLITE.execute_many(conn, rows) == len(rows):
        return {row["id"] for row in rows}
    # Ids are new, so those found are the ones this statement inserted.
    ids = [row["id"] for row in rows]
    found = _FOUND.all(conn, {"ids": among_values(conn, EXECUTIONS.c.id, ids)})
    return {row.id for row in found}


def runnable(now: Moment) -> ColumnElement[bool]:
    """Executions to run now: pending and due, or running on a node whose lease ran out."""
    return or_(
        and_(Execution.status == ExecutionStatus.PENDING, Execution.next_attempt_at <= now),
        LEASES.lapsed(now),
    )


def cancel_executions(session: Session, execution_ids: list[str], now: datetime) -> None:
    """Close open executions that will not run, their job (or its collection) having
    stopped: each gets the reason as its message, and a job's one history entry saying so."""
    if not execution_ids:
        return
    dialect = session.get_bind().dialect.name
    by_reason: dict[str, list[str]] = {}
    for execution_id, trigger, job_state, collection_state, lifecycle in session.execute(
            select(Execution.id, Execution.trigger, Job.state, JobCollection.state,
                   JobCollection.lifecycle)
            .outerjoin(Job, Job.id == Execution.job_pk)
            .join(JobCollection, JobCollection.id == Execution.collection_id)
            .where(among(dialect, EXECUTIONS.c.id, execution_ids))):
        reason = why_stopped(trigger, job_state, collection_state, lifecycle)
        by_reason.setdefault(reason, []).append(execution_id)
    for message, ids in by_reason.items():
        _cancel(session, ids, now, message)


def why_stopped(trigger: str, job_state: str | None, collection_state: str,
                lifecycle: str) -> str:
    """Why an execution is not run, from its trigger, its job's state (None for an inline
    run), its collection's state and lifecycle: the message it is canceled with."""
    if lifecycle == DELETING:  # the collection, or its cloud service, is being deleted
        return COLLECTION_DELETED_MESSAGE
    if collection_state != STARTED:
        return COLLECTION_SUSPENDED_MESSAGE
    if job_state == JobState.DISABLED:
        return JOB_DISABLED_MESSAGE
    if job_state in (JobState.COMPLETED, JobState.FAULTED) and trigger == Trigger.SCHEDULE:
        return JOB_ENDED_MESSAGE.format(state=job_state)
    return STOPPED_MESSAGE


# What a cancel reads back of each execution it closed, for its job's history.
_CANCELED_COLUMNS = (EXECUTIONS.c.id, EXECUTIONS.c.job_pk, EXECUTIONS.c.action_name,
                     EXECUTIONS.c.attempt, EXECUTIONS.c.step, EXECUTIONS.c.repeat_count,
                     EXECUTIONS.c.scheduled_time)


def _cancel(session: Session, execution_ids: list[str], now: datetime, message: str) -> None:
    """Cancel those of these executions still open, with `message`, and write one history
    entry for each of them that has a job, in the same transaction: an execution another
    transaction closed first is left alone, and gets no entry."""
    dialect = session.get_bind().dialect.name
    canceled = session.execute(update(EXECUTIONS).where(
        among(dialect, EXECUTIONS.c.id, execution_ids),
        EXECUTIONS.c.status.in_(OPEN_STATUSES),
    ).values(status=ExecutionStatus.CANCELED, end_time=now, message=message,
             next_attempt_at=None, revision=EXECUTIONS.c.revision + 1, **LEASES.released())
        .returning(*_CANCELED_COLUMNS)).all()
    of_jobs = [row for row in canceled if row.job_pk is not None]
    if not of_jobs:
        return
    jobs = _jobs_for_history(session, {row.job_pk for row in of_jobs})
    insert_rows(session.connection(), HISTORY, [
        canceled_history(row, *jobs[row.job_pk], message, now) for row in of_jobs
        if row.job_pk in jobs])


def _jobs_for_history(session: Session, job_pks: set[int]
                      ) -> dict[int, tuple[str, list[str]]]:
    """Each job's state and, if its main action is a sequence, its steps' names."""
    dialect = session.get_bind().dialect.name
    found: dict[int, tuple[str, list[str]]] = {}
    for pk, state, definition in session.execute(select(Job.id, Job.state, Job.definition)
                                                 .where(among(dialect, JOBS.c.id, job_pks))):
        action = json.loads(definition).get("action") or {}
        steps = action.get("steps") if action.get("type") == "sequence" else None
        found[pk] = (state, [str(step["name"]) for step in steps or ()])
    return found


def canceled_history(execution: Any, job_state: str, step_names: list[str], message: str,
                     now: datetime) -> dict[str, Any]:
    """The history row of a canceled execution (a row of its id, job, action name,
    attempt, step, repeat count and scheduled time), naming the step it stood at if its
    main action is a sequence of `step_names`."""
    step: int = execution.step or 0
    # Not a sequence's step, or its job has fewer steps since: no step named.
    index = step if execution.action_name == MAIN_ACTION and step < len(step_names) else None
    return {
        "job_pk": execution.job_pk, "timestamp": now, "start_time": now, "end_time": now,
        "expected_execution_time": execution.scheduled_time, "state": job_state,
        "status": ExecutionStatus.CANCELED, "action_name": execution.action_name,
        "message": message, "retry_count": execution.attempt,
        "repeat_count": execution.repeat_count, "execution_id": execution.id,
        "step_index": index, "step_name": step_names[index] if index is not None else None,
    }


def fail_executions(session: Session, execution_ids: list[str], now: datetime,
                    message: str) -> None:
    """Close open executions that cannot run (what they run cannot be read) as failed."""
    if not execution_ids:
        return
    dialect = session.get_bind().dialect.name
    session.execute(update(EXECUTIONS).where(
        among(dialect, EXECUTIONS.c.id, execution_ids),
        EXECUTIONS.c.status.in_(OPEN_STATUSES),
    ).values(status=ExecutionStatus.FAILED, end_time=now, message=message,
             next_attempt_at=None, revision=EXECUTIONS.c.revision + 1, **LEASES.released()))


# --- by request -------------------------------------------------------------------------


def execution_etag(execution: Execution) -> str:
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


def _first_step_waits(document: Mapping[str, Any]) -> str | None:
    """The name of a stored document's first step if it is manual (it waits for `resume`
    before it runs)."""
    action = document.get("action") or {}
    if action.get("type") != "sequence":
        return None
    first = action["steps"][0]
    return str(first["name"]) if first.get("manual") else None


def _new_run(job_pk: int | None, collection_id: int, document: Mapping[str, Any],
             parameters: Mapping[str, Any], repeat_count: int, now: datetime
             ) -> Execution:
    """A run started by hand, due at once, or waiting if its first step is manual."""
    waits = _first_step_waits(document)
    steps: list[StepRecord] | None = [waiting_step(waits)] if waits else None
    row = execution_row(
        new_execution_id(), job_pk, collection_id, now, repeat_count, now,
        status=ExecutionStatus.PAUSED if waits else ExecutionStatus.PENDING,
        trigger=Trigger.MANUAL, next_attempt_at=None if waits else now, steps=steps)
    return Execution(**row, parameters=json.dumps(dict(parameters), separators=(",", ":")))


def _check_runs(collection: JobCollection) -> None:
    if collection.state != STARTED:
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
                parameters: Mapping[str, Any], plans: Mapping[str, PlanSettings],
                now: datetime) -> Execution:
    """An execution of the job, due at once, outside its schedule and without moving it;
    `parameters` override the job's defaults. 429 past the collection's allowance of runs
    by hand."""
    _check_runs(collection)
    if job.state == JobState.DISABLED:
        raise Conflict(f"The job {job.job_id} is disabled; enable it to run it.")
    check_job_run_allowed(session, job, run_allowance(collection, plans), now)
    document = json.loads(job.definition)
    merged = {**(document.get("parameters") or {}), **parameters}
    execution = _new_run(job.id, collection.id, document, merged, job.execution_count, now)
    session.add(execution)
    session.flush()
    return execution


def run_inline(session: Session, collection: JobCollection, definition: Mapping[str, Any],
               secrets: Mapping[str, str], parameters: Mapping[str, Any], box: SecretBox,
               plans: Mapping[str, PlanSettings], now: datetime) -> Execution:
    """One run of an action that no job stores, counted against the collection's quota
    while it is open; 429 past the collection's allowance of runs by hand. The caller holds
    the collection's row locked."""
    _check_runs(collection)
    check_inline_run_allowed(session, collection, run_allowance(collection, plans), now)
    try:
        count_one_more(session.connection(), quota_of(collection), plans)
    except QuotaExceeded as exc:
        raise Conflict(f"The run breaks a quota: {exc}; runs of inline definitions count "
                       "as jobs while they are open.") from None
    execution = _new_run(None, collection.id, definition, parameters, 0, now)
    execution.definition = json.dumps(dict(definition), separators=(",", ":"))
    execution.secrets = box.seal(dict(secrets))
    session.add(execution)
    session.flush()
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
                     now: datetime, canceled_by: str) -> bool:
    """Cancel an open execution: no attempt, retry or step of it runs any more; its message
    and its job's history say who canceled it (`canceled_by`, as "certificate ..."). Returns
    whether an attempt of it may be running on a node, which is to be told to drop it. The
    caller holds the execution's row locked (`get_execution(for_update=True)`)."""
    check_execution_preconditions(execution, if_match)
    if execution.status in FINAL_STATUSES:
        raise Conflict(f"The execution {execution.id} is {execution.status} already.")
    was_running = execution.status == ExecutionStatus.RUNNING
    _cancel(session, [execution.id], now, f"Canceled by {canceled_by}.")
    session.refresh(execution)
    return was_running


def resume_execution(session: Session, execution: Execution, if_match: str | None,
                     now: datetime) -> None:
    """Resume a paused execution: its failed step is retried, or its manual step runs."""
    check_execution_preconditions(execution, if_match)
    if execution.status != ExecutionStatus.PAUSED:
        raise Conflict(f"The execution {execution.id} is {execution.status}, not paused; "
                       "only a paused execution can be resumed.")
    steps: list[StepRecord] = json.loads(execution.steps) if execution.steps else []
    execution.steps = json.dumps(resumed_steps(steps, execution.step or 0))
    execution.status = ExecutionStatus.PENDING
    execution.attempt = 0
    execution.next_attempt_at = now
    execution.revision += 1
    session.flush()
