"""Jobs and inline runs are stored in the project's own form (`"v": 1`, snake_case), no
longer as the API's JSON document.

The secrets stay sealed as they are: a migration has no key to open them. Each secret field
of the converted document refers to its secret by the name it was sealed under before (the
field's place in the API's document, such as `action.request.authentication.password`);
the names only have to match the sealed entries, and a job written afterwards uses the
stored form's own. A document that does not read as a valid job is left as it was: the
engine faults such a job, as it did before.

The conversion is written out here, apart from the code that reads the API's document
today, so that it converts what the release before this one stored whatever that code
becomes.

Revision ID: 0007
Revises: 0006
Created: 2026-12-06
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from scheduler.domain.durations import parse_duration

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

BATCH = 500
Document = dict[str, Any]
# Service Bus BrokerProperties as the API's document named them, and as they are stored.
_BROKER_PROPERTIES = {
    "correlationId": "CorrelationId", "forcePersistence": "ForcePersistence",
    "label": "Label", "messageId": "MessageId", "partitionKey": "PartitionKey",
    "replyTo": "ReplyTo", "replyToSessionId": "ReplyToSessionId",
    "scheduledEnqueueTimeUtc": "ScheduledEnqueueTimeUtc", "sessionId": "SessionId",
    "timeToLive": "TimeToLive", "to": "To", "viaPartitionKey": "ViaPartitionKey",
}


def upgrade() -> None:
    """Convert `jobs.definition` and `executions.definition` to the stored form."""
    conn = op.get_bind()
    for table in ("jobs", "executions"):
        _convert_table(conn, sa.table(table, sa.column("id"), sa.column("definition")))


def downgrade() -> None:
    """Not supported: the release before reads only the API's document, which the stored
    form does not keep word for word (key order, defaults written out)."""
    raise NotImplementedError("the stored job form cannot be migrated back; restore the "
                              "backup taken before the upgrade")


def _convert_table(conn: sa.Connection, table: sa.TableClause) -> None:
    """Convert each row's definition, BATCH rows per statement, in primary key order."""
    for rows in _batches(conn, table):
        changes = [{"pk": pk, "definition": converted} for pk, text in rows
                   if (converted := convert(text)) is not None]
        if changes:
            conn.execute(table.update().where(table.c.id == sa.bindparam("pk"))
                         .values(definition=sa.bindparam("definition")), changes)


def _batches(conn: sa.Connection, table: sa.TableClause) -> Iterator[list[tuple[Any, str]]]:
    after: Any = None
    while True:
        query = sa.select(table.c.id, table.c.definition).where(
            table.c.definition.is_not(None)).order_by(table.c.id).limit(BATCH)
        if after is not None:
            query = query.where(table.c.id > after)
        rows = [(row.id, row.definition) for row in conn.execute(query)]
        if not rows:
            return
        after = rows[-1][0]
        yield rows


def convert(text: str) -> str | None:
    """The stored form of a document the API wrote before; None if it is in the stored form
    already, or does not read as a job."""
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or "v" in document:
            return None
        return json.dumps(_job(document), separators=(",", ":"))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None


def _job(document: Document) -> Document:
    action = document["action"]
    error = action.get("errorAction")
    return {
        "v": 1,
        "start": _instant(document.get("startTime")),
        "recurrence": _recurrence(document.get("recurrence")),
        "parameters": dict(document.get("parameters") or {}),
        "action": _action(action, "action"),
        "error_action": None if error is None else _single(error, "action.errorAction"),
    }


def _instant(text: str | None) -> str | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC).isoformat()


def _duration(text: str | None) -> Document | None:
    if text is None:
        return None
    value = parse_duration(text)
    return {"us": value.days * 86_400_000_000 + value.seconds * 1_000_000 + value.microseconds,
            "text": text}


def _recurrence(document: Document | None) -> Document | None:
    if document is None:
        return None
    schedule = document.get("schedule") or {}
    return {
        "frequency": document["frequency"], "interval": int(document.get("interval", 1)),
        "count": document.get("count"), "end_time": _instant(document.get("endTime")),
        "time_zone": document.get("timeZone", "UTC"),
        "stated": sorted(name for name, key in (("interval", "interval"),
                                                ("time_zone", "timeZone")) if key in document),
        "schedule": {
            "minutes": list(schedule.get("minutes", ())),
            "hours": list(schedule.get("hours", ())),
            "week_days": list(schedule.get("weekDays", ())),
            "month_days": list(schedule.get("monthDays", ())),
            "monthly_occurrences": [[item["day"], int(item["occurrence"])]
                                    for item in schedule.get("monthlyOccurrences", ())],
            "months": list(schedule.get("months", ())),
        },
    }


def _retry(policy: Document | None) -> Document | None:
    if policy is None:
        return None
    return {"kind": policy.get("retryType") or "fixed",
            "interval": _duration(policy.get("retryInterval")),
            "count": policy.get("retryCount"),
            "max_interval": _duration(policy.get("maxRetryInterval"))}


def _action(action: Document, name: str) -> Document:
    if action["type"] != "sequence":
        return _single(action, name)
    return {"kind": "sequence", "retry": _retry(action.get("retryPolicy")),
            "steps": [_step(step, f"{name}.steps.{index}")
                      for index, step in enumerate(action["steps"])]}


def _step(step: Document, name: str) -> Document:
    return {"name": str(step["name"]), "action": _single(step["action"], f"{name}.action"),
            "retry": _retry(step.get("retryPolicy")), "timeout": _duration(step.get("timeout")),
            "pause_on_failure": step.get("pauseOnFailure"), "manual": step.get("manual")}


def _sealed(name: str, optional: bool = False) -> Document:
    """A reference to the secret sealed under `name` (an `optional` one may be absent)."""
    return {"sealed": name, "optional": True} if optional else {"sealed": name}


def _single(action: Document, name: str) -> Document:
    kind = action["type"]
    key, convert_fields = _ACTIONS[kind]
    return {"kind": kind, **convert_fields(action[key], f"{name}.{key}"),
            "retry": _retry(action.get("retryPolicy"))}


def _http(request: Document, name: str) -> Document:
    return {"method": request["method"], "uri": request["uri"],
            "headers": dict(request.get("headers") or {}), "body": request.get("body"),
            "authentication": _authentication(request.get("authentication"),
                                              f"{name}.authentication")}


def _authentication(auth: Document | None, name: str) -> Document | None:
    if not auth:
        return None
    if auth["type"] == "Basic":
        return {"kind": "basic", "username": auth["username"],
                "password": _sealed(f"{name}.password")}
    if auth["type"] == "ActiveDirectoryOAuth":
        return {"kind": "active_directory", "tenant": auth["tenant"],
                "audience": auth["audience"], "client_id": auth["clientId"],
                "secret": _sealed(f"{name}.secret")}
    return {"kind": "client_certificate", "pfx": _sealed(f"{name}.pfx"),
            "password": _sealed(f"{name}.password", optional=True),
            "thumbprint": auth.get("certificateThumbprint", ""),
            "subject": auth.get("certificateSubjectName", ""),
            "expiration": _instant(auth.get("certificateExpiration"))}


def _storage_queue(message: Document, name: str) -> Document:
    return {"account": message["storageAccount"], "queue": message["queueName"],
            "sas_token": _sealed(f"{name}.sasToken"), "message": message["message"]}


def _service_bus(message: Document, name: str) -> Document:
    brokered = dict(message.get("brokeredMessageProperties") or {})
    content_type = brokered.pop("contentType", None)
    return {"namespace": message["namespace"],
            "entity": message.get("queueName") or message.get("topicPath") or "",
            "message": message["message"],
            "sas_key_name": message["authentication"]["sasKeyName"],
            "sas_key": _sealed(f"{name}.authentication.sasKey"),
            "transport_type": message.get("transportType"), "content_type": content_type,
            "broker_properties": {_BROKER_PROPERTIES[key]: value
                                  for key, value in brokered.items()
                                  if key in _BROKER_PROPERTIES},
            "custom_properties": dict(message.get("customMessageProperties") or {})}


def _amqp(message: Document, name: str) -> Document:
    return {"broker": message["broker"], "exchange": message.get("exchange") or "",
            "routing_key": message["routingKey"], "message": message["message"],
            "headers": dict(message.get("headers") or {})}


def _redis(message: Document, name: str) -> Document:
    return {"broker": message["broker"], "stream": message["stream"],
            "message": message["message"]}


# Each action type of the API's document: the key its fields sat under, and their conversion.
_ACTIONS: dict[str, tuple[str, Callable[[Document, str], Document]]] = {
    "http": ("request", _http), "https": ("request", _http),
    "storageQueue": ("queueMessage", _storage_queue),
    "serviceBusQueue": ("serviceBusQueueMessage", _service_bus),
    "serviceBusTopic": ("serviceBusTopicMessage", _service_bus),
    "amqp": ("amqpMessage", _amqp), "redis": ("redisMessage", _redis),
}
