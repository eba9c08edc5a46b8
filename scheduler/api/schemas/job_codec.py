"""Azure's JSON job document and the domain's typed job, both ways.

`decode` reads a document that `parse_job` has validated and normalised (its secrets put
back) into a `JobDefinition`; `encode` writes a definition as the document a GET answers,
without its secrets, or with them (the whole document a merge patch applies to). Each action
type is one entry of `ACTION_CODECS`: its `type`, the key its message sits under, and how its
message is validated, read into its typed action and written back. `parse_job`'s module
registers the types this version has; an action type is its typed action
(`scheduler.domain.jobs.register_action_kind`), its entry here and its executor.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from scheduler.domain.alerts import AlertEvent, AlertRules
from scheduler.domain.catch_up import CatchUp
from scheduler.domain.durations import Duration, format_datetime
from scheduler.domain.jobs import (
    Action,
    ActiveDirectoryAuthentication,
    AmqpAction,
    BasicAuthentication,
    CallbackCompletion,
    CertificateAuthentication,
    HttpAction,
    HttpAuthentication,
    JobDefinition,
    RedisAction,
    Secret,
    Sequence,
    ServiceBusAction,
    SignatureAuthentication,
    SingleAction,
    Step,
    StorageQueueAction,
    callback_of,
    register_action_kind,
)
from scheduler.domain.nodes import node_name
from scheduler.domain.outbound import BROKER_PROPERTY_NAMES
from scheduler.domain.overlap import Overlap, overlap_policy
from scheduler.domain.recurrence import CRON, MonthlyOccurrence, Recurrence, Schedule
from scheduler.domain.retry import RetryPolicy

Document = dict[str, Any]
# Service Bus's BrokerProperties names back to the document's.
_BROKERED_KEYS = {name: key for key, name in BROKER_PROPERTY_NAMES.items()}
# The domain's recurrence fields a job may state, and the document's keys for them.
_STATED = {"interval": "interval", "time_zone": "timeZone"}


class ParseContext(Protocol):
    """What validating a message may use of the document's context: the secrets it keeps
    apart (by the field's label in the document)."""

    def keep_secret(self, label: str, value: Any) -> None:
        """Keep a secret field's value apart from the public document; InvalidField if it
        is not a string of a sensible length."""


@dataclass(frozen=True)
class ActionCodec:
    """How one action type reads from and writes to Azure's document: `key` holds its
    message; `parse` validates and normalises that message (its label in the document, the
    context), raising InvalidField; `decode` reads the normalised message (its secrets put
    back), the type and the retry policy into the typed action; `encode` writes the typed
    action back, with its secrets or without."""

    kind: str
    key: str
    action: type
    parse: Callable[[Any, str, Any], Document]
    decode: Callable[[Document, str, RetryPolicy | None], SingleAction]
    encode: Callable[[Any, bool], Document]


ACTION_CODECS: dict[str, ActionCodec] = {}


def register_action_codec(codec: ActionCodec) -> None:
    """Add an action type to Azure's document, and its typed action to the domain."""
    ACTION_CODECS[codec.kind] = codec
    register_action_kind(codec.kind, codec.action)


def takes_timeout(codec: ActionCodec) -> bool:
    """Whether the type's messages may say how long an attempt takes (`timeout`): its typed
    action has a `timeout` field."""
    return any(item.name == "timeout" for item in dataclasses.fields(codec.action))


def _codec_of(action: SingleAction) -> ActionCodec:
    for codec in ACTION_CODECS.values():
        if isinstance(action, codec.action) and codec.kind == action.kind:
            return codec
    raise ValueError(f"{action.kind} has no codec")


# --- the whole document ----------------------------------------------------------------------

def with_secrets(definition: Mapping[str, Any], secrets: Mapping[str, str]) -> Document:
    """The public document with its secrets put back where their labels say."""
    document = copy.deepcopy(dict(definition))
    for path, value in secrets.items():
        *parents, leaf = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[leaf] = value
    return document


def decode(document: Mapping[str, Any]) -> JobDefinition:
    """The typed definition of a validated document (its secrets in it)."""
    action = document["action"]
    error = action.get("errorAction")
    start = document.get("startTime")
    recurrence = document.get("recurrence")
    return JobDefinition(
        start=_instant(start) if start else None,
        recurrence=_decode_recurrence(recurrence) if recurrence else None,
        parameters=dict(document.get("parameters") or {}),
        action=_decode_action(action),
        error_action=_decode_single(error) if error else None,
        catch_up=_decode_catch_up(document["catchUp"]) if document.get("catchUp") else None,
        concurrency_policy=overlap_policy(document.get("concurrencyPolicy")),
        run_on=tuple(node_name(name) for name in document.get("runOn") or ()),
        alerts=decode_alerts(document["alerts"]) if document.get("alerts") else None,
    )


def encode(definition: JobDefinition, secrets: bool = False) -> Document:
    """The document of a definition, as a GET answers it (`secrets`: with them)."""
    document: Document = {}
    if definition.start is not None:
        document["startTime"] = format_datetime(definition.start)
    action = _encode_action(definition.action, secrets)
    if definition.error_action is not None:
        action["errorAction"] = _encode_single(definition.error_action, secrets)
    document["action"] = action
    if definition.recurrence is not None:
        document["recurrence"] = _encode_recurrence(definition.recurrence)
    if definition.parameters:
        document["parameters"] = dict(definition.parameters)
    if definition.catch_up is not None:
        document["catchUp"] = _encode_catch_up(definition.catch_up)
    if definition.concurrency_policy is not Overlap.ALLOW:
        document["concurrencyPolicy"] = definition.concurrency_policy.value
    if definition.run_on:
        document["runOn"] = list(definition.run_on)
    if definition.alerts is not None:
        document["alerts"] = encode_alerts(definition.alerts)
    return document


def decode_alerts(document: Mapping[str, Any]) -> AlertRules:
    """The typed alert rules of a validated `alerts` document."""
    def duration(key: str) -> Duration | None:
        text = document.get(key)
        return Duration.parse(text) if text else None
    return AlertRules(frozenset(AlertEvent(event) for event in document["on"]),
                      tuple(document.get("channels") or ()),
                      int(document.get("afterConsecutive", 1)), duration("lateBy"),
                      duration("durationOver"), duration("realert"))


def encode_alerts(rules: AlertRules) -> Document:
    """The `alerts` document of typed alert rules, its events in the documented order."""
    document: Document = {"on": [event.value for event in AlertEvent if event in rules.on],
                          "channels": list(rules.channels)}
    if rules.after_consecutive != 1:
        document["afterConsecutive"] = rules.after_consecutive
    for key, value in (("lateBy", rules.late_by), ("durationOver", rules.duration_over),
                       ("realert", rules.realert)):
        if value is not None:
            document[key] = value.text
    return document


def _decode_catch_up(document: Mapping[str, Any]) -> CatchUp:
    window = document.get("window")
    return CatchUp(document["policy"], Duration.parse(window) if window else None,
                   document.get("maxRuns"))


def _encode_catch_up(policy: CatchUp) -> Document:
    document: Document = {"policy": policy.policy}
    if policy.window is not None:
        document["window"] = policy.window.text
    if policy.max_runs is not None:
        document["maxRuns"] = policy.max_runs
    return document


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- recurrence and retries ----------------------------------------------------------------

def _decode_recurrence(document: Mapping[str, Any]) -> Recurrence:
    end = document.get("endTime")
    jitter = document.get("jitter")
    return Recurrence(
        frequency=document.get("frequency", CRON), interval=int(document.get("interval", 1)),
        count=document.get("count"), end_time=_instant(end) if end else None,
        schedule=_decode_schedule(document.get("schedule") or {}),
        time_zone=document.get("timeZone", "UTC"),
        stated=frozenset(name for name, key in _STATED.items() if key in document),
        cron=document.get("cron"), jitter=Duration.parse(jitter) if jitter else None,
        exclude_calendars=tuple(document.get("excludeCalendars", ())),
    )


def _encode_recurrence(recurrence: Recurrence) -> Document:
    document: Document = ({"cron": recurrence.cron} if recurrence.cron is not None
                          else {"frequency": recurrence.frequency})
    if "interval" in recurrence.stated:
        document["interval"] = recurrence.interval
    if recurrence.count is not None:
        document["count"] = recurrence.count
    if recurrence.end_time is not None:
        document["endTime"] = format_datetime(recurrence.end_time)
    if "time_zone" in recurrence.stated:
        document["timeZone"] = recurrence.time_zone
    schedule = _encode_schedule(recurrence.schedule)
    if schedule:
        document["schedule"] = schedule
    if recurrence.jitter is not None:
        document["jitter"] = recurrence.jitter.text
    if recurrence.exclude_calendars:
        document["excludeCalendars"] = list(recurrence.exclude_calendars)
    return document


def _decode_schedule(schedule: Mapping[str, Any]) -> Schedule:
    return Schedule(
        minutes=tuple(schedule.get("minutes", ())), hours=tuple(schedule.get("hours", ())),
        week_days=tuple(schedule.get("weekDays", ())),
        month_days=tuple(schedule.get("monthDays", ())),
        monthly_occurrences=tuple(MonthlyOccurrence(item["day"], int(item["occurrence"]))
                                  for item in schedule.get("monthlyOccurrences", ())),
        months=tuple(schedule.get("months", ())),
    )


def _encode_schedule(schedule: Schedule) -> Document:
    document: Document = {}
    for key, values in (("minutes", schedule.minutes), ("hours", schedule.hours),
                        ("weekDays", schedule.week_days), ("monthDays", schedule.month_days),
                        ("months", schedule.months)):
        if values:
            document[key] = list(values)
    if schedule.monthly_occurrences:
        document["monthlyOccurrences"] = [{"day": item.day, "occurrence": item.occurrence}
                                          for item in schedule.monthly_occurrences]
    return document


def _decode_retry(policy: Mapping[str, Any] | None) -> RetryPolicy | None:
    if policy is None:
        return None
    return RetryPolicy.from_fields(policy.get("retryType"), policy.get("retryInterval"),
                                   policy.get("retryCount"), policy.get("maxRetryInterval"))


def _encode_retry(policy: RetryPolicy) -> Document:
    document: Document = {"retryType": policy.kind}
    if policy.interval is not None:
        document["retryInterval"] = policy.interval.text
    if policy.max_interval is not None:
        document["maxRetryInterval"] = policy.max_interval.text
    if policy.count is not None:
        document["retryCount"] = policy.count
    return document


# --- actions -------------------------------------------------------------------------------

def _decode_action(action: Mapping[str, Any]) -> Action:
    if action["type"] == "sequence":
        return Sequence("sequence", tuple(_decode_step(step) for step in action["steps"]),
                        _decode_retry(action.get("retryPolicy")))
    return _decode_single(action)


def _encode_action(action: Action, secrets: bool) -> Document:
    if not isinstance(action, Sequence):
        return _encode_single(action, secrets)
    document: Document = {"type": "sequence",
                          "steps": [_encode_step(step, secrets) for step in action.steps]}
    if action.retry is not None:
        document["retryPolicy"] = _encode_retry(action.retry)
    return document


def _decode_step(step: Mapping[str, Any]) -> Step:
    timeout = step.get("timeout")
    return Step(str(step["name"]), _decode_single(step["action"]),
                _decode_retry(step.get("retryPolicy")),
                Duration.parse(timeout) if timeout else None,
                step.get("pauseOnFailure"), step.get("manual"))


def _encode_step(step: Step, secrets: bool) -> Document:
    document: Document = {"name": step.name, "action": _encode_single(step.action, secrets)}
    if step.retry is not None:
        document["retryPolicy"] = _encode_retry(step.retry)
    if step.timeout is not None:
        document["timeout"] = step.timeout.text
    if step.pause_on_failure is not None:
        document["pauseOnFailure"] = step.pause_on_failure
    if step.manual is not None:
        document["manual"] = step.manual
    return document


def _decode_single(action: Mapping[str, Any]) -> SingleAction:
    kind = str(action["type"])
    codec = ACTION_CODECS[kind]
    message = action[codec.key]
    timeout = message.get("timeout") if takes_timeout(codec) else None
    if timeout is not None:
        message = {key: value for key, value in message.items() if key != "timeout"}
    typed = codec.decode(message, kind, _decode_retry(action.get("retryPolicy")))
    if timeout is not None:
        typed = dataclasses.replace(typed, timeout=Duration.parse(timeout))
    completion = action.get("completion") or {}
    if completion.get("mode") == "callback" and isinstance(typed, HttpAction):
        typed = dataclasses.replace(typed, completion=CallbackCompletion(
            Duration.parse(completion["timeout"])))
    return typed


def _encode_single(action: SingleAction, secrets: bool) -> Document:
    codec = _codec_of(action)
    message = codec.encode(action, secrets)
    timeout: Duration | None = getattr(action, "timeout", None)
    if timeout is not None:
        message["timeout"] = timeout.text
    document: Document = {"type": action.kind, codec.key: message}
    if action.retry is not None:
        document["retryPolicy"] = _encode_retry(action.retry)
    callback = callback_of(action)
    if callback is not None:  # `sync`, the default, is not written back
        document["completion"] = {"mode": "callback", "timeout": callback.timeout.text}
    return document


def decode_http(request: Document, kind: str, retry: RetryPolicy | None) -> HttpAction:
    """An `http` or `https` action from its normalised `request`."""
    return HttpAction(kind, request["method"], request["uri"],
                      dict(request.get("headers") or {}), request.get("body"),
                      _decode_authentication(request.get("authentication")), retry)


def encode_http(action: HttpAction, secrets: bool) -> Document:
    """An `http` or `https` action's `request`."""
    document: Document = {"uri": action.uri, "method": action.method}
    if action.headers:
        document["headers"] = dict(action.headers)
    if action.body is not None:
        document["body"] = action.body
    if action.authentication is not None:
        document["authentication"] = _encode_authentication(action.authentication, secrets)
    return document


def _decode_authentication(auth: Mapping[str, Any] | None) -> HttpAuthentication | None:
    if not auth:
        return None
    if auth["type"] == "Basic":
        return BasicAuthentication(auth["username"], Secret(auth["password"]))
    if auth["type"] == "ActiveDirectoryOAuth":
        return ActiveDirectoryAuthentication(auth["tenant"], auth["audience"],
                                             auth["clientId"], Secret(auth["secret"]))
    if auth["type"] == "Signature":
        previous = auth.get("previousSecret")
        return SignatureAuthentication(Secret(auth["secret"]),
                                       Secret(previous) if previous else None)
    password = auth.get("password")
    expiration = auth.get("certificateExpiration")
    return CertificateAuthentication(Secret(auth["pfx"]),
                                     Secret(password) if password else None,
                                     auth.get("certificateThumbprint", ""),
                                     auth.get("certificateSubjectName", ""),
                                     _instant(expiration) if expiration else None)


def _encode_authentication(auth: HttpAuthentication, secrets: bool) -> Document:
    if isinstance(auth, BasicAuthentication):
        document: Document = {"type": "Basic", "username": auth.username}
        if secrets:
            document["password"] = auth.password.value
        return document
    if isinstance(auth, ActiveDirectoryAuthentication):
        document = {"type": "ActiveDirectoryOAuth", "tenant": auth.tenant,
                    "audience": auth.audience, "clientId": auth.client_id}
        if secrets:
            document["secret"] = auth.secret.value
        return document
    if isinstance(auth, SignatureAuthentication):
        document = {"type": "Signature"}
        if secrets:
            document["secret"] = auth.secret.value
            if auth.previous_secret is not None:
                document["previousSecret"] = auth.previous_secret.value
        return document
    document = {"type": "ClientCertificate", "certificateThumbprint": auth.thumbprint,
                "certificateSubjectName": auth.subject}
    if auth.expiration is not None:
        document["certificateExpiration"] = format_datetime(auth.expiration)
    if secrets:
        document["pfx"] = auth.pfx.value
        if auth.password is not None:
            document["password"] = auth.password.value
    return document


def decode_storage_queue(message: Document, kind: str, retry: RetryPolicy | None
                          ) -> StorageQueueAction:
    """A `storageQueue` action from its normalised `queueMessage`."""
    return StorageQueueAction(message["storageAccount"], message["queueName"],
                              Secret(message["sasToken"]), message["message"], retry)


def encode_storage_queue(action: StorageQueueAction, secrets: bool) -> Document:
    """A `storageQueue` action's `queueMessage`."""
    document: Document = {"storageAccount": action.account, "queueName": action.queue,
                          "message": action.message}
    if secrets:
        document["sasToken"] = action.sas_token.value
    return document


def decode_service_bus(message: Document, kind: str, retry: RetryPolicy | None
                        ) -> ServiceBusAction:
    """A Service Bus action from its normalised message."""
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


def encode_service_bus(action: ServiceBusAction, secrets: bool) -> Document:
    """A Service Bus action's message."""
    target = "topicPath" if action.kind == "serviceBusTopic" else "queueName"
    document: Document = {"namespace": action.namespace, target: action.entity,
                          "message": action.message}
    if action.transport_type is not None:
        document["transportType"] = action.transport_type
    auth: Document = {"sasKeyName": action.sas_key_name, "type": "SharedAccessKey"}
    if secrets:
        auth["sasKey"] = action.sas_key.value
    document["authentication"] = auth
    brokered: Document = {}
    if action.content_type is not None:
        brokered["contentType"] = action.content_type
    brokered.update({_BROKERED_KEYS[name]: value
                     for name, value in action.broker_properties.items()})
    if brokered:
        document["brokeredMessageProperties"] = brokered
    if action.custom_properties:
        document["customMessageProperties"] = dict(action.custom_properties)
    return document


def decode_amqp(message: Document, kind: str, retry: RetryPolicy | None) -> AmqpAction:
    """An `amqp` action from its normalised `amqpMessage`."""
    return AmqpAction(message["broker"], message.get("exchange") or "", message["routingKey"],
                      message["message"], retry, dict(message.get("headers") or {}))


def encode_amqp(action: AmqpAction, secrets: bool) -> Document:
    """An `amqp` action's `amqpMessage`."""
    document: Document = {"broker": action.broker, "exchange": action.exchange,
                          "routingKey": action.routing_key, "message": action.message}
    if action.headers:
        document["headers"] = dict(action.headers)
    return document


def decode_redis(message: Document, kind: str, retry: RetryPolicy | None) -> RedisAction:
    """A `redis` action from its normalised `redisMessage`."""
    return RedisAction(message["broker"], message["stream"], message["message"], retry)


def encode_redis(action: RedisAction, secrets: bool) -> Document:
    """A `redis` action's `redisMessage`."""
    return {"broker": action.broker, "stream": action.stream, "message": action.message}
