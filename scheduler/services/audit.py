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

from sqlalchemy import Connection, bindparam, func, insert, select
from sqlalchemy.orm import Session

from scheduler.db.compiled import CompiledStatement
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


def _bound(name: str) -> Any:
    """A parameter of the recording statement, of its column's type."""
    return bindparam(name, type_=AuditEvent.__table__.c[name].type)


def _spelled_by_keys() -> dict[str, Any]:
    """The names of a change's target, as SQL bound by their keys (`service_key`,
    `collection_key`, `job_key`: lower case, "" for none): each as its resource spells it,
    or as written (`cloud_service`, `collection`, `job_id`; None for none)."""
    service_id = (select(CloudService.id)
                  .where(CloudService.subscription_id == bindparam("subscription_id"),
                         CloudService.name_key == bindparam("service_key"))
                  .limit(1).scalar_subquery())
    collection_id = (select(JobCollection.id)
                     .where(JobCollection.cloud_service_id == service_id,
                            JobCollection.name_key == bindparam("collection_key"))
                     .limit(1).scalar_subquery())
    spelled = {"cloud_service": select(CloudService.name).where(CloudService.id == service_id),
               "collection": select(JobCollection.name)
               .where(JobCollection.id == collection_id),
               "job_id": select(Job.job_id).where(Job.collection_id == collection_id,
                                                  Job.job_key == bindparam("job_key")).limit(1)}
    return {column: func.coalesce(name.scalar_subquery(), _bound(column))
            for column, name in spelled.items()}


# One statement per change, compiled once: changes are recorded on every write's path.
_RECORD = CompiledStatement(insert(AuditEvent).values(
    **_spelled_by_keys(), **{name: _bound(name) for name in (
        "subscription_id", "at", "actor", "kind", "detail", "note", "request_id")}))
# A target's names as its resources spell them, to read its changes by.
_SPELLED = CompiledStatement(select(*(name.label(column)
                                      for column, name in _spelled_by_keys().items())))


def record_change(session: Session, call: Call, kind: str, target: Target, *,
                  detail: str | None = None, note: str | None = None) -> None:
    """Record a change the call made, in its transaction: it is kept if and only if the
    change is. The target is named as its resources spell it."""
    if detail is not None and len(detail) > MAX_DETAIL_CHARS:
        detail = detail[:MAX_DETAIL_CHARS - 1] + "…"
    _RECORD.execute(session.connection(), {
        **_target_params(call.subscription_id, target), "at": call.now,
        "actor": call.actor or "unknown", "kind": kind, "detail": detail,
        "note": note or None, "request_id": call.request_id})


def _target_params(subscription_id: str, target: Target) -> dict[str, Any]:
    """The parameters that name a target in `_spelled_by_keys`."""
    return {"subscription_id": subscription_id, "cloud_service": target.cloud_service,
            "collection": target.collection, "job_id": target.job_id,
            "service_key": (target.cloud_service or "").lower(),
            "collection_key": (target.collection or "").lower(),
            "job_key": (target.job_id or "").lower()}


def read_changes(conn: Connection, subscription_id: str, target: Target = Target(), *,
                 before_id: int | None = None, limit: int = 100) -> Sequence[Change]:
    """The subscription's changes, newest first: all of them, or those of a cloud service,
    a collection or a job (`target`'s names that are set, in any case), before an id for
    paging; at most `limit`."""
    spelled = _SPELLED.first(conn, _target_params(subscription_id, target))
    assert spelled is not None, "a SELECT of expressions has one row"
    query = select(AuditEvent).where(AuditEvent.subscription_id == subscription_id)
    for column, value in ((AuditEvent.cloud_service, spelled.cloud_service),
                          (AuditEvent.collection, spelled.collection),
                          (AuditEvent.job_id, spelled.job_id)):
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


def described(changes: Iterable[tuple[str, Any, Any]]) -> str | None:
    """What changed, in words: `name: before → after` for each pair that differs, joined
    by `; `; None when nothing did."""
    parts = [f"{name}: {_shown(before)} {ARROW} {_shown(after)}"
             for name, before, after in changes if before != after]
    return "; ".join(parts) or None


def _shown(value: Any) -> str:
    return "none" if value is None or value == "" else str(value)
