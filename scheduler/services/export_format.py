"""The export file that moves a home: one versioned JSON document of what a home holds, in
the project's own forms (a job is its stored definition, `db.stored_jobs`' version 1
document), never table rows; its secrets sealed with a key derived from a passphrase.

`write_export` turns a `HomeExport` into the document's text and `read_export` reads it
back, opening every sealed value first, so that a wrong passphrase or a file this version
cannot read is refused before anything is written anywhere. The format is described in
docs/export-format.md.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from scheduler.db.alerts import load_rules
from scheduler.db.stored_calendars import stored_calendar
from scheduler.db.stored_channels import StoredChannelError, load_channel, stored_form
from scheduler.db.stored_jobs import StoredJobError, definition_document, load_document
from scheduler.domain.jobs import JobDefinition
from scheduler.domain.notifications import Channel
from scheduler.security import pki

FORMAT = "scheduler-export"
VERSION = 1
# scrypt's cost: 2**15 rounds of 8 blocks, 32 MiB and a fraction of a second per derivation,
# the parameters the file records so that a later version reads it whatever its defaults.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SALT_BYTES = 16
# What the file's passphrase check seals: a wrong passphrase is told from a damaged file.
CHECK_TEXT = "scheduler export passphrase check"
# A service principal's secret hash: SHA-256, lower-case hex.
SECRET_HASH_LENGTH = 64
HEX_DIGITS = "0123456789abcdef"

Document = dict[str, Any]
T = TypeVar("T")


class ExportFormatError(ValueError):
    """A file this version cannot read: not an export, another version, or damaged."""


class PassphraseError(ExportFormatError):
    """The passphrase given does not open the file's secrets, or none was given for a file
    that needs one."""


# --- what a home holds, as the file carries it ---------------------------------------------

@dataclass(frozen=True)
class HomeKeys:
    """The home's CA and server certificate with their keys, as PEM: clients keep trusting
    the server with the CA file they have."""

    ca_certificate: bytes
    ca_key: bytes
    server_certificate: bytes  # the server's certificate followed by the CA's, as `init` writes
    server_key: bytes


@dataclass(frozen=True)
class MovedCertificate:
    """A management certificate registered to a subscription."""

    thumbprint: str
    der: bytes
    not_after: datetime
    created_at: datetime


@dataclass(frozen=True)
class MovedRevocation:
    """A certificate unregistered from a subscription, remembered as revoked."""

    thumbprint: str
    revoked_at: datetime


@dataclass(frozen=True)
class MovedPrincipal:
    """A service principal of a subscription: its client id, name and the SHA-256 of its
    secret in hex (the secret itself is kept nowhere)."""

    client_id: str
    name: str
    secret_hash: str
    created_at: datetime


@dataclass(frozen=True)
class MovedHistoryEntry:
    """One entry of a job's history."""

    timestamp: datetime
    start_time: datetime
    end_time: datetime | None
    expected_execution_time: datetime | None
    state: str
    status: str
    action_name: str
    message: str
    retry_count: int
    repeat_count: int
    execution_id: str | None
    step_index: int | None
    step_name: str | None


@dataclass(frozen=True)
class MovedExecution:
    """One execution of a job, or a run of an inline definition (which carries its own
    `definition`). `steps`, `parameters` and `output` are carried as the text they are."""

    id: str
    scheduled_time: datetime
    trigger: str
    status: str
    revision: int
    action_name: str
    attempt: int
    attempts: int
    step: int | None
    steps: str | None
    repeat_count: int
    next_attempt_at: datetime | None
    node: str | None
    parameters: str | None
    output: str | None
    message: str | None
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    definition: JobDefinition | None = None
    # The only nodes that may run it, in the stored form (`,a,b,`); None: any node.
    run_on: str | None = None


@dataclass(frozen=True)
class MovedJob:
    """A job: its definition, state, counters and schedule, and what ran of it."""

    job_id: str
    definition: JobDefinition
    state: str
    state_details: str | None
    etag: str
    created_at: datetime
    updated_at: datetime
    next_execution_time: datetime | None
    last_execution_time: datetime | None
    execution_count: int
    failure_count: int
    faulted_count: int
    history: list[MovedHistoryEntry] = field(default_factory=list)
    executions: list[MovedExecution] = field(default_factory=list)
    # Who last set its state through the API or the dashboard, when, and the note given.
    state_note: str | None = None
    state_changed_by: str | None = None
    state_changed_at: datetime | None = None
    # Disabled, when the engine enables it again; None: not until someone does.
    disabled_until: datetime | None = None


@dataclass(frozen=True)
class MovedCalendar:
    """An exclusion calendar of a collection, as stored (`db.stored_calendars`)."""

    name: str
    document: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MovedChannel:
    """A notification channel of a collection, its secrets opened."""

    channel: Channel
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MovedCollection:
    """A job collection with its plan, quota, state and jobs, and its inline runs; with
    Resource Manager's view of it, whether its jobs were disabled through a disable (it reads
    `Disabled`) and its tags."""

    name: str
    label: str
    plan: str
    max_job_count: int | None
    max_job_occurrence: int | None
    max_recurrence_frequency: str | None
    max_recurrence_interval: int | None
    state: str
    lifecycle: str
    last_operation: str
    etag: str
    created_at: datetime
    updated_at: datetime
    jobs: list[MovedJob] = field(default_factory=list)
    inline_runs: list[MovedExecution] = field(default_factory=list)
    jobs_disabled: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    calendars: list[MovedCalendar] = field(default_factory=list)
    channels: list[MovedChannel] = field(default_factory=list)
    # Its default alert rules, as stored (`db.alerts.dump_rules`); None: it has none.
    default_alerts: str | None = None


@dataclass(frozen=True)
class MovedCloudService:
    """A cloud service and its job collections."""

    name: str
    label: str
    description: str
    geo_region: str
    email: str | None
    lifecycle: str
    etag: str
    created_at: datetime
    collections: list[MovedCollection] = field(default_factory=list)


@dataclass(frozen=True)
class MovedSubscription:
    """A subscription, by its id, with its certificates, cloud services and service
    principals."""

    id: str
    name: str
    created_at: datetime
    certificates: list[MovedCertificate] = field(default_factory=list)
    revoked: list[MovedRevocation] = field(default_factory=list)
    cloud_services: list[MovedCloudService] = field(default_factory=list)
    principals: list[MovedPrincipal] = field(default_factory=list)


@dataclass(frozen=True)
class HomeExport:
    """Everything an export file carries. `home_subscription` is the subscription the
    exported home's admin certificate belongs to (None if it belongs to none)."""

    exported_at: datetime
    with_history: bool
    keys: HomeKeys
    home_subscription: str | None
    subscriptions: list[MovedSubscription]


# --- sealing -------------------------------------------------------------------------------

class PassphraseSealer:
    """Seals values with a Fernet key derived from a passphrase by scrypt, with a salt of
    the file's own."""

    def __init__(self, passphrase: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R,
                 p: int = SCRYPT_P) -> None:
        if not passphrase:
            raise PassphraseError("the passphrase is empty")
        self.salt, self.n, self.r, self.p = salt, n, r, p
        key = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
        self.fernet = Fernet(base64.urlsafe_b64encode(key))

    @classmethod
    def new(cls, passphrase: str) -> PassphraseSealer:
        """A sealer with a fresh random salt, for a new file."""
        return cls(passphrase, os.urandom(SALT_BYTES))

    def seal(self, value: str) -> Document:
        """A value sealed, as the file holds it."""
        return {"sealed": self.fernet.encrypt(value.encode()).decode()}

    def open_text(self, token: str) -> str:
        """What a sealed value holds; PassphraseError if this key did not seal it."""
        try:
            return self.fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise PassphraseError("the passphrase does not open the file's secrets") from None

    def description(self) -> Document:
        """How the key is derived, and a check that tells a wrong passphrase at once."""
        return {"sealed_with": "passphrase", "kdf": "scrypt",
                "salt": base64.b64encode(self.salt).decode(), "n": self.n, "r": self.r,
                "p": self.p, "check": self.seal(CHECK_TEXT)["sealed"]}


class ClearSealer:
    """Leaves values in clear (`--clear-secrets`)."""

    def seal(self, value: str) -> Document:
        """A value in clear, as the file holds it."""
        return {"clear": value}

    @staticmethod
    def description() -> Document:
        """What the file says of its secrets."""
        return {"sealed_with": "nothing"}


Sealer = PassphraseSealer | ClearSealer


def opener_for(description: Document, passphrase: str | None) -> Callable[[Any], str]:
    """What opens a file's values, given its `secrets` description and the passphrase;
    PassphraseError when the passphrase is missing or wrong."""
    kind = description.get("sealed_with")
    if kind == "nothing":
        return _open_clear
    if kind != "passphrase" or description.get("kdf") != "scrypt":
        raise ExportFormatError(f"the file's secrets are sealed in a way this version does "
                                f"not know ({kind!r})")
    if passphrase is None:
        raise PassphraseError("the file's secrets are sealed with a passphrase: give the "
                              "passphrase file the export was made with (--passphrase-file)")
    sealer = PassphraseSealer(passphrase, base64.b64decode(description["salt"]),
                              int(description["n"]), int(description["r"]),
                              int(description["p"]))
    if sealer.open_text(description["check"]) != CHECK_TEXT:
        raise PassphraseError("the passphrase does not open the file's secrets")

    def open_value(value: Any) -> str:
        if "sealed" in value:
            return sealer.open_text(value["sealed"])
        return _open_clear(value)
    return open_value


def _open_clear(value: Any) -> str:
    if "clear" not in value:
        raise PassphraseError("the file holds a sealed value but says its secrets are clear")
    text: str = value["clear"]
    return text


# --- writing -------------------------------------------------------------------------------

def write_export(export: HomeExport, sealer: Sealer) -> str:
    """The export file's text: the document, indented for people, secrets sealed."""
    keys = export.keys
    document: Document = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": _instant(export.exported_at),
        "with_history": export.with_history,
        "secrets": sealer.description(),
        "home": {
            "subscription_id": export.home_subscription,
            "ca_certificate": keys.ca_certificate.decode(),
            "ca_key": sealer.seal(keys.ca_key.decode()),
            "server_certificate": keys.server_certificate.decode(),
            "server_key": sealer.seal(keys.server_key.decode()),
        },
        "subscriptions": [_subscription(s, sealer) for s in export.subscriptions],
    }
    return json.dumps(document, indent=1) + "\n"


def _subscription(subscription: MovedSubscription, sealer: Sealer) -> Document:
    return {
        "id": subscription.id, "name": subscription.name,
        "created_at": _instant(subscription.created_at),
        "certificates": [{
            "thumbprint": c.thumbprint, "der": base64.b64encode(c.der).decode(),
            "not_after": _instant(c.not_after), "created_at": _instant(c.created_at),
        } for c in subscription.certificates],
        "revoked_certificates": [{"thumbprint": r.thumbprint,
                                  "revoked_at": _instant(r.revoked_at)}
                                 for r in subscription.revoked],
        # The secret's hash is sealed as the other credentials are: see
        # docs/export-format.md.
        "service_principals": [{
            "client_id": p.client_id, "name": p.name,
            "secret_hash": sealer.seal(p.secret_hash), "created_at": _instant(p.created_at),
        } for p in subscription.principals],
        "cloud_services": [{
            "name": s.name, "label": s.label, "description": s.description,
            "geo_region": s.geo_region, "email": s.email, "lifecycle": s.lifecycle,
            "etag": s.etag, "created_at": _instant(s.created_at),
            "collections": [_collection(c, sealer) for c in s.collections],
        } for s in subscription.cloud_services],
    }


def _collection(collection: MovedCollection, sealer: Sealer) -> Document:
    return {
        "name": collection.name, "label": collection.label, "plan": collection.plan,
        "quota": {"max_job_count": collection.max_job_count,
                  "max_job_occurrence": collection.max_job_occurrence,
                  "max_recurrence_frequency": collection.max_recurrence_frequency,
                  "max_recurrence_interval": collection.max_recurrence_interval},
        "state": collection.state, "jobs_disabled": collection.jobs_disabled,
        "tags": dict(collection.tags), "lifecycle": collection.lifecycle,
        "last_operation": collection.last_operation, "etag": collection.etag,
        "created_at": _instant(collection.created_at),
        "updated_at": _instant(collection.updated_at),
        "calendars": [{"name": calendar.name, "document": json.loads(calendar.document),
                       "created_at": _instant(calendar.created_at),
                       "updated_at": _instant(calendar.updated_at)}
                      for calendar in collection.calendars],
        "channels": [_channel(moved, sealer) for moved in collection.channels],
        "default_alerts": (json.loads(collection.default_alerts)
                           if collection.default_alerts is not None else None),
        "jobs": [_job(job, sealer) for job in collection.jobs],
        "inline_runs": [_execution(run, sealer) for run in collection.inline_runs],
    }


def _channel(moved: MovedChannel, sealer: Sealer) -> Document:
    """A channel as its stored document, and its secrets, sealed, apart."""
    text, secrets = stored_form(moved.channel)
    return {"name": moved.channel.name, "document": json.loads(text),
            "secrets": sealer.seal(json.dumps(secrets)) if secrets else None,
            "created_at": _instant(moved.created_at), "updated_at": _instant(moved.updated_at)}


def _job(job: MovedJob, sealer: Sealer) -> Document:
    document: Document = {
        "id": job.job_id, "state": job.state, "state_details": job.state_details,
        "etag": job.etag, "created_at": _instant(job.created_at),
        "updated_at": _instant(job.updated_at),
        "next_execution_time": _instant(job.next_execution_time),
        "last_execution_time": _instant(job.last_execution_time),
        "execution_count": job.execution_count, "failure_count": job.failure_count,
        "faulted_count": job.faulted_count,
    }
    for name, value in (("state_note", job.state_note),
                        ("state_changed_by", job.state_changed_by),
                        ("state_changed_at", _instant(job.state_changed_at)),
                        ("disabled_until", _instant(job.disabled_until))):
        if value is not None:  # optional members: files without them read as never set
            document[name] = value
    document.update(_definition(job.definition, sealer))
    document["history"] = [_history(entry) for entry in job.history]
    document["executions"] = [_execution(execution, sealer) for execution in job.executions]
    return document


def _definition(definition: JobDefinition, sealer: Sealer) -> Document:
    """A definition as its stored document, and its secrets, sealed, apart."""
    stored, secrets = definition_document(definition)
    return {"definition": stored,
            "secrets": sealer.seal(json.dumps(secrets)) if secrets else None}


def _history(entry: MovedHistoryEntry) -> Document:
    return {
        "timestamp": _instant(entry.timestamp), "start_time": _instant(entry.start_time),
        "end_time": _instant(entry.end_time),
        "expected_execution_time": _instant(entry.expected_execution_time),
        "state": entry.state, "status": entry.status, "action_name": entry.action_name,
        "message": entry.message, "retry_count": entry.retry_count,
        "repeat_count": entry.repeat_count, "execution_id": entry.execution_id,
        "step_index": entry.step_index, "step_name": entry.step_name,
    }


def _execution(execution: MovedExecution, sealer: Sealer) -> Document:
    document: Document = {
        "id": execution.id, "scheduled_time": _instant(execution.scheduled_time),
        "trigger": execution.trigger, "status": execution.status,
        "revision": execution.revision, "action_name": execution.action_name,
        "attempt": execution.attempt, "attempts": execution.attempts,
        "step": execution.step, "steps": execution.steps,
        "repeat_count": execution.repeat_count,
        "next_attempt_at": _instant(execution.next_attempt_at), "node": execution.node,
        "parameters": execution.parameters, "output": execution.output,
        "message": execution.message, "created_at": _instant(execution.created_at),
        "start_time": _instant(execution.start_time),
        "end_time": _instant(execution.end_time),
    }
    if execution.run_on is not None:
        document["run_on"] = execution.run_on
    if execution.definition is not None:
        document.update(_definition(execution.definition, sealer))
    return document


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


# --- reading -------------------------------------------------------------------------------

def read_export(text: str, passphrase: str | None) -> HomeExport:
    """The home a file carries, every secret opened and every job definition read;
    ExportFormatError (PassphraseError for the passphrase) if it cannot be."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ExportFormatError(f"the file is not JSON: {exc}") from None
    check_format(document)
    try:
        open_value = opener_for(document["secrets"], passphrase)
        return _read_home(document, _Reader(open_value))
    except ExportFormatError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        missing = f" (no {exc.args[0]!r})" if isinstance(exc, KeyError) else ""
        raise ExportFormatError(f"the file does not read as a version {VERSION} export: "
                                f"{type(exc).__name__}{missing}") from None


def check_format(document: Any) -> None:
    """Refuse a document that is not an export of a version this one reads."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ExportFormatError(f"the file is not a scheduler export (its \"format\" is not "
                                f"{FORMAT!r})")
    if document.get("version") != VERSION:
        raise ExportFormatError(f"the file is an export of version "
                                f"{document.get('version')!r}; this version of scheduler "
                                f"reads version {VERSION}")


class _Reader:
    """Reads the document's parts, opening sealed values."""

    def __init__(self, open_value: Callable[[Any], str]) -> None:
        self.open_value = open_value

    def channel(self, document: Document, where: str) -> MovedChannel:
        """A channel, its secrets opened; it must read as this version stores channels."""
        name = _text(document["name"])
        sealed = document["secrets"]
        secrets = {} if sealed is None else json.loads(self.open_value(sealed))
        try:
            channel = load_channel(name, json.dumps(document["document"]), secrets)
        except StoredChannelError as exc:
            raise ExportFormatError(f"{where}: {exc}") from None
        return MovedChannel(channel, _read_instant(document["created_at"]),
                            _read_instant(document["updated_at"]))

    def definition(self, document: Document, where: str) -> JobDefinition:
        sealed = document["secrets"]
        secrets = {} if sealed is None else json.loads(self.open_value(sealed))
        try:
            return load_document(document["definition"], secrets)
        except StoredJobError as exc:
            raise ExportFormatError(f"{where}: {exc}") from None


def _read_home(document: Document, reader: _Reader) -> HomeExport:
    home = document["home"]
    keys = HomeKeys(home["ca_certificate"].encode(), reader.open_value(home["ca_key"]).encode(),
                    home["server_certificate"].encode(),
                    reader.open_value(home["server_key"]).encode())
    return HomeExport(_read_instant(document["exported_at"]), bool(document["with_history"]),
                      keys, home["subscription_id"],
                      [_read_subscription(s, reader) for s in document["subscriptions"]])


def _read_subscription(document: Document, reader: _Reader) -> MovedSubscription:
    return MovedSubscription(
        id=_text(document["id"]), name=_text(document["name"]),
        created_at=_read_instant(document["created_at"]),
        certificates=[_read_certificate(c) for c in document["certificates"]],
        revoked=[MovedRevocation(_text(r["thumbprint"]), _read_instant(r["revoked_at"]))
                 for r in document["revoked_certificates"]],
        cloud_services=[_read_cloud_service(s, reader) for s in document["cloud_services"]],
        # Absent from files made before service principals were moved.
        principals=[_read_principal(p, reader)
                    for p in document.get("service_principals", [])],
    )


def _read_principal(document: Document, reader: _Reader) -> MovedPrincipal:
    """A service principal, whose secret hash must be a SHA-256 in lower-case hex."""
    client_id = _text(document["client_id"])
    secret_hash = reader.open_value(document["secret_hash"])
    if len(secret_hash) != SECRET_HASH_LENGTH or not set(secret_hash) <= set(HEX_DIGITS):
        raise ExportFormatError(f"the service principal {client_id}'s secret hash is not a "
                                "SHA-256 in hex: the file was changed")
    return MovedPrincipal(client_id, _text(document["name"]), secret_hash,
                          _read_instant(document["created_at"]))


def _read_certificate(document: Document) -> MovedCertificate:
    """A management certificate, whose thumbprint must be its certificate's."""
    der = base64.b64decode(document["der"], validate=True)
    thumbprint = _text(document["thumbprint"])
    if pki.thumbprint_of_der(der) != thumbprint:
        raise ExportFormatError(f"the certificate {thumbprint} is not the one its thumbprint "
                                "names: the file was changed")
    return MovedCertificate(thumbprint, der, _read_instant(document["not_after"]),
                            _read_instant(document["created_at"]))


def _read_cloud_service(document: Document, reader: _Reader) -> MovedCloudService:
    return MovedCloudService(
        name=_text(document["name"]), label=_text(document["label"]),
        description=_text(document["description"]), geo_region=_text(document["geo_region"]),
        email=_optional(document["email"], str), lifecycle=_text(document["lifecycle"]),
        etag=_text(document["etag"]), created_at=_read_instant(document["created_at"]),
        collections=[_read_collection(c, reader, f"{document['name']}/{c['name']}")
                     for c in document["collections"]],
    )


def _read_collection(document: Document, reader: _Reader, where: str) -> MovedCollection:
    quota = document["quota"]
    return MovedCollection(
        name=_text(document["name"]), label=_text(document["label"]),
        plan=_text(document["plan"]),
        max_job_count=_optional(quota["max_job_count"], int),
        max_job_occurrence=_optional(quota["max_job_occurrence"], int),
        max_recurrence_frequency=_optional(quota["max_recurrence_frequency"], str),
        max_recurrence_interval=_optional(quota["max_recurrence_interval"], int),
        state=_text(document["state"]), lifecycle=_text(document["lifecycle"]),
        last_operation=_text(document["last_operation"]), etag=_text(document["etag"]),
        # Both absent from files made before Resource Manager's view was moved: Enabled,
        # without tags.
        jobs_disabled=_flag(document.get("jobs_disabled", False)),
        tags=_read_tags(document.get("tags")),
        created_at=_read_instant(document["created_at"]),
        updated_at=_read_instant(document["updated_at"]),
        jobs=[_read_job(j, reader, f"{where}/{j['id']}") for j in document["jobs"]],
        inline_runs=[_read_execution(e, reader, f"{where} inline run {e['id']}")
                     for e in document["inline_runs"]],
        # The three are absent from files made before they were moved: none.
        calendars=[_read_calendar(c, where) for c in document.get("calendars", [])],
        channels=[reader.channel(c, where) for c in document.get("channels", [])],
        default_alerts=_read_default_alerts(document.get("default_alerts"), where),
    )


def _read_calendar(document: Document, where: str) -> MovedCalendar:
    """A calendar, which must read as this version stores calendars."""
    name = _text(document["name"])
    text = json.dumps(document["document"], separators=(",", ":"))
    if stored_calendar(name, text) is None:
        raise ExportFormatError(f"{where}: the calendar {name} does not read")
    return MovedCalendar(name, text, _read_instant(document["created_at"]),
                         _read_instant(document["updated_at"]))


def _read_default_alerts(value: Any, where: str) -> str | None:
    """A collection's default alert rules, which must read as this version stores them."""
    if value is None:
        return None
    text = json.dumps(value, separators=(",", ":"))
    try:
        load_rules(text)
    except (KeyError, TypeError, ValueError):
        raise ExportFormatError(f"{where}: the default alert rules do not read") from None
    return text


def _read_job(document: Document, reader: _Reader, where: str) -> MovedJob:
    return MovedJob(
        job_id=_text(document["id"]), definition=reader.definition(document, where),
        state=_text(document["state"]),
        state_details=_optional(document["state_details"], str), etag=_text(document["etag"]),
        created_at=_read_instant(document["created_at"]),
        updated_at=_read_instant(document["updated_at"]),
        next_execution_time=_read_optional_instant(document["next_execution_time"]),
        last_execution_time=_read_optional_instant(document["last_execution_time"]),
        execution_count=_number(document["execution_count"]),
        failure_count=_number(document["failure_count"]),
        faulted_count=_number(document["faulted_count"]),
        history=[_read_history(h) for h in document["history"]],
        executions=[_read_execution(e, reader, f"{where} execution {e['id']}")
                    for e in document["executions"]],
        state_note=_optional(document.get("state_note"), str),
        state_changed_by=_optional(document.get("state_changed_by"), str),
        state_changed_at=_read_optional_instant(document.get("state_changed_at")),
        disabled_until=_read_optional_instant(document.get("disabled_until")),
    )


def _read_history(document: Document) -> MovedHistoryEntry:
    return MovedHistoryEntry(
        timestamp=_read_instant(document["timestamp"]),
        start_time=_read_instant(document["start_time"]),
        end_time=_read_optional_instant(document["end_time"]),
        expected_execution_time=_read_optional_instant(document["expected_execution_time"]),
        state=_text(document["state"]), status=_text(document["status"]),
        action_name=_text(document["action_name"]), message=_text(document["message"]),
        retry_count=_number(document["retry_count"]),
        repeat_count=_number(document["repeat_count"]),
        execution_id=_optional(document["execution_id"], str),
        step_index=_optional(document["step_index"], int),
        step_name=_optional(document["step_name"], str),
    )


def _read_execution(document: Document, reader: _Reader, where: str) -> MovedExecution:
    definition = reader.definition(document, where) if "definition" in document else None
    return MovedExecution(
        id=_text(document["id"]), scheduled_time=_read_instant(document["scheduled_time"]),
        trigger=_text(document["trigger"]), status=_text(document["status"]),
        revision=_number(document["revision"]), action_name=_text(document["action_name"]),
        attempt=_number(document["attempt"]), attempts=_number(document["attempts"]),
        step=_optional(document["step"], int), steps=_optional(document["steps"], str),
        repeat_count=_number(document["repeat_count"]),
        next_attempt_at=_read_optional_instant(document["next_attempt_at"]),
        node=_optional(document["node"], str),
        parameters=_optional(document["parameters"], str),
        output=_optional(document["output"], str), message=_optional(document["message"], str),
        created_at=_read_instant(document["created_at"]),
        start_time=_read_optional_instant(document["start_time"]),
        end_time=_read_optional_instant(document["end_time"]), definition=definition,
        # Absent from files written before executions named their nodes: any node.
        run_on=_optional(document.get("run_on"), str),
    )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a text was expected")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("true or false was expected")
    return value


def _read_tags(value: Any) -> dict[str, str]:
    """A collection's tags: an object of texts (null: none)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(name, str) and isinstance(text, str)
                                              for name, text in value.items()):
        raise TypeError("an object of texts was expected")
    return dict(value)


def _number(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("a whole number was expected")
    return value


def _optional(value: Any, kind: type[T]) -> T | None:
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise TypeError(f"a {kind.__name__} or null was expected")
    return value


def _read_instant(value: Any) -> datetime:
    instant = datetime.fromisoformat(_text(value))
    if instant.tzinfo is None:
        raise ValueError("a time without its UTC offset")
    return instant.astimezone(UTC)


def _read_optional_instant(value: Any) -> datetime | None:
    return None if value is None else _read_instant(value)


def jobs_of(export: HomeExport) -> Iterable[tuple[MovedSubscription, MovedCloudService,
                                                  MovedCollection, MovedJob]]:
    """Every job the file carries, with where it is."""
    for subscription in export.subscriptions:
        for service in subscription.cloud_services:
            for collection in service.collections:
                for job in collection.jobs:
                    yield subscription, service, collection, job


def count_of(export: HomeExport) -> Mapping[str, int]:
    """How many of each kind of thing the file carries, for what a command says."""
    jobs = list(jobs_of(export))
    collections = [c for s in export.subscriptions for cs in s.cloud_services
                   for c in cs.collections]
    return {
        "subscriptions": len(export.subscriptions),
        "certificates": sum(len(s.certificates) for s in export.subscriptions),
        "service principals": sum(len(s.principals) for s in export.subscriptions),
        "cloud services": sum(len(s.cloud_services) for s in export.subscriptions),
        "collections": sum(len(c.collections) for s in export.subscriptions
                           for c in s.cloud_services),
        "jobs": len(jobs),
        "history entries": sum(len(job.history) for *_, job in jobs),
        "executions": sum(len(job.executions) for *_, job in jobs) + sum(
            len(c.inline_runs) for c in collections),
        "calendars": sum(len(c.calendars) for c in collections),
        "notification channels": sum(len(c.channels) for c in collections),
    }
