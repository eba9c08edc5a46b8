"""Notification channels of job collections: stored with their secrets sealed, read for the
API without opening them, written as a call asks, each change recorded in the audit; and the
test message a channel sends on request, through the sender the app wires in."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.orm import Session

from scheduler.db.alerts import load_rules
from scheduler.db.models import Job, JobCollection
from scheduler.db.models import NotificationChannel as ChannelRow
from scheduler.db.stored_channels import (
    StoredChannelError,
    open_channel,
    public_channel,
    seal_channel,
    slack_origin,
)
from scheduler.db.stored_jobs import StoredJobError, stored_alert_channels
from scheduler.domain.alerts import AlertRules
from scheduler.domain.notifications import (
    MAX_CHANNELS,
    Channel,
    Delivery,
    EmailChannel,
    Notification,
    WebhookChannel,
    test_message,
)
from scheduler.services.audit import Target, record_change
from scheduler.services.calls import Call
from scheduler.services.collections import collection_id, get_collection
from scheduler.services.errors import BadRequest, Conflict, NotFound


class ChannelSender(Protocol):
    """Sends one notification to one channel, now, within its timeout: what the app wires
    in (`scheduler.actions.notify`). A failure is a `Delivery` saying why, never raised."""

    def send(self, channel: Channel, notification: Notification) -> Delivery:
        """Deliver the notification, or say why it was not."""


def _public(row: Any) -> Channel:
    """A row's channel, secrets left sealed; a row that cannot be read is a conflict to
    report, never a guess."""
    try:
        return public_channel(row.name, row.document)
    except StoredChannelError as exc:
        raise Conflict(f"The stored channel {row.name} cannot be read: {exc}.") from None


def channel_missing(name: str) -> NotFound:
    """The 404 of a channel that does not exist."""
    return NotFound(f"The notification channel {name} does not exist.")


# --- reading ---------------------------------------------------------------------------------

def list_channels(conn: Connection, subscription_id: str, cloud_service: str,
                  collection: str) -> list[Channel]:
    """A collection's channels by name, secrets sealed; 404 naming what does not exist."""
    found = collection_id(conn, subscription_id, cloud_service, collection)
    rows = conn.execute(select(ChannelRow.name, ChannelRow.document)
                        .where(ChannelRow.collection_id == found)
                        .order_by(ChannelRow.name_key))
    return [_public(row) for row in rows]


def read_channel(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
                 name: str) -> Channel:
    """One channel by its name in any case, secrets sealed; 404 naming what does not
    exist."""
    found = collection_id(conn, subscription_id, cloud_service, collection)
    row = conn.execute(select(ChannelRow.name, ChannelRow.document).where(
        ChannelRow.collection_id == found, ChannelRow.name_key == name.lower())).first()
    if row is None:
        raise channel_missing(name)
    return _public(row)


def channel_names(conn: Connection, collection_pk: int) -> list[str]:
    """The names of a collection's channels, as written."""
    return list(conn.scalars(select(ChannelRow.name)
                             .where(ChannelRow.collection_id == collection_pk)))


def check_channels_exist(conn: Connection, collection_pk: int, rules: AlertRules | None,
                         field_name: str) -> None:
    """Refuse alert rules that name a channel the collection does not have (400 naming the
    field)."""
    if rules is None or not rules.channels:
        return
    known = {name.lower() for name in channel_names(conn, collection_pk)}
    for index, name in enumerate(rules.channels):
        if name.lower() not in known:
            raise BadRequest(f"{field_name}.{index}: the job collection has no notification "
                             f"channel named {name}")


# --- writing ---------------------------------------------------------------------------------

def put_channel(session: Session, call: Call, cloud_service: str, collection: str,
                channel: Channel) -> tuple[Channel, bool]:
    """Create a channel, or replace the one of its name whole (keeping the name as first
    written, dropping a secret not given again); recorded in the audit (`channel.create`,
    `channel.put`). Returns it as shown (secrets sealed) and whether it is new. A collection
    holds at most MAX_CHANNELS: one more is a conflict."""
    # The collection's row is held: writes of its channels take turns, so that neither the
    # count nor the name can change between the look and the write.
    found = get_collection(session, call.subscription_id, cloud_service, collection,
                           for_update=True)
    target = Target(cloud_service, collection)
    existing = session.scalar(select(ChannelRow).where(
        ChannelRow.collection_id == found.id, ChannelRow.name_key == channel.name.lower()))
    if existing is None:
        _check_room(session, found.id)
        document, sealed = seal_channel(channel, call.box)
        session.add(ChannelRow(collection_id=found.id, name=channel.name,
                               name_key=channel.name.lower(), document=document,
                               secrets=sealed, created_at=call.now, updated_at=call.now))
        session.flush()
        record_change(session, call, "channel.create", target,
                      detail=f"channel {channel.name}: {summary(channel)}")
        return public_channel(channel.name, document), True
    document, sealed = seal_channel(channel, call.box)
    existing.document, existing.secrets, existing.updated_at = document, sealed, call.now
    record_change(session, call, "channel.put", target,
                  detail=f"channel {existing.name}: {summary(channel)}")
    return public_channel(existing.name, document), False


def _check_room(session: Session, collection_pk: int) -> None:
    held = session.scalar(select(func.count()).select_from(ChannelRow)
                          .where(ChannelRow.collection_id == collection_pk)) or 0
    if held >= MAX_CHANNELS:
        raise Conflict(f"The notification channel breaks a quota: a job collection holds at "
                       f"most {MAX_CHANNELS} channels, and this one holds {held}.")


def delete_channel(session: Session, call: Call, cloud_service: str, collection: str,
                   name: str) -> None:
    """Delete a channel; recorded in the audit (`channel.delete`). 404 naming what does not
    exist."""
    found = get_collection(session, call.subscription_id, cloud_service, collection,
                           for_update=True)
    naming = rules_naming(session, found, name)
    if naming:
        raise Conflict(f"The notification channel {name} is named in the alert rules of "
                       f"{_listed(naming)}: change them first.")
    deleted = session.execute(delete(ChannelRow).where(
        ChannelRow.collection_id == found.id, ChannelRow.name_key == name.lower(),
    ).returning(ChannelRow.name)).scalar()
    if deleted is None:
        raise channel_missing(name)
    record_change(session, call, "channel.delete", Target(cloud_service, collection),
                  detail=f"channel {deleted}")


# Only the stored documents that name some channel in their alert rules are read.
ALERT_CHANNELS_FIELD = '"channels":["'


def rules_naming(session: Session, collection: JobCollection, name: str) -> list[str]:
    """What sends to the channel `name` (in any case) by its alert rules: the collection's
    default rules, then each job, by id."""
    key = name.lower()
    found = []
    default = load_rules(collection.default_alerts) if collection.default_alerts else None
    if default is not None and default.on and key in (item.lower()
                                                       for item in default.channels):
        found.append("the collection's default")
    rows = session.execute(select(Job.job_id, Job.definition).where(
        Job.collection_id == collection.id,
        Job.definition.like(f"%{ALERT_CHANNELS_FIELD}%")).order_by(Job.job_key))
    for job_id, definition in rows:
        try:
            channels = stored_alert_channels(definition)
        except StoredJobError:
            continue
        if key in (item.lower() for item in channels):
            found.append(f"job {job_id}")
    return found


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def summary(channel: Channel) -> str:
    """What a channel does, in words that hold no secret."""
    if isinstance(channel, WebhookChannel):
        return f"webhook to {channel.url}" + (", signed" if channel.secret else "")
    if isinstance(channel, EmailChannel):
        return f"email to {', '.join(channel.to)}" + (
            f" from {channel.sender}" if channel.sender else "")
    return f"slack to {slack_origin(channel.url)}"


# --- the test message ------------------------------------------------------------------------

def opened_channel(session: Session, call: Call, cloud_service: str, collection: str,
                   name: str) -> tuple[Channel, str]:
    """A channel with its secrets opened, and its collection's name as written. 404 naming
    what does not exist; 409 if its secrets do not open with this home's keys."""
    found = get_collection(session, call.subscription_id, cloud_service, collection)
    row = session.execute(select(ChannelRow.name, ChannelRow.document, ChannelRow.secrets)
                          .where(ChannelRow.collection_id == found.id,
                                 ChannelRow.name_key == name.lower())).first()
    if row is None:
        raise channel_missing(name)
    try:
        return open_channel(row.name, row.document, row.secrets, call.box), found.name
    except StoredChannelError as exc:
        raise Conflict(f"The channel {row.name} cannot be used: {exc}.") from None


def send_test(sender: ChannelSender, call: Call, collection: str,
              channel: Channel) -> Delivery:
    """Send a channel its test message now (with no transaction open: the call may take
    its whole timeout)."""
    return sender.send(channel, test_message(uuid.uuid4().hex, collection, channel.name,
                                             call.now))


def record_test(session: Session, call: Call, cloud_service: str, collection: str,
                channel: Channel, delivery: Delivery) -> None:
    """Record a test message in the audit (`channel.test`), with whether it arrived."""
    outcome = "delivered" if delivery.delivered else f"not delivered: {delivery.error}"
    record_change(session, call, "channel.test", Target(cloud_service, collection),
                  detail=f"channel {channel.name}: {outcome}")
