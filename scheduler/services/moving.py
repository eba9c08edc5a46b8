"""Moving a home to another database: what `scheduler export` reads of a home and what
`scheduler import` writes into another one (`services.export_format` is the file).

A home is read whole, in one snapshot, while none of its engines runs, so that nothing it
carries fires on both sides; it is written into the other home in one transaction, after a
check that the other home holds none of its subscriptions, certificates, service principals
or executions, so that an import either moves everything or writes nothing. Jobs keep their
counters and next execution time, so that each occurrence fires once, on one side of the
move.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from scheduler.db.models import (
    EXECUTIONS,
    HISTORY,
    JOBS,
    Calendar,
    CloudService,
    EngineNode,
    Execution,
    HistoryEntry,
    Job,
    JobCollection,
    ManagementCertificate,
    NotificationChannel,
    Operation,
    RegistryVersion,
    RevokedCertificate,
    ServicePrincipal,
    Subscription,
)
from scheduler.db.session import Database
from scheduler.db.stored_channels import StoredChannelError, open_channel, seal_channel
from scheduler.db.stored_jobs import (
    SealedSecretsError,
    StoredJobError,
    open_definition,
    seal_definition,
)
from scheduler.domain.jobs import (
    Action,
    HttpAction,
    JobDefinition,
    JobSpec,
)
from scheduler.domain.jobs import (
    Sequence as StepSequence,
)
from scheduler.domain.notifications import Channel
from scheduler.domain.states import OPEN_STATUSES
from scheduler.security import pki
from scheduler.security.secrets import SecretBox
from scheduler.services.certificates import register_certificate, subscriptions_of_certificate
from scheduler.services.export_format import (
    HomeExport,
    HomeKeys,
    MovedCalendar,
    MovedCertificate,
    MovedChannel,
    MovedCloudService,
    MovedCollection,
    MovedExecution,
    MovedHistoryEntry,
    MovedJob,
    MovedPrincipal,
    MovedRevocation,
    MovedSubscription,
)
from scheduler.services.leases import live_nodes
from scheduler.services.operations import IN_PROGRESS

T = TypeVar("T")
CHUNK = 500  # values per `IN (...)` when looking for what a home already holds


class MoveRefused(Exception):
    """A home cannot be exported, or an export imported, as it is; the message says why and
    what to do. Nothing was written."""


@dataclass(frozen=True)
class RunningEngine:
    """An engine node of the home whose heartbeat is recent."""

    node_id: str
    heartbeat_at: datetime


# --- export --------------------------------------------------------------------------------

def running_engines(db: Database, now: datetime, dead_after: float) -> list[RunningEngine]:
    """The engine nodes whose heartbeat came within `dead_after` seconds of `now`."""
    since = now - timedelta(seconds=dead_after)
    with db.snapshot() as session:
        live = {node.node_id for node in live_nodes(session, since)}
        if not live:
            return []
        rows = session.execute(select(EngineNode.id, EngineNode.heartbeat_at)
                               .where(EngineNode.id.in_(live)).order_by(EngineNode.id))
        return [RunningEngine(node_id, beat) for node_id, beat in rows]


def read_home(db: Database, box: SecretBox, keys: HomeKeys, named: str | None,
              admin_thumbprint: str | None, now: datetime, with_history: bool) -> HomeExport:
    """Everything the database holds of the home, in one snapshot: its job secrets opened
    with the home's box; with `with_history`, its jobs' history and finished executions
    too (open executions always go: they are occurrences yet to finish). The home's own
    subscription is `named` (its client profile's) if the database holds it, or else the
    first the admin certificate is registered to. MoveRefused while a management operation
    is in progress, or when a job's definition does not open."""
    with db.snapshot() as session:
        busy = session.scalars(select(Operation.id).where(Operation.status == IN_PROGRESS)
                               .limit(1)).first()
        if busy is not None:
            raise MoveRefused(
                f"the management operation {busy} is still in progress: serve the home "
                "without its engine (`scheduler serve --role api`) until it has finished, "
                "stop it, and export again")
        subscriptions = [_read_subscription(session, box, s, with_history)
                         for s in session.scalars(select(Subscription)
                                                  .order_by(Subscription.created_at,
                                                            Subscription.id))]
        owners = [] if admin_thumbprint is None else \
            subscriptions_of_certificate(session, admin_thumbprint)
    ids = [subscription.id for subscription in subscriptions]
    home_subscription = named if named in ids else next(
        (subscription for subscription in ids if subscription in owners), None)
    return HomeExport(now, with_history, keys, home_subscription, subscriptions)


def _read_subscription(session: Session, box: SecretBox, subscription: Subscription,
                       with_history: bool) -> MovedSubscription:
    certificates = session.scalars(
        select(ManagementCertificate)
        .where(ManagementCertificate.subscription_id == subscription.id)
        .order_by(ManagementCertificate.created_at, ManagementCertificate.thumbprint))
    revoked = session.scalars(
        select(RevokedCertificate)
        .where(RevokedCertificate.subscription_id == subscription.id)
        .order_by(RevokedCertificate.revoked_at, RevokedCertificate.thumbprint))
    services = session.scalars(select(CloudService)
                               .where(CloudService.subscription_id == subscription.id)
                               .order_by(CloudService.id))
    principals = session.scalars(
        select(ServicePrincipal)
        .where(ServicePrincipal.subscription_id == subscription.id)
        .order_by(ServicePrincipal.created_at, ServicePrincipal.client_id))
    return MovedSubscription(
        subscription.id, subscription.name, subscription.created_at,
        [MovedCertificate(c.thumbprint, c.der, c.not_after, c.created_at)
         for c in certificates],
        [MovedRevocation(r.thumbprint, r.revoked_at) for r in revoked],
        [_read_cloud_service(session, box, s, with_history) for s in services],
        [MovedPrincipal(p.client_id, p.name, p.secret_hash, p.created_at)
         for p in principals])


def _read_cloud_service(session: Session, box: SecretBox, service: CloudService,
                        with_history: bool) -> MovedCloudService:
    collections = session.scalars(select(JobCollection)
                                  .where(JobCollection.cloud_service_id == service.id)
                                  .order_by(JobCollection.id))
    return MovedCloudService(
        service.name, service.label, service.description, service.geo_region, service.email,
        service.lifecycle, service.etag, service.created_at,
        [_read_collection(session, box, c, service.name, with_history) for c in collections])


def _read_collection(session: Session, box: SecretBox, collection: JobCollection,
                     service: str, with_history: bool) -> MovedCollection:
    where = f"{service}/{collection.name}"
    jobs = list(session.scalars(select(Job).where(Job.collection_id == collection.id)
                                .order_by(Job.id)))
    history = _by_job(session.scalars(
        select(HistoryEntry).join(Job, Job.id == HistoryEntry.job_pk)
        .where(Job.collection_id == collection.id).order_by(HistoryEntry.id))
    ) if with_history else {}
    kept = [] if with_history else [Execution.status.in_(OPEN_STATUSES)]
    executions = _by_job(session.scalars(
        select(Execution).where(Execution.collection_id == collection.id, *kept)
        .order_by(Execution.created_at, Execution.id)))
    return MovedCollection(
        collection.name, collection.label, collection.plan, collection.max_job_count,
        collection.max_job_occurrence, collection.max_recurrence_frequency,
        collection.max_recurrence_interval, collection.state, collection.lifecycle,
        collection.last_operation, collection.etag, collection.created_at,
        collection.updated_at,
        [MovedJob(
            job.job_id, _opened(box, job.definition, job.secrets, f"{where}/{job.job_id}"),
            job.state, job.state_details, job.etag, job.created_at, job.updated_at,
            job.next_execution_time, job.last_execution_time, job.execution_count,
            job.failure_count, job.faulted_count,
            [_history_entry(entry) for entry in history.get(job.id, [])],
            [_execution(box, run, where) for run in executions.get(job.id, [])],
            state_note=job.state_note, state_changed_by=job.state_changed_by,
            state_changed_at=job.state_changed_at, disabled_until=job.disabled_until)
         for job in jobs],
        [_execution(box, run, where) for run in executions.get(None, [])],
        jobs_disabled=collection.jobs_disabled, tags=_stored_tags(collection.tags, where),
        calendars=[MovedCalendar(calendar.name, calendar.document, calendar.created_at,
                                 calendar.updated_at)
                   for calendar in session.scalars(select(Calendar).where(
                       Calendar.collection_id == collection.id).order_by(Calendar.name_key))],
        channels=[MovedChannel(_opened_channel(box, row, where), row.created_at,
                               row.updated_at)
                  for row in session.scalars(select(NotificationChannel).where(
                      NotificationChannel.collection_id == collection.id)
                      .order_by(NotificationChannel.name_key))],
        default_alerts=collection.default_alerts)


def _opened_channel(box: SecretBox, row: NotificationChannel, where: str) -> Channel:
    """A stored channel with its secrets opened; MoveRefused if it cannot be."""
    try:
        return open_channel(row.name, row.document, row.secrets, box)
    except StoredChannelError as exc:
        raise MoveRefused(f"{where}: {exc}; fix or delete it, and export again") from None


def _stored_tags(text: str | None, where: str) -> dict[str, str]:
    """A collection's tags as stored (JSON text, or None for none); MoveRefused if they do
    not read as an object of texts."""
    try:
        tags = json.loads(text) if text is not None else {}
    except ValueError:
        tags = None
    if not isinstance(tags, dict) or not all(isinstance(value, str) for value in tags.values()):
        raise MoveRefused(f"{where}: its tags do not read as an object of texts; set them "
                          "again through Resource Manager, and export again")
    return tags


def _by_job(rows: Iterable[Any]) -> dict[int | None, list[Any]]:
    """Rows (history entries, executions) by the job they belong to, in their order."""
    found: dict[int | None, list[Any]] = {}
    for row in rows:
        found.setdefault(row.job_pk, []).append(row)
    return found


def _opened(box: SecretBox, text: str, sealed: bytes | None, where: str) -> JobDefinition:
    """A stored definition with its secrets opened; MoveRefused if it cannot be."""
    try:
        return open_definition(text, sealed, box)
    except (SealedSecretsError, StoredJobError) as exc:
        raise MoveRefused(f"{where}: {exc}; fix or delete it, and export again") from None


def _history_entry(entry: HistoryEntry) -> MovedHistoryEntry:
    return MovedHistoryEntry(
        entry.timestamp, entry.start_time, entry.end_time, entry.expected_execution_time,
        entry.state, entry.status, entry.action_name, entry.message, entry.retry_count,
        entry.repeat_count, entry.execution_id, entry.step_index, entry.step_name)


def _execution(box: SecretBox, run: Execution, where: str) -> MovedExecution:
    definition = None
    if run.job_pk is None and run.definition is not None:
        definition = _opened(box, run.definition, run.secrets, f"{where} inline run {run.id}")
    return MovedExecution(
        run.id, run.scheduled_time, run.trigger, run.status, run.revision, run.action_name,
        run.attempt, run.attempts, run.step, run.steps, run.repeat_count, run.next_attempt_at,
        run.node, run.parameters, run.output, run.message, run.created_at, run.start_time,
        run.end_time, definition, run.run_on)


# --- import --------------------------------------------------------------------------------

def conflicts(db: Database, export: HomeExport) -> list[str]:
    """What the database already holds of what the file carries: subscriptions by id,
    management certificates by thumbprint, service principals by client id, executions by id
    (each found once); none if the file can be imported."""
    subscriptions = [s.id for s in export.subscriptions]
    thumbprints = sorted({c.thumbprint for s in export.subscriptions for c in s.certificates})
    principals = [p.client_id for s in export.subscriptions for p in s.principals]
    executions = [e.id for e in _executions_of(export)]
    with db.snapshot() as session:
        found = [f"subscription {i}" for i in _present(session, Subscription.id,
                                                       subscriptions)]
        found += [f"management certificate {t}"
                  for t in _present(session, ManagementCertificate.thumbprint, thumbprints)]
        found += [f"service principal {i}"
                  for i in _present(session, ServicePrincipal.client_id, principals)]
        found += [f"execution {i}" for i in _present(session, Execution.id, executions)]
    return found


def _present(session: Session, column: Any, values: Sequence[T]) -> list[T]:
    """Those of `values` the column holds, in their order."""
    held: set[T] = set()
    for start in range(0, len(values), CHUNK):
        held.update(session.scalars(select(column).where(
            column.in_(values[start:start + CHUNK]))))
    return [value for value in dict.fromkeys(values) if value in held]


def _executions_of(export: HomeExport) -> Iterator[MovedExecution]:
    for subscription in export.subscriptions:
        for service in subscription.cloud_services:
            for collection in service.collections:
                yield from collection.inline_runs
                for job in collection.jobs:
                    yield from job.executions


def load_home(db: Database, box: SecretBox, export: HomeExport, now: datetime,
              admin: x509.Certificate | None, before_commit: Callable[[], None] | None = None
              ) -> str | None:
    """Write what the file carries into the database, in one transaction, job secrets
    sealed with `box`; register `admin` (the home's admin certificate) to the file's home
    subscription, or else its first. `before_commit` runs last inside the transaction (the
    files that go with it), so that a failure there writes nothing. MoveRefused, before
    anything is written, if the database already holds any of it. Returns the subscription
    `admin` was registered to."""
    found = conflicts(db, export)
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise MoveRefused(f"the database {db.url_for_people} already holds {shown} of the "
                          "file: import into a home made for it with `scheduler init`. "
                          "Nothing was written")
    target = _admin_subscription(export)
    with db.transaction() as session:
        for subscription in export.subscriptions:
            _write_subscription(session, box, subscription)
        session.flush()
        if admin is not None and target is not None \
                and session.get(ManagementCertificate,
                                (target, pki.thumbprint(admin))) is None:
            register_certificate(session, target, admin, now)
        # Servers on this database load the certificates it trusts again.
        session.execute(update(RegistryVersion).where(RegistryVersion.id == 1)
                        .values(version=RegistryVersion.version + 1))
        session.flush()
        if before_commit is not None:
            before_commit()
    return target if admin is not None else None


def _admin_subscription(export: HomeExport) -> str | None:
    """The subscription a home's admin certificate and profile go to: the exported home's
    own, or else the file's first."""
    ids = [s.id for s in export.subscriptions]
    if export.home_subscription in ids:
        return export.home_subscription
    return ids[0] if ids else None


def _write_subscription(session: Session, box: SecretBox, subscription: MovedSubscription
                        ) -> None:
    session.add(Subscription(id=subscription.id, name=subscription.name,
                             created_at=subscription.created_at))
    session.flush()
    session.add_all([ManagementCertificate(
        subscription_id=subscription.id, thumbprint=c.thumbprint, der=c.der,
        not_after=c.not_after, created_at=c.created_at) for c in subscription.certificates])
    session.add_all([RevokedCertificate(subscription_id=subscription.id,
                                        thumbprint=r.thumbprint, revoked_at=r.revoked_at)
                     for r in subscription.revoked])
    # Their tokens are not moved: a client asks the new home for one with its secret.
    session.add_all([ServicePrincipal(
        client_id=p.client_id, subscription_id=subscription.id, name=p.name,
        secret_hash=p.secret_hash, created_at=p.created_at) for p in subscription.principals])
    for moved in subscription.cloud_services:
        service = CloudService(
            subscription_id=subscription.id, name=moved.name, name_key=moved.name.lower(),
            label=moved.label, description=moved.description, geo_region=moved.geo_region,
            email=moved.email, lifecycle=moved.lifecycle, etag=moved.etag,
            created_at=moved.created_at)
        session.add(service)
        session.flush()
        for collection in moved.collections:
            _write_collection(session, box, service.id, collection)


def _write_collection(session: Session, box: SecretBox, service_id: int,
                      moved: MovedCollection) -> None:
    open_runs = sum(run.status in OPEN_STATUSES for run in moved.inline_runs)
    collection = JobCollection(
        cloud_service_id=service_id, name=moved.name, name_key=moved.name.lower(),
        label=moved.label, plan=moved.plan, max_job_count=moved.max_job_count,
        max_job_occurrence=moved.max_job_occurrence,
        max_recurrence_frequency=moved.max_recurrence_frequency,
        max_recurrence_interval=moved.max_recurrence_interval, state=moved.state,
        lifecycle=moved.lifecycle, last_operation=moved.last_operation, etag=moved.etag,
        created_at=moved.created_at, updated_at=moved.updated_at,
        jobs_at_most=len(moved.jobs) + open_runs, jobs_disabled=moved.jobs_disabled,
        # As Resource Manager's API stores them: none is no text.
        tags=json.dumps(moved.tags) if moved.tags else None,
        default_alerts=moved.default_alerts)
    session.add(collection)
    session.flush()
    session.add_all(Calendar(collection_id=collection.id, name=calendar.name,
                             name_key=calendar.name.lower(), document=calendar.document,
                             created_at=calendar.created_at, updated_at=calendar.updated_at)
                    for calendar in moved.calendars)
    session.add_all(_channel_row(box, collection.id, channel) for channel in moved.channels)
    pks = _insert_jobs(session, box, collection.id, moved.jobs)
    history = [_history_row(pk, entry) for pk, job in zip(pks, moved.jobs, strict=True)
               for entry in job.history]
    runs = [_execution_row(box, collection.id, pk, run)
            for pk, job in zip(pks, moved.jobs, strict=True) for run in job.executions]
    runs += [_execution_row(box, collection.id, None, run) for run in moved.inline_runs]
    if history:
        session.execute(insert(HISTORY), history)
    if runs:
        session.execute(insert(EXECUTIONS), runs)


def _channel_row(box: SecretBox, collection_id: int, moved: MovedChannel
                 ) -> NotificationChannel:
    """A moved channel's row, its secrets sealed with this home's key."""
    document, sealed = seal_channel(moved.channel, box)
    return NotificationChannel(collection_id=collection_id, name=moved.channel.name,
                               name_key=moved.channel.name.lower(), document=document,
                               secrets=sealed, created_at=moved.created_at,
                               updated_at=moved.updated_at)


def _insert_jobs(session: Session, box: SecretBox, collection_id: int,
                 jobs: Sequence[MovedJob]) -> list[int]:
    """Insert the jobs; their new primary keys, in their order."""
    if not jobs:
        return []
    rows = []
    for job in jobs:
        text, sealed = seal_definition(job.definition, box)
        rows.append({
            "collection_id": collection_id, "job_id": job.job_id,
            "job_key": job.job_id.lower(), "definition": text, "secrets": sealed,
            "state": job.state, "state_details": job.state_details, "etag": job.etag,
            "created_at": job.created_at, "updated_at": job.updated_at,
            "next_execution_time": job.next_execution_time,
            "last_execution_time": job.last_execution_time,
            "execution_count": job.execution_count, "failure_count": job.failure_count,
            "faulted_count": job.faulted_count, "state_note": job.state_note,
            "state_changed_by": job.state_changed_by,
            "state_changed_at": job.state_changed_at, "disabled_until": job.disabled_until,
            "shortest_gap_seconds": JobSpec(job.definition).shortest_gap_seconds,
            "uses_authentication": uses_authentication(job.definition)})
    inserted = session.execute(
        insert(JOBS).returning(JOBS.c.id, sort_by_parameter_order=True), rows)
    return [pk for (pk,) in inserted]


def uses_authentication(definition: JobDefinition) -> bool:
    """Whether any HTTP call of the job authenticates (which its collection's plan must
    allow)."""
    actions: list[Action] = [definition.action]
    if definition.error_action is not None:
        actions.append(definition.error_action)
    for action in actions:
        calls = [step.action for step in action.steps] \
            if isinstance(action, StepSequence) else [action]
        if any(isinstance(call, HttpAction) and call.authentication is not None
               for call in calls):
            return True
    return False


def _history_row(job_pk: int, entry: MovedHistoryEntry) -> dict[str, Any]:
    return {
        "job_pk": job_pk, "timestamp": entry.timestamp, "start_time": entry.start_time,
        "end_time": entry.end_time, "expected_execution_time": entry.expected_execution_time,
        "state": entry.state, "status": entry.status, "action_name": entry.action_name,
        "message": entry.message, "retry_count": entry.retry_count,
        "repeat_count": entry.repeat_count, "execution_id": entry.execution_id,
        "step_index": entry.step_index, "step_name": entry.step_name}


def _execution_row(box: SecretBox, collection_id: int, job_pk: int | None,
                   run: MovedExecution) -> dict[str, Any]:
    definition = secrets = None
    if run.definition is not None:
        definition, secrets = seal_definition(run.definition, box)
    # No lease: the node that held a running one is of the old home, and this home's
    # engines take it over at once.
    return {
        "id": run.id, "job_pk": job_pk, "collection_id": collection_id,
        "scheduled_time": run.scheduled_time, "trigger": run.trigger, "status": run.status,
        "revision": run.revision, "action_name": run.action_name, "attempt": run.attempt,
        "attempts": run.attempts, "step": run.step, "steps": run.steps,
        "repeat_count": run.repeat_count, "next_attempt_at": run.next_attempt_at,
        "lease_owner": None, "lease_until": None, "node": run.node,
        "parameters": run.parameters, "output": run.output, "message": run.message,
        "definition": definition, "secrets": secrets, "created_at": run.created_at,
        "start_time": run.start_time, "end_time": run.end_time, "run_on": run.run_on}
