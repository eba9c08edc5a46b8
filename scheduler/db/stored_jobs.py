"""The stored form of a job: the domain's typed definition as the project's own versioned
document (`"v": 1`, snake_case), and its secrets apart, for sealing.

Only this module reads or writes a stored job's JSON. Each secret field is stored as a
reference, `{"sealed": NAME}`, to an entry of the sealed secrets; a name is the field's place
in this document (`action.authentication.password`), never a wire format's label, so that
rewording an API error or renaming a wire field leaves stored secrets where they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Protocol

from cryptography.fernet import InvalidToken

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
from scheduler.domain.recurrence import MonthlyOccurrence, Recurrence, Schedule
from scheduler.domain.retry import RetryPolicy

VERSION = 1
Document = dict[str, Any]


class StoredJobError(ValueError):
    """A stored job document this version cannot read (another version, a missing secret)."""


class SealedSecretsError(Exception):
    """A stored job's secrets do not open with the keys at hand."""


# What each secret field holds when a job is read without opening its secrets (for what a
# GET shows, which never includes them).
UNOPENED = Secret("")
_UNOPENED: Mapping[str, str] = MappingProxyType({})  # the secrets of a job read so


class Sealer(Protocol):
    """What seals and opens a job's secrets: the home's `SecretBox`."""

    def seal(self, secrets: dict[str, str]) -> bytes | None:
        """The secrets sealed; None if there are none."""

    def open(self, sealed: bytes | None) -> dict[str, str]:
        """The secrets a sealed value holds."""


class _Dumper:
    """Turns typed values into the stored document, collecting the secrets by name."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}

    def secret(self, value: Secret, name: str) -> Document:
        self.secrets[name] = value.value
        return {"sealed": name}


class _Loader:
    """Reads the stored document back, taking each secret from the opened ones."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self.secrets = secrets

    def secret(self, value: Document) -> Secret:
        name = value["sealed"]
        if self.secrets is _UNOPENED:
            return UNOPENED
        if name not in self.secrets:
            raise StoredJobError(f"the secret {name} is not among the job's sealed secrets")
        return Secret(self.secrets[name])

    def optional_secret(self, value: Document | None) -> Secret | None:
        """A secret that may be absent: a reference marked `optional` (as the migration from
        the wire form writes where it could not tell) to a name no sealed secret has."""
        if value is None or (value.get("optional") and self.secrets is not _UNOPENED
                             and value["sealed"] not in self.secrets):
            return None
        return self.secret(value)


def dump_definition(definition: JobDefinition) -> tuple[str, dict[str, str]]:
    """A definition's stored document (compact JSON) and its secrets, by name."""
    dumper = _Dumper()
    document: Document = {
        "v": VERSION,
        "start": _instant(definition.start),
        "recurrence": _dump_recurrence(definition.recurrence),
        "parameters": dict(definition.parameters),
        "action": _dump_action(definition.action, "action", dumper),
        "error_action": None if definition.error_action is None else
        _dump_action(definition.error_action, "error_action", dumper),
    }
    return json.dumps(document, separators=(",", ":")), dumper.secrets


def load_definition(text: str, secrets: Mapping[str, str]) -> JobDefinition:
    """The definition a stored document and its opened secrets make; `StoredJobError` if it
    does not read (its message names the kind of fault, never a value)."""
    document = _document(text)
    loader = _Loader(secrets)
    try:
        error = document["error_action"]
        return JobDefinition(
            start=_read_instant(document["start"]),
            recurrence=_load_recurrence(document["recurrence"]),
            parameters=document["parameters"],
            action=_load_action(document["action"], loader),
            error_action=None if error is None else _load_single(error, loader),
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, StoredJobError):
            raise
        missing = f" (no {exc.args[0]!r})" if isinstance(exc, KeyError) else ""
        raise StoredJobError(f"the stored job does not read: {type(exc).__name__}{missing}"
                             ) from None


def seal_definition(definition: JobDefinition, box: Sealer) -> tuple[str, bytes | None]:
    """A definition's stored document and its secrets sealed with the box (None if it has
    none): the two columns a job or an inline run keeps it in."""
    text, secrets = dump_definition(definition)
    return text, box.seal(secrets)


def open_definition(text: str, sealed: bytes | None, box: Sealer) -> JobDefinition:
    """The definition of a stored document, its sealed secrets opened with the box;
    `SealedSecretsError` if they do not open, `StoredJobError` if the document does not
    read."""
    try:
        secrets = box.open(sealed) if sealed else {}
    except InvalidToken:
        raise SealedSecretsError("the secrets do not open with this home's keys") from None
    return load_definition(text, secrets)


def public_definition(text: str) -> JobDefinition:
    """The definition of a stored document with its secrets left sealed: each secret field
    holds `UNOPENED`. For what is shown of a job, which never includes its secrets."""
    return load_definition(text, _UNOPENED)


def stored_schedule(text: str) -> tuple[datetime | None, Recurrence | None]:
    """Only the start time and recurrence of a stored document."""
    document = _document(text)
    return _read_instant(document["start"]), _load_recurrence(document["recurrence"])


def fire_time_from(definition: str, created: datetime, executed: int, now: datetime,
                   stored: datetime | None) -> datetime | None:
    """A job's first fire time from `now` on, those passed meanwhile skipped (a job enabled
    or started again replays nothing); `stored` when it has not passed, or when the stored
    definition no longer reads (its next tick faults the job)."""
    if stored is None or stored >= now:
        return stored
    try:
        start, recurrence = stored_schedule(definition)
    except Exception:
        return stored
    return next(upcoming(recurrence, start, created, now, executed), None)


def _document(text: str) -> Document:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise StoredJobError(f"the stored job is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("v") != VERSION:
        raise StoredJobError(f"the stored job is not a version {VERSION} document")
    return document


# --- times ---------------------------------------------------------------------------------

def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _read_instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _duration(value: Duration | None) -> Document | None:
    """A duration as whole microseconds (exact, where seconds as a float are not) and the
    text the job wrote it as."""
    if value is None:
        return None
    return {"us": value.value // timedelta(microseconds=1), "text": value.text}


def _read_duration(value: Document | None) -> Duration | None:
    if value is None:
        return None
    return Duration(timedelta(microseconds=value["us"]), value["text"])


# --- recurrence and retries ----------------------------------------------------------------

def _dump_recurrence(recurrence: Recurrence | None) -> Document | None:
    if recurrence is None:
        return None
    schedule = recurrence.schedule
    return {
        "frequency": recurrence.frequency, "interval": recurrence.interval,
        "count": recurrence.count, "end_time": _instant(recurrence.end_time),
        "time_zone": recurrence.time_zone, "stated": sorted(recurrence.stated),
        "schedule": {
            "minutes": list(schedule.minutes), "hours": list(schedule.hours),
            "week_days": list(schedule.week_days), "month_days": list(schedule.month_days),
            "monthly_occurrences": [[item.day, item.occurrence]
                                    for item in schedule.monthly_occurrences],
            "months": list(schedule.months),
        },
    }


def _load_recurrence(document: Document | None) -> Recurrence | None:
    if document is None:
        return None
    schedule = document["schedule"]
    return Recurrence(
        frequency=document["frequency"], interval=document["interval"],
        count=document["count"], end_time=_read_instant(document["end_time"]),
        schedule=Schedule(
            minutes=tuple(schedule["minutes"]), hours=tuple(schedule["hours"]),
            week_days=tuple(schedule["week_days"]), month_days=tuple(schedule["month_days"]),
            monthly_occurrences=tuple(MonthlyOccurrence(day, occurrence)
                                      for day, occurrence in schedule["monthly_occurrences"]),
            months=tuple(schedule["months"]),
        ),
        time_zone=document["time_zone"], stated=frozenset(document["stated"]),
    )


def _dump_retry(policy: RetryPolicy | None) -> Document | None:
    if policy is None:
        return None
    return {"kind": policy.kind, "interval": _duration(policy.interval),
            "count": policy.count, "max_interval": _duration(policy.max_interval)}


def _load_retry(document: Document | None) -> RetryPolicy | None:
    if document is None:
        return None
    return RetryPolicy(document["kind"], _read_duration(document["interval"]),
                       document["count"], _read_duration(document["max_interval"]))


# --- actions -------------------------------------------------------------------------------

def _dump_action(action: Action, name: str, dumper: _Dumper) -> Document:
    if isinstance(action, Sequence):
        return {"kind": action.kind, "retry": _dump_retry(action.retry),
                "steps": [_dump_step(step, f"{name}.steps.{index}", dumper)
                          for index, step in enumerate(action.steps)]}
    return _dump_single(action, name, dumper)


def _dump_step(step: Step, name: str, dumper: _Dumper) -> Document:
    return {"name": step.name, "action": _dump_single(step.action, f"{name}.action", dumper),
            "retry": _dump_retry(step.retry), "timeout": _duration(step.timeout),
            "pause_on_failure": step.pause_on_failure, "manual": step.manual}


def _load_action(document: Document, loader: _Loader) -> Action:
    if document["kind"] == "sequence":
        return Sequence("sequence", tuple(_load_step(step, loader)
                                          for step in document["steps"]),
                        _load_retry(document["retry"]))
    return _load_single(document, loader)


def _load_step(document: Document, loader: _Loader) -> Step:
    return Step(document["name"], _load_single(document["action"], loader),
                _load_retry(document["retry"]), _read_duration(document["timeout"]),
                document["pause_on_failure"], document["manual"])


def _dump_single(action: SingleAction, name: str, dumper: _Dumper) -> Document:
    fields = _DUMPERS[type(action)](action, name, dumper)
    return {"kind": action.kind, **fields, "retry": _dump_retry(action.retry)}


def _load_single(document: Document, loader: _Loader) -> SingleAction:
    kind = document["kind"]
    load = _LOADERS.get(kind)
    if load is None:
        raise StoredJobError(f"{kind} is not an action type this version stores")
    return load(document, loader, _load_retry(document["retry"]))


def _dump_http(action: HttpAction, name: str, dumper: _Dumper) -> Document:
    return {"method": action.method, "uri": action.uri, "headers": dict(action.headers),
            "body": action.body, "authentication":
            _dump_authentication(action.authentication, f"{name}.authentication", dumper)}


def _load_http(document: Document, loader: _Loader, retry: RetryPolicy | None) -> HttpAction:
    return HttpAction(document["kind"], document["method"], document["uri"],
                      document["headers"], document["body"],
                      _load_authentication(document["authentication"], loader), retry)


def _dump_authentication(auth: HttpAuthentication | None, name: str, dumper: _Dumper
                         ) -> Document | None:
    if isinstance(auth, BasicAuthentication):
        return {"kind": "basic", "username": auth.username,
                "password": dumper.secret(auth.password, f"{name}.password")}
    if isinstance(auth, CertificateAuthentication):
        return {"kind": "client_certificate", "pfx": dumper.secret(auth.pfx, f"{name}.pfx"),
                "password": None if auth.password is None else
                dumper.secret(auth.password, f"{name}.password"),
                "thumbprint": auth.thumbprint, "subject": auth.subject,
                "expiration": _instant(auth.expiration)}
    if isinstance(auth, ActiveDirectoryAuthentication):
        return {"kind": "active_directory", "tenant": auth.tenant, "audience": auth.audience,
                "client_id": auth.client_id,
                "secret": dumper.secret(auth.secret, f"{name}.secret")}
    return None


def _load_authentication(document: Document | None, loader: _Loader
                         ) -> HttpAuthentication | None:
    if document is None:
        return None
    if document["kind"] == "basic":
        return BasicAuthentication(document["username"], loader.secret(document["password"]))
    if document["kind"] == "client_certificate":
        return CertificateAuthentication(loader.secret(document["pfx"]),
                                         loader.optional_secret(document["password"]),
                                         document["thumbprint"], document["subject"],
                                         _read_instant(document["expiration"]))
    return ActiveDirectoryAuthentication(document["tenant"], document["audience"],
                                         document["client_id"],
                                         loader.secret(document["secret"]))


def _dump_storage_queue(action: StorageQueueAction, name: str, dumper: _Dumper) -> Document:
    return {"account": action.account, "queue": action.queue,
            "sas_token": dumper.secret(action.sas_token, f"{name}.sas_token"),
            "message": action.message}


def _load_storage_queue(document: Document, loader: _Loader, retry: RetryPolicy | None
                        ) -> StorageQueueAction:
    return StorageQueueAction(document["account"], document["queue"],
                              loader.secret(document["sas_token"]), document["message"], retry)


def _dump_service_bus(action: ServiceBusAction, name: str, dumper: _Dumper) -> Document:
    return {"namespace": action.namespace, "entity": action.entity, "message": action.message,
            "sas_key_name": action.sas_key_name,
            "sas_key": dumper.secret(action.sas_key, f"{name}.sas_key"),
            "transport_type": action.transport_type, "content_type": action.content_type,
            "broker_properties": dict(action.broker_properties),
            "custom_properties": dict(action.custom_properties)}


def _load_service_bus(document: Document, loader: _Loader, retry: RetryPolicy | None
                      ) -> ServiceBusAction:
    return ServiceBusAction(
        document["kind"], document["namespace"], document["entity"], document["message"],
        document["sas_key_name"], loader.secret(document["sas_key"]), retry,
        document["transport_type"], document["content_type"], document["broker_properties"],
        document["custom_properties"])


def _dump_amqp(action: AmqpAction, name: str, dumper: _Dumper) -> Document:
    return {"broker": action.broker, "exchange": action.exchange,
            "routing_key": action.routing_key, "message": action.message,
            "headers": dict(action.headers)}


def _load_amqp(document: Document, loader: _Loader, retry: RetryPolicy | None) -> AmqpAction:
    return AmqpAction(document["broker"], document["exchange"], document["routing_key"],
                      document["message"], retry, document["headers"])


def _dump_redis(action: RedisAction, name: str, dumper: _Dumper) -> Document:
    return {"broker": action.broker, "stream": action.stream, "message": action.message}


def _load_redis(document: Document, loader: _Loader, retry: RetryPolicy | None) -> RedisAction:
    return RedisAction(document["broker"], document["stream"], document["message"], retry)


# One entry per action type: how its typed action is stored, and read back.
_DUMPERS: dict[type, Callable[[Any, str, _Dumper], Document]] = {
    HttpAction: _dump_http, StorageQueueAction: _dump_storage_queue,
    ServiceBusAction: _dump_service_bus, AmqpAction: _dump_amqp, RedisAction: _dump_redis,
}
_LOADERS: dict[str, Callable[[Document, _Loader, RetryPolicy | None], SingleAction]] = {
    "http": _load_http, "https": _load_http, "storageQueue": _load_storage_queue,
    "serviceBusQueue": _load_service_bus, "serviceBusTopic": _load_service_bus,
    "amqp": _load_amqp, "redis": _load_redis,
}
