"""Executions: made (one per occurrence, or by hand), leased to the node that runs them,
canceled when their job stops."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, update
from sqlalchemy.orm import Session

from scheduler.db.bulk import among, insert_rows
from scheduler.db.models import EXECUTIONS, OCCURRENCE_WHERE, Execution
from scheduler.domain.executions import MAIN_ACTION, StepRecord
from scheduler.domain.states import OPEN_STATUSES, ExecutionStatus, Trigger
from scheduler.services.leases import Leases

STOPPED_MESSAGE = ("Canceled: the job was disabled or deleted, or its job collection suspended "
                   "or deleted, before this attempt was made.")
LEASES = Leases(EXECUTIONS, ExecutionStatus.RUNNING)
_OCCURRENCE = ("job_pk", "scheduled_time")


def new_execution_id() -> str:
    """An execution id; it is also the `x-ms-execution-tag` receivers de-duplicate on."""
    return uuid.uuid4().hex


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


def insert_executions(session: Session, rows: list[dict[str, Any]]
                      ) -> set[tuple[int, datetime]]:
    """Insert executions, skipping any (job, scheduled time) that exists; returns the
    (job, scheduled time) of those inserted. The unique key is what makes firing twice
    impossible."""
    inserted = insert_rows(session.connection(), EXECUTIONS, rows,
                           skip_conflicts_on=_OCCURRENCE, conflict_where=OCCURRENCE_WHERE,
                           returning=_OCCURRENCE)
    return {(int(job_pk), scheduled) for job_pk, scheduled in inserted}


def runnable(now: datetime) -> ColumnElement[bool]:
    """Executions to run now: pending and due, or running on a node whose lease ran out."""
    return or_(
        and_(Execution.status == ExecutionStatus.PENDING, Execution.next_attempt_at <= now),
        LEASES.lapsed(now),
    )


def cancel_executions(session: Session, execution_ids: list[str], now: datetime) -> None:
    """Close open executions that will not run: their job stopped."""
    if not execution_ids:
        return
    dialect = session.get_bind().dialect.name
    session.execute(update(EXECUTIONS).where(
        among(dialect, EXECUTIONS.c.id, execution_ids),
        EXECUTIONS.c.status.in_(OPEN_STATUSES),
    ).values(status=ExecutionStatus.CANCELED, end_time=now, message=STOPPED_MESSAGE,
             next_attempt_at=None, revision=EXECUTIONS.c.revision + 1, **LEASES.released()))
