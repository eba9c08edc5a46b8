"""Alerts as the API and the dashboard read them: the alerts made of a job's (or a
collection's) events, newest first, each with its delivery to every channel; and a
collection's default alert rules, which its jobs without rules of their own follow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from scheduler.db.alerts import dump_rules, load_rules
from scheduler.db.models import Alert, Job, JobCollection
from scheduler.domain.alerts import (
    AlertEvent,
    AlertRules,
    alert_subject,
    alert_text,
    wire_facts,
)
from scheduler.services.audit import Target, record_change
from scheduler.services.calls import Call
from scheduler.services.collections import collection_id, get_collection
from scheduler.services.errors import NotFound
from scheduler.services.notifications import check_channels_exist

DEFAULT_TOP = 100
MAX_TOP = 1000


@dataclass(frozen=True, slots=True)
class SentAlert:
    """An alert as it is shown: what it tells, and where its delivery stands."""

    id: str
    job_id: str
    event: str
    occurrence: str
    execution_id: str | None
    created_at: datetime
    subject: str
    text: str
    facts: dict[str, Any]
    channels: list[str]
    status: str
    attempts: int
    deliveries: dict[str, Any]
    next_attempt_at: datetime | None
    finished_at: datetime | None


def _shown(row: Any, collection: str) -> SentAlert:
    event = AlertEvent(row.event)
    facts = json.loads(row.facts)
    return SentAlert(
        row.id, row.job_id, row.event, row.occurrence, row.execution_id, row.created_at,
        alert_subject(event, row.job_id, collection), alert_text(event, row.job_id, facts),
        wire_facts(facts), json.loads(row.channels), row.status, row.attempts,
        json.loads(row.deliveries or "{}"),
        row.next_attempt_at if row.status == "pending" else None, row.finished_at)


def list_alerts(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
                job_id: str | None = None, top: int = DEFAULT_TOP) -> list[SentAlert]:
    """The alerts of a collection's jobs (of one job, if named), newest first, at most
    `top`; 404 naming what does not exist."""
    found = collection_id(conn, subscription_id, cloud_service, collection)
    query = (select(Alert.id, Alert.event, Alert.occurrence, Alert.execution_id,
                    Alert.created_at, Alert.facts, Alert.channels, Alert.status,
                    Alert.attempts, Alert.deliveries, Alert.next_attempt_at,
                    Alert.finished_at, Job.job_id)
             .join(Job, Job.id == Alert.job_pk).where(Job.collection_id == found))
    if job_id is not None:
        job_pk = conn.scalar(select(Job.id).where(Job.collection_id == found,
                                                  Job.job_key == job_id.lower()))
        if job_pk is None:
            raise NotFound(f"The job {job_id} does not exist.")
        query = query.where(Alert.job_pk == job_pk)
    rows = conn.execute(query.order_by(Alert.created_at.desc(), Alert.id).limit(top))
    return [_shown(row, collection) for row in rows]


# --- a collection's default rules --------------------------------------------------------

def read_default_rules(conn: Connection, subscription_id: str, cloud_service: str,
                       collection: str) -> AlertRules | None:
    """A collection's default alert rules (None: it has none); 404 naming what does not
    exist."""
    found = collection_id(conn, subscription_id, cloud_service, collection)
    text = conn.scalar(select(JobCollection.default_alerts).where(JobCollection.id == found))
    return load_rules(text) if text else None


def put_default_rules(session: Session, call: Call, cloud_service: str, collection: str,
                      rules: AlertRules) -> None:
    """Set a collection's default alert rules; each channel they name must be one of the
    collection's (400 naming it). Recorded in the audit (`alerts.default`)."""
    found = get_collection(session, call.subscription_id, cloud_service, collection,
                           for_update=True)
    check_channels_exist(session.connection(), found.id, rules, "channels")
    found.default_alerts = dump_rules(rules)
    record_change(session, call, "alerts.default", Target(cloud_service, collection),
                  detail=f"default alert rules: {summary(rules)}")


def delete_default_rules(session: Session, call: Call, cloud_service: str,
                         collection: str) -> None:
    """Take a collection's default alert rules away (404 if it has none); recorded in the
    audit."""
    found = get_collection(session, call.subscription_id, cloud_service, collection,
                           for_update=True)
    if found.default_alerts is None:
        raise NotFound(f"The job collection {collection} has no default alert rules.")
    found.default_alerts = None
    record_change(session, call, "alerts.default", Target(cloud_service, collection),
                  detail="default alert rules deleted")


def summary(rules: AlertRules) -> str:
    """What alert rules do, in words."""
    if not rules.on:
        return "no alerts"
    events = ", ".join(event.value for event in AlertEvent if event in rules.on)
    words = f"on {events} to {', '.join(rules.channels)}"
    if rules.after_consecutive != 1:
        words += f", after {rules.after_consecutive} failures in a row"
    if rules.realert is not None:
        words += f", again every {rules.realert.text}"
    return words
