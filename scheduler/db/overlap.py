"""The statements of a job's overlap policy (`concurrencyPolicy`) that the engine's store and
the services both run: a job's open runs, read before new ones are made, and the waiting
runs that go on once the runs before them ended.

A run made while another of its job is open may be made `waiting`. It goes on (`pending`,
at its own time or at once if that passed) once its job has no run under way and no earlier
run waiting: whatever closed the run before it (an attempt recorded, a cancel, a fault).
One whose `next_attempt_at` is set waits only until then: if it is still waiting at that
time, the run in its way was still open when it fell due, and it is skipped."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, and_, case, exists, func, not_, or_, select, update
from sqlalchemy.orm import Session

from scheduler.db.bulk import among
from scheduler.db.models import EXECUTIONS
from scheduler.domain.overlap import Open
from scheduler.domain.states import ACTIVE_STATUSES, OPEN_STATUSES, ExecutionStatus

_WAITING = EXECUTIONS.c.status == ExecutionStatus.WAITING
_OTHER = EXECUTIONS.alias("other_run")


def _free_to_go() -> ColumnElement[bool]:
    """A waiting run whose job has no run under way and no earlier run waiting."""
    runs, other = EXECUTIONS.c, _OTHER.c
    # Not IN: the glance is compiled once, and a list of values is rendered when run.
    under_way = exists().where(other.job_pk == runs.job_pk,
                               or_(*(other.status == status for status in ACTIVE_STATUSES)))
    earlier = exists().where(
        other.job_pk == runs.job_pk, other.status == ExecutionStatus.WAITING,
        or_(other.scheduled_time < runs.scheduled_time,
            and_(other.scheduled_time == runs.scheduled_time, other.id < runs.id)))
    return and_(_WAITING, not_(under_way), not_(earlier))


def waiting_due(now_or_earlier: ColumnElement[datetime]) -> ColumnElement[datetime | None]:
    """When a waiting run next needs a node, for the engine's glance: `now_or_earlier`
    (a time long past) if one may go on now, else the earliest time one is to be skipped;
    None when none waits, or all wait without a time."""
    return (select(func.min(case((_free_to_go(), now_or_earlier),
                                 else_=EXECUTIONS.c.next_attempt_at)))
            .where(_WAITING).scalar_subquery())


def open_runs(session: Session, job_pks: Collection[int]) -> dict[int, Open]:
    """The open runs of these jobs, by job (those with none left out): under way or due,
    and waiting, each earliest first."""
    if not job_pks:
        return {}
    dialect = session.get_bind().dialect.name
    runs = EXECUTIONS.c
    found: dict[int, tuple[list[str], list[str]]] = {}
    for job_pk, execution_id, status in session.execute(
            select(runs.job_pk, runs.id, runs.status)
            .where(among(dialect, runs.job_pk, job_pks), runs.status.in_(OPEN_STATUSES))
            .order_by(runs.scheduled_time, runs.id)):
        active, waiting = found.setdefault(job_pk, ([], []))
        (waiting if status == ExecutionStatus.WAITING else active).append(execution_id)
    return {job_pk: Open(tuple(active), tuple(waiting))
            for job_pk, (active, waiting) in found.items()}


def release_waiting(session: Session, now: datetime) -> list[str]:
    """Let the waiting runs go on whose jobs have nothing before them open any more: each
    `pending` from its own time (at once if it passed), or `paused` if its first step is
    manual (it was made with that step's record, waiting for `resume`); returns them."""
    runs = EXECUTIONS.c
    manual = runs.steps.is_not(None)
    return list(session.scalars(
        update(EXECUTIONS).where(_free_to_go()).values(
            status=case((manual, ExecutionStatus.PAUSED), else_=ExecutionStatus.PENDING),
            next_attempt_at=case((manual, None), (runs.scheduled_time > now,
                                                  runs.scheduled_time), else_=now),
            revision=runs.revision + 1)
        .returning(runs.id)))


class Overdue(NamedTuple):
    """A waiting run whose time came with a run of its job still in its way."""

    id: str
    job_pk: int
    scheduled_time: datetime
    repeat_count: int


def overdue_waiting(session: Session, now: datetime) -> list[Overdue]:
    """The waiting runs whose time to go on passed with a run of their job still in their
    way (those free to go were let go first), locked."""
    runs = EXECUTIONS.c
    query = (select(runs.id, runs.job_pk, runs.scheduled_time, runs.repeat_count)
             .where(_WAITING, runs.next_attempt_at <= now))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [Overdue(*row) for row in session.execute(query)]
