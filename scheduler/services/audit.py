"""The audit: every change made through the API or the dashboard, who made it (the
certificate's name), when, and the note given; per job and per collection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session

from scheduler.db.models import AuditEvent
from scheduler.services.calls import Call

MAX_NOTE_CHARS = 1024


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
    change is."""
    session.execute(insert(AuditEvent).values(
        subscription_id=call.subscription_id, at=call.now, actor=call.actor or "unknown",
        kind=kind, cloud_service=target.cloud_service, collection=target.collection,
        job_id=target.job_id, detail=detail, note=note or None, request_id=call.request_id))


def read_changes(conn: Connection, subscription_id: str, target: Target = Target(), *,
                 before_id: int | None = None, limit: int = 100) -> Sequence[Change]:
    """The subscription's changes, newest first: all of them, or those of a cloud service,
    a collection or a job (`target`'s names that are set), before an id for paging."""
    query = select(AuditEvent).where(AuditEvent.subscription_id == subscription_id)
    for column, value in ((AuditEvent.cloud_service, target.cloud_service),
                          (AuditEvent.collection, target.collection),
                          (AuditEvent.job_id, target.job_id)):
        if value is not None:
            query = query.where(column == value)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    rows = Session(bind=conn).scalars(query.order_by(AuditEvent.id.desc()).limit(limit))
    return [Change(id=row.id, at=row.at, actor=row.actor, kind=row.kind,
                   target=Target(row.cloud_service, row.collection, row.job_id),
                   detail=row.detail, note=row.note, request_id=row.request_id)
            for row in rows]
