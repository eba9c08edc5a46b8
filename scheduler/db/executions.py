"""The statements on executions that the engine's store and the services both run: a new
execution's id and row, and closing open executions as canceled with their jobs' history."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from scheduler.db.bulk import among, insert_rows
from scheduler.db.leases import Leases
from scheduler.db.models import EXECUTIONS, HISTORY, JOBS, Job
from scheduler.db.stored_jobs import StoredJobError, public_definition
from scheduler.domain.executions import MAIN_ACTION, StepRecord
from scheduler.domain.jobs import Sequence
from scheduler.domain.states import OPEN_STATUSES, ExecutionStatus, Trigger

LEASES = Leases(EXECUTIONS, ExecutionStatus.RUNNING)
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


def cancel_open(session: Session, execution_ids: list[str], now: datetime, message: str
                ) -> None:
    """Cancel those of these executions still open, with `message`, and write one history
    entry for each of them that has a job, in the same transaction: an execution another
    transaction closed first is left alone, and gets no entry."""
    dialect = session.get_bind().dialect.name
    canceled = [CanceledExecution(*row) for row in session.execute(update(EXECUTIONS).where(
        among(dialect, EXECUTIONS.c.id, execution_ids),
        EXECUTIONS.c.status.in_(OPEN_STATUSES),
    ).values(status=ExecutionStatus.CANCELED, end_time=now, message=message,
             next_attempt_at=None, revision=EXECUTIONS.c.revision + 1, **LEASES.released())
        .returning(*_CANCELED_COLUMNS))]
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
