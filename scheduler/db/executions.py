"""The statements on executions that the engine's store and the services both run: a new
execution's id and row, closing open executions as canceled with their jobs' history, and
an execution's events.

Events are written in the transaction of the change they tell of, a batch in one statement
(an executemany on SQLite). An execution keeps at most `MAX_EVENTS`: a statement adds an
event only while its execution holds fewer than its room (`events_room`), counted in the
statement itself, so that the bound costs no round trip; the ending always fits."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from scheduler.db.bulk import among, among_values, insert_rows
from scheduler.db.compiled import CompiledStatement
from scheduler.db.leases import Leases
from scheduler.db.models import EXECUTIONS, HISTORY, JOBS, ExecutionEvent, Job
from scheduler.db.stored_jobs import StoredJobError, public_definition
from scheduler.domain.executions import (
    ENDING_EVENTS,
    MAIN_ACTION,
    EventKind,
    StepRecord,
    events_room,
)
from scheduler.domain.jobs import Sequence
from scheduler.domain.nodes import read_run_on, waits_for_nodes
from scheduler.domain.states import OPEN_STATUSES, ExecutionStatus, Trigger

LEASES = Leases(EXECUTIONS, ExecutionStatus.RUNNING)
# The callback columns of an execution that waits for none: its callback URL is dead.
NO_CALLBACK: Mapping[str, Any] = {"callback_hash": None, "callback_deadline": None,
                                  "callback_result": None}
EVENTS = cast(Table, ExecutionEvent.__table__)
_MILLIS_MASK = (1 << 48) - 1
# Of the 80 bits after the time: the version (7) in 4, the variant (0b10) in 2, 74 random.
_RANDOM_MASK = ~(0xF << 76 | 0x3 << 62) & ((1 << 80) - 1)
_V7_BITS = 0x7 << 76 | 0x2 << 62


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
                  steps: list[StepRecord] | None = None, message: str | None = None,
                  run_on: str | None = None) -> dict[str, Any]:
    """A new executions row, its main action's first attempt (or first step) to come, run
    only by the nodes `run_on` names (its stored form, `domain.nodes.stored_run_on`; None:
    any node); every row has the same keys, so that a batch is one statement."""
    return {
        "id": execution_id, "job_pk": job_pk, "collection_id": collection_id,
        "scheduled_time": scheduled, "trigger": trigger, "status": status, "revision": 0,
        "action_name": MAIN_ACTION, "attempt": 0, "attempts": 0,
        "step": None if steps is None else 0,
        "steps": None if steps is None else json.dumps(steps),
        "repeat_count": repeat_count, "next_attempt_at": next_attempt_at,
        "lease_owner": lease_owner, "lease_until": lease_until, "node": node,
        "created_at": now, "start_time": start_time, "end_time": end_time,
        "message": message, "run_on": run_on,
    }


class WaitingForNodes(NamedTuple):
    """The open executions that only nodes none of which is alive may run: how many, and
    the names they wait for."""

    executions: int
    names: tuple[str, ...]


# The executions of each list of nodes that wait for one of them, as they are stored:
# pending, or running (one whose node is alive is among its nodes, so that it does not
# wait; one whose node died waits for another). A paused one waits for `resume`.
_OPEN_BY_RUN_ON = CompiledStatement(
    select(EXECUTIONS.c.run_on, func.count().label("open"))
    .where(EXECUTIONS.c.run_on.is_not(None),
           # Not IN: a list of values there is rendered when run, not compiled once.
           or_(EXECUTIONS.c.status == ExecutionStatus.PENDING,
               EXECUTIONS.c.status == ExecutionStatus.RUNNING))
    .group_by(EXECUTIONS.c.run_on))


def waiting_for_nodes(conn: Connection, live_names: Collection[str | None]) -> WaitingForNodes:
    """The pending or running executions none of whose nodes is among `live_names` (the
    names of the nodes alive now): a read of the few lists of nodes there are, each
    counted."""
    live = {name for name in live_names if name}
    count, names = 0, set[str]()
    for row in _OPEN_BY_RUN_ON.all(conn, {}):
        listed = read_run_on(row.run_on)
        if waits_for_nodes(listed, live):
            count += int(row.open)
            names.update(listed)
    return WaitingForNodes(count, tuple(sorted(names)))


class CanceledExecution(NamedTuple):
    """What a cancel reads back of each execution it closed, for its job's history."""

    id: str
    job_pk: int | None
    action_name: str
    attempt: int
    step: int | None
    repeat_count: int
    scheduled_time: datetime


_CANCELED_COLUMNS = tuple(EXECUTIONS.c[name] for name in CanceledExecution._fields)


def cancel_open(session: Session, execution_ids: list[str], now: datetime, message: str,
                *, actor: str | None = None, node: str | None = None) -> None:
    """Cancel those of these executions still open, with `message`, and write one history
    entry for each of them that has a job, and its `canceled` event (naming the `actor` who
    asked, or the engine `node` that found its job stopped), in the same transaction: an
    execution another transaction closed first is left alone, and gets neither."""
    dialect = session.get_bind().dialect.name
    canceled = [CanceledExecution(*row) for row in session.execute(update(EXECUTIONS).where(
        among(dialect, EXECUTIONS.c.id, execution_ids),
        EXECUTIONS.c.status.in_(OPEN_STATUSES),
    ).values(status=ExecutionStatus.CANCELED, end_time=now, message=message,
             next_attempt_at=None, revision=EXECUTIONS.c.revision + 1, **LEASES.released(),
             **NO_CALLBACK)
        .returning(*_CANCELED_COLUMNS))]
    detail = {"message": message} if actor is None else {"by": actor, "message": message}
    insert_events(session.connection(), [
        event_row(row.id, now, EventKind.CANCELED, node=node, detail=detail)
        for row in canceled])
    of_jobs = [row for row in canceled if row.job_pk is not None]
    if not of_jobs:
        return
    jobs = _jobs_for_history(session, {row.job_pk for row in of_jobs if row.job_pk is not None})
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
        found[pk] = (state, _step_names(definition))
    return found


def _step_names(definition: str) -> list[str]:
    """The names of the steps of a stored job's main action if it is a sequence; none if it
    is not, or if the stored job does not read (its history names no step)."""
    try:
        action = public_definition(definition).action
    except StoredJobError:
        return []
    return [step.name for step in action.steps] if isinstance(action, Sequence) else []


def canceled_history(execution: CanceledExecution, job_state: str, step_names: list[str],
                     message: str, now: datetime) -> dict[str, Any]:
    """The history row of a canceled execution, naming the step it stood at if its main
    action is a sequence of `step_names`."""
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


def unattempted_history(job_pk: int, job_state: str, repeat_count: int, scheduled: datetime,
                        now: datetime, execution_id: str | None, status: ExecutionStatus,
                        message: str) -> dict[str, Any]:
    """The history row of a run ended without an attempt: missed, or skipped."""
    return {
        "job_pk": job_pk, "timestamp": now, "start_time": now, "end_time": now,
        "expected_execution_time": scheduled, "state": job_state, "status": status,
        "action_name": MAIN_ACTION, "retry_count": 0, "repeat_count": repeat_count,
        "execution_id": execution_id, "message": message,
    }


def skipped_history(job_pk: int, job_state: str, repeat_count: int, scheduled: datetime,
                    now: datetime, execution_id: str, why: str) -> dict[str, Any]:
    """The history row of a run skipped (its execution is `skipped`): `why` says what of
    it, and why, as "the occurrence due at ... falls on a day the calendar ... excludes"."""
    return unattempted_history(job_pk, job_state, repeat_count, scheduled, now, execution_id,
                               ExecutionStatus.SKIPPED, f"Skipped: {why}.")


# --- an execution's events ---------------------------------------------------------------

# One encoder, made once: `json.dumps` with options makes a new one per call, which cost the
# engine more than the rest of an event's row.
_ENCODE_DETAIL = json.JSONEncoder(separators=(",", ":"), default=str).encode


def encoded_detail(detail: Mapping[str, Any]) -> str:
    """An event's detail as it is kept: JSON object text. For a detail many events share,
    encoded once and given to `event_row` as text."""
    return _ENCODE_DETAIL(detail)


def event_row(execution_id: str, at: datetime, kind: EventKind, *, node: str | None = None,
              attempt: int | None = None, detail: Mapping[str, Any] | str | None = None
              ) -> dict[str, Any]:
    """A new execution_events row; every row has the same keys, so that a batch is one
    statement. `detail` is kept as JSON object text (None when empty); text given is taken
    as encoded already (`encoded_detail`)."""
    text = detail if isinstance(detail, str) or not detail else _ENCODE_DETAIL(detail)
    return {"execution_id": execution_id, "at": at, "kind": kind.value, "node": node,
            "attempt": attempt, "detail": text or None}


def insert_first_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Add the first events of executions made in this transaction: they hold none yet, and
    a few each, so that no bound is counted."""
    insert_rows(conn, EVENTS, rows)


_EVENT_COLUMNS = ("execution_id", "at", "kind", "node", "attempt", "detail")
# On SQLite, by executemany: each row's count sees the rows added before it, and its room is
# worked out in the statement.
_ROOM = case((or_(*(bindparam("kind") == literal_column(f"'{kind.value}'")
                    for kind in sorted(ENDING_EVENTS))),
              literal_column(str(events_room(EventKind.COMPLETED)))),
             else_=literal_column(str(events_room(EventKind.LEASED))))
_ADD_EVENT_ON_SQLITE = CompiledStatement(insert(EVENTS).from_select(
    list(_EVENT_COLUMNS),
    select(*(bindparam(name, type_=EVENTS.c[name].type) for name in _EVENT_COLUMNS)).where(
        select(func.count()).select_from(EVENTS)
        .where(EVENTS.c.execution_id == bindparam("execution_id"))
        .scalar_subquery() < _ROOM)))
# On PostgreSQL, one statement over one array per column: its count sees none of the rows
# it adds, so that each row carries its room less the events of its execution before it in
# the batch (`_below`).
_ADD_EVENTS_ON_POSTGRESQL = text(
    "INSERT INTO execution_events (execution_id, at, kind, node, attempt, detail) "
    "SELECT v.execution_id, v.at, v.kind, v.node, v.attempt, v.detail "
    "FROM unnest(CAST(:execution_id AS VARCHAR(32)[]), CAST(:at AS TIMESTAMP WITHOUT TIME "
    "ZONE[]), CAST(:kind AS VARCHAR(32)[]), CAST(:node AS VARCHAR(64)[]), "
    "CAST(:attempt AS INTEGER[]), CAST(:detail AS TEXT[]), CAST(:below AS INTEGER[])) "
    "AS v(execution_id, at, kind, node, attempt, detail, below) "
    "WHERE (SELECT count(*) FROM execution_events AS e "
    "WHERE e.execution_id = v.execution_id) < v.below")


def insert_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Add events (rows of `event_row`), in their order, in one statement: each only while
    its execution holds fewer events than its room (`events_room`), so that an execution
    keeps at most `MAX_EVENTS`, its ending always among them."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        _ADD_EVENT_ON_SQLITE.execute_many(conn, rows)
        return
    below = _below(rows)
    arrays = {name: among_values(conn, EVENTS.c[name], [row[name] for row in rows])
              for name in _EVENT_COLUMNS}
    conn.execute(_ADD_EVENTS_ON_POSTGRESQL,
                 {**arrays, "below": among_values(conn, EVENTS.c.attempt, below)})


def _below(rows: list[dict[str, Any]]) -> list[int]:
    """For each row, the count of its execution's events it must find to be kept: its room,
    less the events of its execution before it in the batch that are not endings (an
    ending is kept whenever the others fit before it, so that it does not count them)."""
    before: Counter[str] = Counter()
    below: list[int] = []
    for row in rows:
        execution_id, kind = row["execution_id"], row["kind"]
        if kind in ENDING_EVENTS:
            below.append(events_room(kind))
        else:
            below.append(events_room(kind) - before[execution_id])
            before[execution_id] += 1
    return below
