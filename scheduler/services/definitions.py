"""Stored job documents read into the domain's typed, frozen job definitions.

The API validates and normalises a job's wire document and stores it with its secrets sealed
apart; this module puts the secrets back and reads the result into a `JobDefinition`, once per
version, for the engine. It trusts what it reads: the rules were applied when the job was
written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from scheduler.domain.durations import Duration
from scheduler.domain.jobs import (
    Action,
    ActiveDirectoryAuthentication,
    AmqpAction,
    BasicAuthentication,
    CertificateAuthentication,
    HttpAction,
    HttpAuthentication,
    JobDefinition,
    RedisAction,
    Secret,
    Sequence,
    ServiceBusAction,
    SingleAction,
    Step,
    StorageQueueAction,
)
from scheduler.domain.occurrences import upcoming
from scheduler.domain.outbound import BROKER_PROPERTY_NAMES
from scheduler.domain.recurrence import MonthlyOccurrence, Recurrence, Schedule
from scheduler.domain.retry import RetryPolicy

# Where each action type keeps what it sends, in the wire document.
_MESSAGE_KEYS = {
    "storageQueue": "queueMessage", "serviceBusQueue": "serviceBusQueueMessage",
    "serviceBusTopic": "serviceBusTopicMessage", "amqp": "amqpMessage",
    "redis": "redisMessage",
}


def with_secrets(definition: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """The full document again: the public definition with its secrets put back."""
    document = copy.deepcopy(dict(definition))
    for path, value in secrets.items():
        *parents, leaf = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[leaf] = value
    return document


def read_definition(document: Mapping[str, Any]) -> JobDefinition:
    """The job definition of a stored document (its secrets put back)."""
    action = document["action"]
    error = action.get("errorAction")
    start = document.get("startTime")
    recurrence = document.get("recurrence")
    return JobDefinition(
        start=_instant(start) if start else None,
        recurrence=read_recurrence(recurrence) if recurrence else None,
        parameters=dict(document.get("parameters") or {}),
        action=read_action(action),
        error_action=read_single_action(error) if error else None,
    )


def read_schedule(document: Mapping[str, Any]) -> tuple[datetime | None, Recurrence | None]:
    """Only the start time and recurrence of a stored document."""
    start, recurrence = document.get("startTime"), document.get("recurrence")
    return (_instant(start) if start else None,
            read_recurrence(recurrence) if recurrence else None)


def fire_time_from(definition: str, created: datetime, executed: int, now: datetime,
                   stored: datetime | None) -> datetime | None:
    """A job's first fire time from `now` on, those passed meanwhile skipped (a job enabled
    or started again replays nothing); `stored` when it has not passed, or when the stored
    definition no longer reads (its next tick faults the job)."""
    if stored is None or stored >= now:
        return stored
    try:
        start, recurrence = read_schedule(json.loads(definition))
    except Exception:
        return stored
    return next(upcoming(recurrence, start, created, now, executed), None)


def read_action(action: Mapping[str, Any]) -> Action:
    """One action of a stored document, with its retry policy."""
    if action["type"] == "sequence":
        return Sequence("sequence", tuple(_step(step) for step in action["steps"]),
                        read_retry_policy(action.get("retryPolicy") or {}))
    return read_single_action(action)


def _step(step: Mapping[str, Any]) -> Step:
    """One step of a stored sequence; its retries are its own, else its action's."""
    action = read_single_action(step["action"])
    policy = step.get("retryPolicy")
    timeout = step.get("timeout")
    return Step(str(step["name"]), action,
                read_retry_policy(policy) if policy else action.retry,
                Duration.parse(timeout) if timeout else None,
                step.get("pauseOnFailure"), step.get("manual"))


def read_single_action(action: Mapping[str, Any]) -> SingleAction:
    """One action of a stored document that is not a sequence."""
    kind = str(action["type"])
    retry = read_retry_policy(action.get("retryPolicy") or {})
    if kind in ("http", "https"):
        request = action["request"]
        return HttpAction(kind, request["method"], request["uri"],
                          dict(request.get("headers") or {}), request.get("body"),
                          _authentication(request.get("authentication")), retry)
    message = action[_MESSAGE_KEYS[kind]]
    if kind == "storageQueue":
        return StorageQueueAction(message["storageAccount"], message["queueName"],
                                  Secret(message["sasToken"]), message["message"], retry)
    if kind in ("serviceBusQueue", "serviceBusTopic"):
        return _service_bus(kind, message, retry)
    if kind == "amqp":
        return AmqpAction(message["broker"], message.get("exchange") or "",
                          message["routingKey"], message["message"], retry,
                          dict(message.get("headers") or {}))
    if kind == "redis":
        return RedisAction(message["broker"], message["stream"], message["message"], retry)
    raise ValueError(f"{kind} is not an action type")


def _service_bus(kind: str, message: Mapping[str, Any], retry: RetryPolicy
                 ) -> ServiceBusAction:
    auth = message["authentication"]
    brokered = dict(message.get("brokeredMessageProperties") or {})
    content_type = brokered.pop("contentType", None)
    return ServiceBusAction(
        kind, message["namespace"], message.get("queueName") or message.get("topicPath") or "",
        message["message"], auth["sasKeyName"], Secret(auth["sasKey"]), retry,
        message.get("transportType"), content_type,
        {BROKER_PROPERTY_NAMES[name]: value for name, value in brokered.items()
         if name in BROKER_PROPERTY_NAMES},
        dict(message.get("customMessageProperties") or {}))


def read_retry_policy(policy: Mapping[str, Any]) -> RetryPolicy:
    """A stored retry policy, Azure's default when there is none."""
    return RetryPolicy.from_fields(policy.get("retryType"), policy.get("retryInterval"),
                                   policy.get("retryCount"), policy.get("maxRetryInterval"))


def read_recurrence(recurrence: Mapping[str, Any]) -> Recurrence:
    """A stored recurrence."""
    end = recurrence.get("endTime")
    return Recurrence(
        frequency=recurrence["frequency"], interval=int(recurrence.get("interval", 1)),
        count=recurrence.get("count"), end_time=_instant(end) if end else None,
        schedule=_schedule(recurrence.get("schedule") or {}),
        time_zone=recurrence.get("timeZone", "UTC"),
    )


def _schedule(schedule: Mapping[str, Any]) -> Schedule:
    return Schedule(
        minutes=tuple(schedule.get("minutes", ())), hours=tuple(schedule.get("hours", ())),
        week_days=tuple(schedule.get("weekDays", ())),
        month_days=tuple(schedule.get("monthDays", ())),
        monthly_occurrences=tuple(MonthlyOccurrence(item["day"], int(item["occurrence"]))
                                  for item in schedule.get("monthlyOccurrences", ())),
        months=tuple(schedule.get("months", ())),
    )


def _authentication(auth: Mapping[str, Any] | None) -> HttpAuthentication | None:
    if not auth:
        return None
    if auth["type"] == "Basic":
        return BasicAuthentication(auth["username"], Secret(auth["password"]))
    if auth["type"] == "ActiveDirectoryOAuth":
        return ActiveDirectoryAuthentication(auth["tenant"], auth["audience"],
                                             auth["clientId"], Secret(auth["secret"]))
    password = auth.get("password")
    return CertificateAuthentication(Secret(auth["pfx"]),
                                     Secret(password) if password else None)


def _instant(text: str) -> datetime:
    """A stored time, always UTC with a Z."""
    return datetime.fromisoformat(text).astimezone(UTC)
