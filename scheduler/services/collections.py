"""Job collections: plans, quotas, and the jobs they hold."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import astuple, dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from scheduler.db.bulk import update_rows
from scheduler.db.compiled import CompiledStatement
from scheduler.db.models import COLLECTIONS, EXECUTIONS, JOBS, CloudService, Job, JobCollection
from scheduler.db.session import Database
from scheduler.db.stored_jobs import fire_time_from
from scheduler.domain.durations import parse_duration
from scheduler.domain.quotas import (
    Limits,
    QuotaExceeded,
    allows_authentication,
    check_job_count,
    effective_limits,
)
from scheduler.domain.recurrence import FREQUENCIES
from scheduler.domain.states import OPEN_STATUSES, CollectionState, Lifecycle
from scheduler.services import new_etag
from scheduler.services.audit import Target, described, record_change
from scheduler.services.calls import Call
from scheduler.services.cloudservices import ACTIVE, CREATING, DELETING, get_cloud_service
from scheduler.services.errors import BadRequest, Conflict, NotFound
from scheduler.services.records import CollectionRecord
from scheduler.settings import PlanSettings

UPDATING = Lifecycle.UPDATING
DELETE_BATCH = 500
STARTED, SUSPENDED = CollectionState.STARTED, CollectionState.SUSPENDED
COLLECTION_STATES = tuple(CollectionState)
# The largest number a quota's column holds on every database (PostgreSQL's integer).
MAX_QUOTA = 2**31 - 1


@dataclass(frozen=True)
class CollectionFields:
    """What a client sets on a job collection."""

    plan: str
    label: str = ""
    max_job_count: int | None = None
    max_job_occurrence: int | None = None
    max_recurrence_frequency: str | None = None
    max_recurrence_interval: int | None = None
    state: str = STARTED


@dataclass(frozen=True)
class CollectionQuota:
    """What a job's write needs of its collection: its id, and the quotas its jobs keep."""

    id: int
    plan: str
    max_job_count: int | None
    max_recurrence_frequency: str | None
    max_recurrence_interval: int | None


QUOTA_FIELDS = ("plan", "max_job_count", "max_recurrence_frequency", "max_recurrence_interval")


def quota_of(collection: JobCollection) -> CollectionQuota:
    """The quotas of a collection read whole."""
    return CollectionQuota(collection.id, *(getattr(collection, name) for name in QUOTA_FIELDS))


def collection_limits(collection: CollectionRecord | CollectionQuota,
                      plans: Mapping[str, PlanSettings]) -> Limits:
    """The limits in force for a collection."""
    plan = plans[collection.plan]
    return effective_limits(
        plan.max_job_count, parse_duration(plan.max_recurrence), collection.max_job_count,
        collection.max_recurrence_frequency, collection.max_recurrence_interval,
    )


# Picks a visible collection by its path; statements bind `subscription_id`, `cloud_service`
# and `collection` (names lower-cased). Built once: job routes use it on every request.
COLLECTION_BY_PATH = (
    CloudService.id == JobCollection.cloud_service_id,
    CloudService.subscription_id == bindparam("subscription_id"),
    CloudService.name_key == bindparam("cloud_service"),
    CloudService.lifecycle != DELETING,
    JobCollection.name_key == bindparam("collection"),
    JobCollection.lifecycle != DELETING,
)
_COLLECTION = select(JobCollection).join(CloudService, COLLECTION_BY_PATH[0]) \
    .where(*COLLECTION_BY_PATH[1:])


def collection_id_by_path() -> Select[int]:
    """A visible collection's id by its path, COLLECTION_BY_PATH's parameters bound."""
    return (select(JobCollection.id).join(CloudService, COLLECTION_BY_PATH[0])
            .where(*COLLECTION_BY_PATH[1:]))


_COLLECTION_ID = CompiledStatement(collection_id_by_path())


def path_params(subscription_id: str, cloud_service: str, name: str) -> dict[str, str]:
    """The bound parameters of COLLECTION_BY_PATH."""
    return {"subscription_id": subscription_id, "cloud_service": cloud_service.lower(),
            "collection": name.lower()}


def collection_missing(cloud_service: str, name: str) -> NotFound:
    """The 404 of a collection that does not exist."""
    return NotFound(f"The job collection {name} does not exist in cloud service "
                    f"{cloud_service}.")


def get_collection(
    session: Session, subscription_id: str, cloud_service: str, name: str,
    *, for_update: bool = False,
) -> JobCollection:
    """One job collection; 404 if it (or its cloud service) does not exist. A change of the
    whole collection, or an inline run (counted as a job), locks its row (not its cloud
    service's). A job's own writes lock no collection row: a create takes its turn by
    raising the collection's bound on its jobs, and a replace, patch or delete holds the
    job's row, which keeps it from a purge of its collection (that deletes it, or finds it
    gone)."""
    query = _COLLECTION.with_for_update(of=JobCollection) if for_update else _COLLECTION
    collection = session.scalar(query, path_params(subscription_id, cloud_service, name))
    if collection is None:
        raise collection_missing(cloud_service, name)
    return collection


def get_collection_with_service(session: Session, subscription_id: str, cloud_service: str,
                                name: str) -> tuple[JobCollection, CloudService]:
    """A job collection and the cloud service that holds it; 404 if either is missing."""
    collection = get_collection(session, subscription_id, cloud_service, name)
    service = session.get(CloudService, collection.cloud_service_id)
    if service is None:
        raise collection_missing(cloud_service, name)
    return collection, service


def collection_id(conn: Connection, subscription_id: str, cloud_service: str, name: str) -> int:
    """The id of a visible job collection; 404 naming it when there is none."""
    found = _COLLECTION_ID.first(conn, path_params(subscription_id, cloud_service, name))
    if found is None:
        raise collection_missing(cloud_service, name)
    return int(found.id)


# The bound on a collection's jobs (`jobs_at_most`): raised by one for each job created or
# inline run started, set to the count when it reaches the quota.
_ONE_MORE = CompiledStatement(
    update(COLLECTIONS).where(COLLECTIONS.c.id == bindparam("collection_id"))
    .values(jobs_at_most=COLLECTIONS.c.jobs_at_most + 1).returning(COLLECTIONS.c.jobs_at_most))
_SET_BOUND = CompiledStatement(
    update(COLLECTIONS).where(COLLECTIONS.c.id == bindparam("collection_id"))
    .values(jobs_at_most=bindparam("held")))
_COUNT_JOBS = CompiledStatement(
    select(func.count().label("jobs")).select_from(JOBS)
    .where(JOBS.c.collection_id == bindparam("collection_id")))
_OPEN_INLINE_RUNS = CompiledStatement(
    select(func.count().label("runs")).select_from(EXECUTIONS).where(
        EXECUTIONS.c.collection_id == bindparam("collection_id"), EXECUTIONS.c.job_pk.is_(None),
        or_(*(EXECUTIONS.c.status == literal(status) for status in OPEN_STATUSES))))


def count_one_more(conn: Connection, quota: CollectionQuota,
                   plans: Mapping[str, PlanSettings]) -> None:
    """Count one more job (or inline run) in a collection whose row the caller holds
    locked; QuotaExceeded if it would pass the quota."""
    raised = _ONE_MORE.first(conn, {"collection_id": quota.id})
    assert raised is not None, "the caller holds the collection's row"
    check_room_for_one_more(conn, quota, raised.jobs_at_most, plans)


def check_room_for_one_more(conn: Connection, quota: CollectionQuota, at_most: int,
                            plans: Mapping[str, PlanSettings]) -> None:
    """QuotaExceeded if one more job, counted in the bound `at_most` already, would pass
    the quota. The jobs are counted only when the bound says they might, and the bound is
    then set to the count: a delete, which lowers no bound, shares no row with others."""
    limits = collection_limits(quota, plans)
    if at_most <= limits.max_job_count:
        return
    held = count_held_jobs(conn, quota.id) + 1
    _SET_BOUND.execute(conn, {"collection_id": quota.id, "held": held})
    check_job_count(limits, held)


def count_held_jobs(conn: Connection, collection_id: int) -> int:
    """The collection's jobs and its open runs of inline definitions (counted as jobs)."""
    params = {"collection_id": collection_id}
    jobs = _COUNT_JOBS.first(conn, params)
    runs = _OPEN_INLINE_RUNS.first(conn, params)
    return int(jobs.jobs if jobs else 0) + int(runs.runs if runs else 0)


def list_collections(session: Session, cloud_service_id: int) -> list[JobCollection]:
    """The visible collections of a cloud service, by name."""
    return list(session.scalars(select(JobCollection).where(
        JobCollection.cloud_service_id == cloud_service_id, JobCollection.lifecycle != DELETING,
    ).order_by(JobCollection.name_key)))


def is_name_available(session: Session, subscription_id: str, cloud_service: str,
                      name: str) -> bool:
    """Whether a collection of that name could be created in the cloud service."""
    service = get_cloud_service(session, subscription_id, cloud_service)
    taken = session.scalar(select(JobCollection.id).where(
        JobCollection.cloud_service_id == service.id, JobCollection.name_key == name.lower()))
    return taken is None


def validate_fields(fields: CollectionFields, plans: Mapping[str, PlanSettings]) -> None:
    """Raise BadRequest for a plan or quota that is not valid."""
    if fields.plan not in plans:
        raise BadRequest(f"Plan must be one of {', '.join(plans)}; got {fields.plan!r}.")
    for name, value in (("MaxJobCount", fields.max_job_count),
                        ("MaxJobOccurrence", fields.max_job_occurrence),
                        ("MaxRecurrence.Interval", fields.max_recurrence_interval)):
        if value is not None and not 1 <= value <= MAX_QUOTA:
            raise BadRequest(f"Quota.{name} must be from 1 to {MAX_QUOTA}.")
    if fields.max_recurrence_frequency is not None and \
            fields.max_recurrence_frequency not in FREQUENCIES:
        raise BadRequest(f"Quota.MaxRecurrence.Frequency must be one of "
                         f"{', '.join(FREQUENCIES)}.")
    if fields.state not in COLLECTION_STATES:
        raise BadRequest(f"State must be one of {', '.join(COLLECTION_STATES)}.")


def _apply(collection: JobCollection, fields: CollectionFields) -> None:
    collection.plan = fields.plan
    collection.label = fields.label
    collection.max_job_count = fields.max_job_count
    collection.max_job_occurrence = fields.max_job_occurrence
    collection.max_recurrence_frequency = fields.max_recurrence_frequency
    collection.max_recurrence_interval = fields.max_recurrence_interval
    collection.state = fields.state


def fields_of(collection: JobCollection) -> CollectionFields:
    """What a client set on a collection."""
    return CollectionFields(*(getattr(collection, item.name)
                              for item in dataclass_fields(CollectionFields)))


# A collection's fields as the audit names them.
_FIELD_WORDS = {"plan": "plan", "label": "label", "max_job_count": "max job count",
                "max_job_occurrence": "max job occurrence",
                "max_recurrence_frequency": "max recurrence frequency",
                "max_recurrence_interval": "max recurrence interval", "state": "state"}


def collection_changes(before: CollectionFields, after: CollectionFields
                       ) -> list[tuple[str, object, object]]:
    """Each field of a collection as (its name in words, before, after)."""
    return [(_FIELD_WORDS[item.name], old, new) for item, old, new
            in zip(dataclass_fields(CollectionFields), astuple(before), astuple(after),
                   strict=True)]


def put_collection(
    session: Session, call: Call, cloud_service: str, name: str, fields: CollectionFields,
    *, if_match: str | None = None, at_once: bool = False, kind: str | None = None,
    also_changed: Iterable[tuple[str, object, object]] = (),
) -> tuple[JobCollection, bool]:
    """Create or update a collection as a call asks (ready when the transaction commits if
    `at_once`, else when its operation runs); recorded in the audit as `collection.create`,
    or as `kind` (`collection.put` by default) naming each field it changed and what else
    the caller changes with it (`also_changed`: name, before, after). Returns it and
    whether it is new."""
    collection, created, before = _begin_put(session, call.subscription_id, cloud_service,
                                             name, fields, call.plans, call.now, if_match)
    if at_once:
        collection.lifecycle = ACTIVE
    changes = list(also_changed)
    if created:
        record_change(session, call, "collection.create", Target(cloud_service, name),
                      detail=f"plan: {fields.plan}; state: {fields.state}")
    else:
        assert before is not None, "an update has a collection before it"
        changes[:0] = collection_changes(before, fields)
        record_change(session, call, kind or "collection.put", Target(cloud_service, name),
                      detail=described(changes) or "no change")
    return collection, created


def begin_put_collection(
    session: Session, subscription_id: str, cloud_service: str, name: str,
    fields: CollectionFields, plans: Mapping[str, PlanSettings], now: datetime,
    if_match: str | None = None,
) -> tuple[JobCollection, bool]:
    """Create a collection, or update an existing one; returns it and whether it is new."""
    collection, created, _ = _begin_put(session, subscription_id, cloud_service, name,
                                        fields, plans, now, if_match)
    return collection, created


def _begin_put(
    session: Session, subscription_id: str, cloud_service: str, name: str,
    fields: CollectionFields, plans: Mapping[str, PlanSettings], now: datetime,
    if_match: str | None,
) -> tuple[JobCollection, bool, CollectionFields | None]:
    """Create a collection, or update an existing one; returns it, whether it is new, and
    the fields it had before (None for a new one)."""
    validate_fields(fields, plans)
    service = get_cloud_service(session, subscription_id, cloud_service)
    existing = session.scalar(select(JobCollection).where(
        JobCollection.cloud_service_id == service.id, JobCollection.name_key == name.lower()
    ).with_for_update())
    if existing is not None and existing.lifecycle == DELETING:
        raise Conflict(f"The job collection {name} is being deleted.")
    if existing is None:
        collection = JobCollection(
            cloud_service_id=service.id, name=name, name_key=name.lower(), lifecycle=CREATING,
            last_operation="Create", etag=new_etag(), created_at=now, updated_at=now,
        )
        _apply(collection, fields)
        session.add(collection)
        session.flush()
        return collection, True, None
    if if_match is not None and if_match != existing.etag:
        raise Conflict("The job collection was changed since the given ETag was read.")
    if existing.state == SUSPENDED and fields.state == STARTED:
        skip_occurrences_missed(session, existing.id, now)
    before = fields_of(existing)
    _apply(existing, fields)
    _check_existing_jobs_fit(session, existing, plans)
    existing.lifecycle, existing.last_operation = UPDATING, "Update"
    existing.etag, existing.updated_at = new_etag(), now
    return existing, False, before


def skip_occurrences_missed(session: Session, collection_id: int, now: datetime) -> None:
    """A suspended collection starts again: each of its jobs whose next fire time passed
    meanwhile fires next at its first occurrence from `now` on, as a job enabled again does,
    so that nothing missed is replayed (a job that never ran runs once, as it would)."""
    passed = session.execute(select(
        Job.id, Job.job_id, Job.definition, Job.created_at, Job.execution_count,
        Job.next_execution_time,
    ).where(Job.collection_id == collection_id, Job.next_execution_time < now)).all()
    moves = [{"id": job.id, "next_execution_time": fire_time_from(
        job.definition, job.created_at, job.execution_count, now, job.next_execution_time,
        job.job_id)}
        for job in passed]
    update_rows(session.connection(), JOBS, "id", moves)


def _check_existing_jobs_fit(
    session: Session, collection: JobCollection, plans: Mapping[str, PlanSettings]
) -> None:
    """A new plan or quota must still hold every job the collection has, and its open runs."""
    limits = collection_limits(collection, plans)
    try:
        check_job_count(limits, count_held_jobs(session.connection(), collection.id))
    except QuotaExceeded as exc:
        raise Conflict(f"The new plan or quota does not fit the existing jobs: {exc}.") \
            from None
    check_collection_recurrences(session, collection, limits)


def check_collection_recurrences(
    session: Session, collection: JobCollection, limits: Limits
) -> None:
    """Refuse a plan or quota under which an existing job would recur too often."""
    fastest = session.scalar(select(func.min(Job.shortest_gap_seconds)).where(
        Job.collection_id == collection.id))
    if fastest is not None and fastest < limits.min_recurrence.total_seconds():
        raise Conflict(
            "The new plan or quota does not fit the existing jobs: a job recurs every "
            f"{fastest} seconds, more often than the quota allows."
        )
    if not allows_authentication(collection.plan) and session.scalar(select(Job.id).where(
            Job.collection_id == collection.id, Job.uses_authentication.is_(True)).limit(1)):
        raise Conflict(f"The {collection.plan} plan does not allow outbound authentication, "
                       "which a job uses.")


def check_authentication_allowed(plan: str, uses_authentication: bool) -> None:
    """Refuse a job or a run that calls out with authentication in a collection whose plan
    does not allow it."""
    if uses_authentication and not allows_authentication(plan):
        raise Conflict(f"Outbound authentication is not available on the {plan} plan.")


def put_collection_at_once(
    session: Session, subscription_id: str, cloud_service: str, name: str,
    fields: CollectionFields, plans: Mapping[str, PlanSettings], now: datetime,
) -> tuple[JobCollection, bool]:
    """Create or update a collection, ready when the transaction commits (as Resource
    Manager's PUT answers the collection itself); returns it and whether it is new."""
    collection, created = begin_put_collection(session, subscription_id, cloud_service, name,
                                               fields, plans, now)
    collection.lifecycle = ACTIVE
    return collection, created


def list_subscription_collections(session: Session, subscription_id: str
                                  ) -> list[tuple[JobCollection, CloudService]]:
    """Every visible collection of the subscription with its cloud service, by the
    service's name and then the collection's."""
    rows = session.execute(select(JobCollection, CloudService).join(
        CloudService, CloudService.id == JobCollection.cloud_service_id).where(
        CloudService.subscription_id == subscription_id, CloudService.lifecycle != DELETING,
        JobCollection.lifecycle != DELETING,
    ).order_by(CloudService.name_key, JobCollection.name_key))
    return [(collection, service) for collection, service in rows]


def begin_delete_collection(
    session: Session, subscription_id: str, cloud_service: str, name: str
) -> int:
    """Hide a collection at once; its jobs are deleted in the background. Returns its id."""
    collection = get_collection(session, subscription_id, cloud_service, name)
    collection.lifecycle = DELETING
    return collection.id


def delete_collection(session: Session, call: Call, cloud_service: str, name: str) -> int:
    """Hide a collection at once as a call asks, its jobs to be deleted in the background;
    recorded in the audit (`collection.delete`) now, when the delete is accepted. Returns
    its id."""
    collection_id = begin_delete_collection(session, call.subscription_id, cloud_service, name)
    record_change(session, call, "collection.delete", Target(cloud_service, name))
    return collection_id


def finish_put_collection(
    db: Database, payload: Mapping[str, Any], _extend_lease: Callable[[], None]
) -> None:
    """Operation handler: the created or updated collection is ready."""
    with db.transaction() as session:
        session.execute(update(JobCollection).where(
            JobCollection.id == payload["collection_id"],
            JobCollection.lifecycle.in_((CREATING, UPDATING)),
        ).values(lifecycle=ACTIVE))


def purge_collection(db: Database, collection_id: int, extend_lease: Callable[[], None]) -> None:
    """Delete a collection's jobs (their history goes with them) in batches, then it."""
    while True:
        with db.transaction() as session:
            batch = select(Job.id).where(Job.collection_id == collection_id).limit(DELETE_BATCH)
            deleted = session.execute(delete(Job).where(Job.id.in_(batch.scalar_subquery())))
        extend_lease()
        if deleted.rowcount < DELETE_BATCH:  # type: ignore[attr-defined]
            break
    with db.transaction() as session:
        session.execute(delete(JobCollection).where(JobCollection.id == collection_id))


def finish_delete_collection(
    db: Database, payload: Mapping[str, Any], extend_lease: Callable[[], None]
) -> None:
    """Operation handler: delete the collection and all it holds."""
    purge_collection(db, payload["collection_id"], extend_lease)


def finish_delete_cloud_service(
    db: Database, payload: Mapping[str, Any], extend_lease: Callable[[], None]
) -> None:
    """Operation handler: delete a cloud service's collections, their jobs, then the service."""
    with db.snapshot() as session:
        collection_ids = list(session.scalars(select(JobCollection.id).where(
            JobCollection.cloud_service_id == payload["cloud_service_id"])))
    for collection_id in collection_ids:
        purge_collection(db, collection_id, extend_lease)
    with db.transaction() as session:
        session.execute(delete(CloudService).where(
            CloudService.id == payload["cloud_service_id"]))
