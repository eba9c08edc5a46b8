"""The statements of alerts: each job's streak of failures, the alerts made of its events
(once per job, event and occurrence, whichever node makes them: the unique key decides), and
their delivery, leased to one node at a time and retried until every channel took them or
the tries ran out."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Result,
    Select,
    and_,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from scheduler.db.bulk import among
from scheduler.db.models import (
    ALERT_STREAKS,
    ALERTS,
    CLOUD_SERVICES,
    COLLECTIONS,
    EXECUTIONS,
    JOBS,
    NOTIFICATION_CHANNELS,
)
from scheduler.domain.alerts import Alert as NewAlert
from scheduler.domain.alerts import AlertEvent, AlertRules, AlertStatus, Streak
from scheduler.domain.durations import Duration, format_datetime
from scheduler.domain.states import ExecutionStatus, Trigger

STREAKS = ALERT_STREAKS


class DueAlert(NamedTuple):
    """An alert leased to a node for delivery, with where its job is."""

    id: str
    event: str
    occurrence: str
    execution_id: str | None
    created_at: datetime
    facts: str
    channels: str
    attempts: int
    deliveries: str | None
    job_id: str
    collection_id: int
    collection: str
    cloud_service: str
    subscription_id: str


class ChannelRow(NamedTuple):
    """A stored channel: its name, document and sealed secrets."""

    name: str
    document: str
    secrets: bytes | None


def _dialect(conn: Connection | Session) -> str:
    return conn.get_bind().dialect.name if isinstance(conn, Session) else conn.dialect.name


def default_rules(conn: Connection, job_pks: Collection[int]) -> dict[int, str]:
    """The default alert rules (their `alerts` document) of the collections of these jobs,
    by job; jobs whose collection has none are left out."""
    if not job_pks:
        return {}
    jobs, collections = JOBS.c, COLLECTIONS.c
    return {job_pk: rules for job_pk, rules in conn.execute(
        select(jobs.id, collections.default_alerts)
        .join_from(JOBS, COLLECTIONS, collections.id == jobs.collection_id)
        .where(among(_dialect(conn), jobs.id, job_pks),
               collections.default_alerts.is_not(None)))}


def streaks(conn: Connection, job_pks: Collection[int]) -> dict[int, Streak]:
    """The failure streaks of these jobs; a job without a row has none."""
    if not job_pks:
        return {}
    found = STREAKS.c
    return {job_pk: Streak(failures, alerted_at) for job_pk, failures, alerted_at in
            conn.execute(select(found.job_pk, found.failures, found.alerted_at)
                         .where(among(_dialect(conn), found.job_pk, job_pks)))}


def write_streaks(conn: Connection, written: Mapping[int, Streak]) -> None:
    """Store these jobs' streaks, whether they had a row or not."""
    if not written:
        return
    insert = postgresql.insert if _dialect(conn) == "postgresql" else sqlite.insert
    statement = insert(STREAKS)
    conn.execute(statement.on_conflict_do_update(
        index_elements=[STREAKS.c.job_pk],
        set_={"failures": statement.excluded.failures,
              "alerted_at": statement.excluded.alerted_at}),
        [{"job_pk": job_pk, "failures": streak.failures, "alerted_at": streak.alerted_at}
         for job_pk, streak in written.items()])


def insert_alerts(conn: Connection, alerts: Iterable[tuple[NewAlert, tuple[str, ...]]],
                  now: datetime) -> list[str]:
    """Make these alerts (each with the channels it goes to), due at once; one already
    made of the same job, event and occurrence is left as it is. Returns the ids of those
    made."""
    rows = [{"id": uuid.uuid4().hex, "job_pk": alert.job_pk, "event": alert.event.value,
             "occurrence": alert.occurrence[:100], "execution_id": alert.execution_id,
             "created_at": now, "facts": json.dumps(alert.facts, default=_json_value),
             "channels": json.dumps(list(channels)), "status": AlertStatus.PENDING,
             "attempts": 0, "next_attempt_at": now}
            for alert, channels in alerts]
    if not rows:
        return []
    insert = postgresql.insert if _dialect(conn) == "postgresql" else sqlite.insert
    made: list[str] = []
    # One at a time: a row whose key is taken is left out, and RETURNING says which.
    for row in rows:
        made.extend(conn.scalars(insert(ALERTS).values(**row).on_conflict_do_nothing(
            index_elements=["job_pk", "event", "occurrence"]).returning(ALERTS.c.id)))
    return made


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return format_datetime(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _due(now: datetime) -> Any:
    alerts = ALERTS.c
    return and_(alerts.status == AlertStatus.PENDING, alerts.next_attempt_at <= now,
                or_(alerts.lease_until.is_(None), alerts.lease_until < now))


def take_due_alerts(session: Session, now: datetime, node: str, until: datetime,
                    limit: int) -> list[DueAlert]:
    """Lease up to `limit` alerts due for delivery to `node` until `until`: those pending
    whose time came and that no node holds (or whose node's lease ran out)."""
    alerts = ALERTS.c
    query = select(alerts.id).where(_due(now)).order_by(alerts.next_attempt_at).limit(limit)
    if _dialect(session) == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if not ids:
        return []
    session.execute(update(ALERTS).where(alerts.id.in_(ids))
                    .values(lease_owner=node, lease_until=until))
    jobs, collections = JOBS.c, COLLECTIONS.c
    services = CLOUD_SERVICES.c
    rows = session.execute(
        select(alerts.id, alerts.event, alerts.occurrence, alerts.execution_id,
               alerts.created_at, alerts.facts, alerts.channels, alerts.attempts,
               alerts.deliveries, jobs.job_id, collections.id, collections.name,
               services.name, services.subscription_id)
        .join_from(ALERTS, JOBS, jobs.id == alerts.job_pk)
        .join(COLLECTIONS, collections.id == jobs.collection_id)
        .join(CLOUD_SERVICES, services.id == collections.cloud_service_id)
        .where(alerts.id.in_(ids)).order_by(alerts.next_attempt_at))
    return [DueAlert._make(row) for row in rows]


def release_leases(session: Session, owners: Collection[str] | Select[tuple[str]],
                   keep: bool = False) -> int:
    """Hand back for any node to deliver at once the alerts `owners` hold (with `keep`: the
    alerts every other node holds): their nodes stopped before storing what their tries
    came to. Returns how many."""
    alerts = ALERTS.c
    held_by = alerts.lease_owner.in_(owners) if not keep else and_(
        alerts.lease_owner.is_not(None), alerts.lease_owner.not_in(owners))
    return _count(session.execute(update(ALERTS).where(held_by)
                                  .values(lease_owner=None, lease_until=None)))


class Unstarted(NamedTuple):
    """An execution of a job that no attempt has started yet."""

    id: str
    job_pk: int
    scheduled_time: datetime


def unstarted(conn: Connection, due_before: datetime, limit: int) -> list[Unstarted]:
    """Executions of jobs due before `due_before` that no attempt has started: pending or
    waiting, never attempted, the longest overdue first; but a backfill's, whose occurrences
    are past by design. A working cluster has few: it leases what falls due at once."""
    runs = EXECUTIONS.c
    return [Unstarted._make(row) for row in conn.execute(
        select(runs.id, runs.job_pk, runs.scheduled_time)
        .where(runs.status.in_((ExecutionStatus.PENDING, ExecutionStatus.WAITING)),
               runs.attempts == 0, runs.job_pk.is_not(None),
               runs.trigger != Trigger.BACKFILL,
               runs.scheduled_time < due_before)
        .order_by(runs.scheduled_time).limit(limit))]


def next_alert_time(conn: Connection) -> datetime | None:
    """When the next pending alert is due (None: none is): one a node holds, once its
    lease runs out, if that is later."""
    alerts = ALERTS.c
    held = and_(alerts.lease_until.is_not(None), alerts.lease_until > alerts.next_attempt_at)
    due: datetime | None = conn.scalar(
        select(func.min(case((held, alerts.lease_until), else_=alerts.next_attempt_at)))
        .where(alerts.status == AlertStatus.PENDING))
    return due


def channels_of(conn: Connection, collection_id: int, names: Collection[str]
                ) -> dict[str, ChannelRow]:
    """The stored channels of a collection named (in any case) among `names`, by name in
    lower case."""
    channels = NOTIFICATION_CHANNELS.c
    keys = [name.lower() for name in names]
    return {row.name.lower(): ChannelRow(*row) for row in conn.execute(
        select(channels.name, channels.document, channels.secrets)
        .where(channels.collection_id == collection_id, channels.name_key.in_(keys)))}


class DeliveryResult(NamedTuple):
    """What a node's try of an alert came to: its status after it, each channel's outcome,
    how many tries it has had, and when it is due again (None: it is done)."""

    id: str
    status: str
    deliveries: str
    attempts: int
    next_attempt_at: datetime | None
    finished_at: datetime | None


def finish_tries(session: Session, node: str, results: Iterable[DeliveryResult]) -> int:
    """Store what `node`'s tries came to, for the alerts it still holds; returns how many."""
    alerts = ALERTS.c
    stored = 0
    for result in results:
        stored += _count(session.execute(
            update(ALERTS).where(alerts.id == result.id, alerts.lease_owner == node)
            .values(status=result.status, deliveries=result.deliveries,
                    attempts=result.attempts, next_attempt_at=result.next_attempt_at,
                    finished_at=result.finished_at, lease_owner=None, lease_until=None)))
    return stored


def prune_alerts(session: Session, before: datetime) -> int:
    """Delete the alerts made before `before` that are done; returns how many."""
    alerts = ALERTS.c
    return _count(session.execute(delete(ALERTS).where(
        alerts.created_at < before, alerts.status != AlertStatus.PENDING)))


def _count(result: Result[Any]) -> int:
    """How many rows a statement changed."""
    return cast(CursorResult[Any], result).rowcount or 0


# --- a collection's default rules, stored -------------------------------------------------

def dump_rules(rules: AlertRules) -> str:
    """Alert rules as a collection keeps them: the project's own JSON (snake_case)."""
    return json.dumps({
        "v": 1, "on": sorted(rules.on), "channels": list(rules.channels),
        "after_consecutive": rules.after_consecutive,
        "late_by": rules.late_by.text if rules.late_by else None,
        "duration_over": rules.duration_over.text if rules.duration_over else None,
        "realert": rules.realert.text if rules.realert else None,
    }, separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def load_rules(text: str) -> AlertRules:
    """The alert rules a collection keeps (`dump_rules`), read once per text."""
    document = json.loads(text)

    def duration(key: str) -> Duration | None:
        value = document.get(key)
        return Duration.parse(value) if value else None
    return AlertRules(frozenset(AlertEvent(event) for event in document["on"]),
                      tuple(document["channels"]), int(document["after_consecutive"]),
                      duration("late_by"), duration("duration_over"), duration("realert"))
