"""The audit: every change made through the API or the dashboard, who made it (the
certificate's name), when, and the note given; per job and per collection.

Names are kept as the resources spell them (a path may spell them in any case): a change is
recorded, and the changes are read, under the names its cloud service, collection and job
have, or as written when they no longer exist."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, insert, literal, select
from sqlalchemy.orm import Session

from scheduler.db.models import AuditEvent, CloudService, Job, JobCollection
from scheduler.services.calls import Call

MAX_NOTE_CHARS = 1024
# An event's detail is a few words; a longer one (a long list of changes) is cut.
MAX_DETAIL_CHARS = 2000
# The most changes one page of the API shows.
MAX_PAGE = 1000
ARROW = "→"


@dataclass(frozen=True, slots=True)
class Target:
    """What a change was made to: a collection, or a job of it (names as written)."""

    cloud_service: str | None = None
    collection: str | None = None
    job_id: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One recorded change."""

    id: int
    at: datetime
    actor: str
    kind: str
    target: Target
    detail: str | None
    note: str | None
    request_id: str


def record_change(session: Session, call: Call, kind: str, target: Target, *,
                  detail: str | None = None, note: str | None = None) -> None:
    """Record a change the call made, in its transaction: it is kept if and only if the
    change is. The target is named as its resources spell it."""
    service, collection, job = _spelled(call.subscription_id, target)
    if detail is not None and len(detail) > MAX_DETAIL_CHARS:
        detail = detail[:MAX_DETAIL_CHARS - 1] + "…"
    session.execute(insert(AuditEvent).values(
        subscription_id=call.subscription_id, at=call.now, actor=call.actor or "unknown",
        kind=kind, cloud_service=service, collection=collection, job_id=job,
        detail=detail, note=note or None, request_id=call.request_id))


def read_changes(conn: Connection, subscription_id: str, target: Target = Target(), *,
                 before_id: int | None = None, limit: int = 100) -> Sequence[Change]:
    """The subscription's changes, newest first: all of them, or those of a cloud service,
    a collection or a job (`target`'s names that are set, in any case), before an id for
    paging; at most `limit`."""
    spelled = conn.execute(select(*_spelled(subscription_id, target))).one()
    query = select(AuditEvent).where(AuditEvent.subscription_id == subscription_id)
    for column, value in zip((AuditEvent.cloud_service, AuditEvent.collection,
                              AuditEvent.job_id), spelled, strict=True):
        if value is not None:
            query = query.where(column == value)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    rows = Session(bind=conn).scalars(query.order_by(AuditEvent.id.desc())
                                      .limit(max(1, limit)))
    return [Change(id=row.id, at=row.at, actor=row.actor, kind=row.kind,
                   target=Target(row.cloud_service, row.collection, row.job_id),
                   detail=row.detail, note=row.note, request_id=row.request_id)
            for row in rows]


def _spelled(subscription_id: str, target: Target) -> tuple[Any, Any, Any]:
    """The target's names as SQL expressions: each as its resource spells it, or as
    written when there is no such resource (any more); None where the target names
    nothing."""
    service = (select(CloudService.id, CloudService.name)
               .where(CloudService.subscription_id == subscription_id,
                      CloudService.name_key == (target.cloud_service or "").lower())
               .limit(1).subquery())
    collection = (select(JobCollection.id, JobCollection.name)
                  .where(JobCollection.cloud_service_id == select(service.c.id)
                         .scalar_subquery(),
                         JobCollection.name_key == (target.collection or "").lower())
                  .limit(1).subquery())
    job = (select(Job.job_id)
           .where(Job.collection_id == select(collection.c.id).scalar_subquery(),
                  Job.job_key == (target.job_id or "").lower())
           .limit(1).scalar_subquery())
    return (_or_written(select(service.c.name).scalar_subquery(), target.cloud_service),
            _or_written(select(collection.c.name).scalar_subquery(), target.collection),
            _or_written(job, target.job_id))


def _or_written(spelled: ColumnElement[Any], written: str | None) -> Any:
    if written is None:
        return literal(None)
    return func.coalesce(spelled, written)


def described(changes: Iterable[tuple[str, Any, Any]]) -> str | None:
    """What changed, in words: `name: before → after` for each pair that differs, joined
    by `; `; None when nothing did."""
    parts = [f"{name}: {_shown(before)} {ARROW} {_shown(after)}"
             for name, before, after in changes if before != after]
    return "; ".join(parts) or None


def _shown(value: Any) -> str:
    return "none" if value is None or value == "" else str(value)
