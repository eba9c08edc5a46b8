"""The JSON job document: validated, normalised, and split into its public part and secrets."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.hazmat.primitives.serialization import pkcs12

from scheduler.api.schemas.job_codec import (
    ACTION_CODECS,
    ActionCodec,
    decode,
    decode_amqp,
    decode_http,
    decode_redis,
    decode_service_bus,
    decode_storage_queue,
    encode_amqp,
    encode_http,
    encode_redis,
    encode_service_bus,
    encode_storage_queue,
    register_action_codec,
    takes_timeout,
    with_secrets,
)
from scheduler.api.schemas.templates import check_placeholders
from scheduler.domain import InvalidField
from scheduler.domain.addresses import is_private_literal
from scheduler.domain.alerts import MAX_AFTER_CONSECUTIVE, MAX_RULE_CHANNELS, AlertEvent
from scheduler.domain.calendars import check_calendar_name
from scheduler.domain.catch_up import POLICIES as CATCH_UP_POLICIES
from scheduler.domain.catch_up import CatchUp, validate_catch_up
from scheduler.domain.durations import (
    Duration,
    format_datetime,
    format_iso_duration,
    parse_duration,
)
from scheduler.domain.jobs import (
    LONGEST_CALLBACK_WAIT,
    AmqpAction,
    HttpAction,
    JobSpec,
    RedisAction,
    ServiceBusAction,
    StorageQueueAction,
)
from scheduler.domain.nodes import (
    MAX_NODE_NAME,
    MAX_RUN_ON,
    NODE_NAME_RULE,
    is_node_name,
    node_name,
)
from scheduler.domain.notifications import check_channel_name
from scheduler.domain.outbound import (
    ENTITY_PATH_RULE,
    NAMESPACE_RULE,
    SEND_MESSAGE_HEADERS,
    is_entity_path,
    is_identification_header,
    is_namespace_name,
)
from scheduler.domain.overlap import validate_overlap
from scheduler.domain.placeholders import PlaceholderError, as_text, uri_template
from scheduler.domain.recurrence import (
    CRON,
    FREQUENCIES,
    WEEK_DAYS,
    MonthlyOccurrence,
    Recurrence,
    Schedule,
    validate_recurrence,
)
from scheduler.domain.signatures import SIGNATURE_HEADERS, secret_key
from scheduler.domain.states import SETTABLE_JOB_STATES, JobState
from scheduler.security.pki import thumbprint
from scheduler.services.audit import MAX_NOTE_CHARS
from scheduler.settings import OutboundSettings

MAX_JOB_BYTES = 16 * 1024
MAX_HEADERS = 50
MAX_HEADER_CHARS = 4096
MAX_BODY_CHARS = 8192
MAX_URI_CHARS = 2048
MAX_SECRET_CHARS = 128  # `whsec_` and the base64 of at most 64 bytes, with room to spare
MAX_JOB_ID = 100
MAX_PARAMETERS = 100
# Names and values as text, all together: what one run may ask placeholders to paste.
MAX_PARAMETER_CHARS = 8192
# The most an attempt's timeout may be where the caller does not say: the setting's default.
DEFAULT_LONGEST_TIMEOUT = OutboundSettings().longest_timeout
# Times far enough from datetime's limits that adding any recurrence step cannot overflow.
MIN_YEAR, MAX_YEAR = 1900, 9000
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Headers that frame the request: the service writes them itself.
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding"}
IDENTIFICATION_RULE = ("is set by the service on every call and message to identify the "
                       "execution; x-ms-execution-tag, x-ms-client-request-id and every "
                       "x-ms-scheduler-* name are reserved, in any letter case")

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
AUTH_TYPES = ("ClientCertificate", "Basic", "ActiveDirectoryOAuth", "Signature")
RETRY_TYPES = ("none", "fixed", "exponential")
COMPLETION_MODES = ("sync", "callback")
SETTABLE_STATES = SETTABLE_JOB_STATES
ALL_STATES = tuple(JobState)
TRANSPORT_TYPES = ("NotSpecified", "NetMessaging", "AMQP")
TOP_LEVEL = {"id", "startTime", "action", "recurrence", "state", "stateDetails", "status",
             "parameters", "catchUp", "concurrencyPolicy", "runOn", "alerts"}


@dataclass
class _Context:
    now: datetime
    brokers: Mapping[str, str]  # name -> kind (`amqp`, `redis`)
    private_networks: bool  # whether targets written as private addresses are accepted
    longest_timeout: timedelta  # the most an attempt's timeout may be
    secrets: dict[str, str] = field(default_factory=dict)
    uses_authentication: bool = False

    def keep_secret(self, label: str, value: Any) -> None:
        """Keep a secret field's value apart from the public document."""
        self.secrets[label] = _string(value, label, 16384)


# --- small typed readers -------------------------------------------------------------------

def _object(value: Any, name: str, allowed: Collection[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidField(name, "must be a JSON object")
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise InvalidField(f"{name}.{key}" if name else key, "is not a known field")
    return value


def _string(value: Any, name: str, max_length: int = 1024, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidField(name, "must be a string")
    if not empty and not value.strip():
        raise InvalidField(name, "must not be empty")
    if len(value) > max_length:
        raise InvalidField(name, f"must be at most {max_length} characters")
    if "\x00" in value:
        raise InvalidField(name, "must not contain a NUL character")
    return value


MAX_INTEGER = 2**31 - 1


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(name, "must be an integer")
    if not -MAX_INTEGER <= value <= MAX_INTEGER:
        raise InvalidField(name, f"must be between -{MAX_INTEGER} and {MAX_INTEGER}")
    return value


def _scalar(value: Any, name: str) -> Any:
    """A JSON string, finite number, boolean or null."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidField(name, "must be a finite number")
    if value is not None and not isinstance(value, str | int | float | bool):
        raise InvalidField(name, "must be a string, number or boolean")
    return value


def _boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidField(name, "must be true or false")
    return value


def _enum(value: Any, name: str, choices: Collection[str]) -> str:
    if isinstance(value, str):
        for choice in choices:
            if choice.lower() == value.lower():
                return choice
    raise InvalidField(name, f"must be one of {', '.join(choices)}")


def _list(value: Any, name: str, max_items: int = 1000) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidField(name, "must be a JSON array")
    if len(value) > max_items:
        raise InvalidField(name, f"must have at most {max_items} items")
    return value


def _required(doc: dict[str, Any], key: str, name: str) -> Any:
    if doc.get(key) is None:
        raise InvalidField(f"{name}.{key}", "is required")
    return doc[key]


def parse_datetime(value: Any, name: str, zone: tzinfo = UTC) -> datetime:
    """An ISO-8601 date-time; one without an offset is a wall-clock time in `zone` (inside
    a DST gap it is read with the offset before the gap, as the schedule reads such times;
    an ambiguous one is its first instance)."""
    text = _string(value, name, 64)
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidField(name, f"{text!r} is not an ISO-8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        moment = parsed.astimezone(UTC)
    except OverflowError:
        moment = None
    if moment is None or not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise InvalidField(name, f"must fall between the years {MIN_YEAR} and {MAX_YEAR}")
    return moment


# --- the document --------------------------------------------------------------------------

def parse_job(
    document: Any,
    *,
    now: datetime,
    brokers: Mapping[str, str] | None = None,
    job_id: str | None = None,
    private_networks: bool = False,
    longest_timeout: timedelta = DEFAULT_LONGEST_TIMEOUT,
) -> JobSpec:
    """Validate a whole job document; raises InvalidField naming the first broken field.
    Unless `private_networks`, a target written as a private address is refused; no
    attempt's timeout may be longer than `longest_timeout`."""
    doc = _object(document, "", TOP_LEVEL)
    if job_id is not None and doc.get("id") is not None:
        given = _string(doc["id"], "id", MAX_JOB_ID)
        if given.lower() != job_id.lower():
            raise InvalidField("id", "does not match the job id in the URI")
    context = _Context(now=now, brokers=brokers or {}, private_networks=private_networks,
                       longest_timeout=longest_timeout)
    definition: dict[str, Any] = {}
    if doc.get("startTime") is not None:
        start_time = parse_datetime(doc["startTime"], "startTime", _job_zone(doc))
        definition["startTime"] = format_datetime(start_time)
    definition["action"] = _action(_required(doc, "action", ""), "action", context, top=True)
    if doc.get("recurrence") is not None:
        definition["recurrence"] = _recurrence(doc["recurrence"], now)
    if doc.get("parameters") is not None:
        definition["parameters"] = parse_parameters(doc["parameters"])
    if doc.get("catchUp") is not None:
        definition["catchUp"] = _catch_up(doc["catchUp"])
    if doc.get("concurrencyPolicy") is not None:
        definition["concurrencyPolicy"] = validate_overlap(doc["concurrencyPolicy"]).value
    if doc.get("runOn") is not None:
        definition["runOn"] = parse_run_on(doc["runOn"])
    if doc.get("alerts") is not None:
        definition["alerts"] = parse_alerts(doc["alerts"])
    state: str = JobState.ENABLED
    if doc.get("state") is not None:
        state = _enum(doc["state"], "state", ALL_STATES)
        if state not in SETTABLE_STATES:
            raise InvalidField("state", "can only be set to enabled or disabled")
    # An enabled job runs on its schedule with its own parameters alone: each placeholder
    # must have its value there. A disabled one gets its values when it is run.
    check_placeholders(definition, definition.get("parameters") or {},
                       require_values=state == JobState.ENABLED)
    details = None
    if doc.get("stateDetails") is not None:
        details = _string(doc["stateDetails"], "stateDetails", 1024, empty=True)
    return JobSpec(
        job=decode(with_secrets(definition, context.secrets)),
        state=state,
        state_details=details,
        uses_authentication=context.uses_authentication,
    )


def parse_state_note(value: Any, name: str = "stateNote") -> str | None:
    """A job's `stateNote`: why its state is set so, at most 1,024 characters; an empty one
    is none."""
    return _string(value, name, MAX_NOTE_CHARS, empty=True) or None


def parse_parameters(value: Any) -> dict[str, Any]:
    """A `parameters` object: at most 100 names of letters, digits and _, scalar values,
    at most 8192 characters of names and values (as text) in all."""
    params = _object(value, "parameters")
    if len(params) > MAX_PARAMETERS:
        raise InvalidField("parameters", f"must have at most {MAX_PARAMETERS} entries")
    total = 0
    for key, item in params.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key, re.ASCII):
            raise InvalidField(f"parameters.{key}", "names are letters, digits and _")
        total += len(key) + len(as_text(_scalar(item, f"parameters.{key}")))
    if total > MAX_PARAMETER_CHARS:
        raise InvalidField("parameters", f"names and values must total at most "
                                         f"{MAX_PARAMETER_CHARS} characters, not {total}")
    return dict(params)


def action_types() -> tuple[str, ...]:
    """Every action type a job may name: those registered, and `sequence`."""
    return (*ACTION_CODECS, "sequence")


def _action_fields(top: bool) -> set[str]:
    """The members an action may have: its type's message (of any type), its retries, and
    at the top its error action."""
    return {"type", "steps", "retryPolicy", "completion",
            *(codec.key for codec in ACTION_CODECS.values()),
            *(("errorAction",) if top else ())}


def _action(value: Any, name: str, context: _Context, top: bool = False) -> dict[str, Any]:
    action = _object(value, name, _action_fields(top))
    kind = _enum(_required(action, "type", name), f"{name}.type", action_types())
    out: dict[str, Any] = {"type": kind}
    key, build = ("steps", _steps) if kind == "sequence" else (
        ACTION_CODECS[kind].key, ACTION_CODECS[kind].parse)
    message = _required(action, key, name)
    timeout = None
    if kind != "sequence" and takes_timeout(ACTION_CODECS[kind]) and isinstance(message, dict):
        message = dict(message)
        timeout = message.pop("timeout", None)
    out[key] = build(message, f"{name}.{key}", context)
    if timeout is not None:
        out[key]["timeout"] = _timeout(timeout, f"{name}.{key}.timeout", context)
    if action.get("retryPolicy") is not None:
        out["retryPolicy"] = _retry_policy(action["retryPolicy"], f"{name}.retryPolicy")
    if action.get("completion") is not None:
        completion = _completion(action["completion"], f"{name}.completion", kind)
        if completion is not None:
            out["completion"] = completion
    if top and action.get("errorAction") is not None:
        error = _action(action["errorAction"], f"{name}.errorAction", context)
        if error["type"] == "sequence":
            raise InvalidField(f"{name}.errorAction.type", "an error action cannot be a sequence")
        out["errorAction"] = error
    return out


def _completion(value: Any, name: str, kind: str) -> dict[str, Any] | None:
    """How an HTTP action's outcome comes: `{"mode": "sync"}` (in its answer, the default,
    not written back) or `{"mode": "callback", "timeout": ...}` (posted back by its target
    within the timeout, above zero and at most P7D)."""
    completion = _object(value, name, {"mode", "timeout"})
    mode = _enum(completion.get("mode", "sync"), f"{name}.mode", COMPLETION_MODES)
    if mode == "sync":
        if completion.get("timeout") is not None:
            raise InvalidField(f"{name}.timeout", "is only for the callback mode")
        return None
    if kind not in ("http", "https"):
        raise InvalidField(f"{name}.mode", "only an http or https action can wait for a "
                                           "callback")
    text = _duration(_required(completion, "timeout", name), f"{name}.timeout")
    length = parse_duration(text)
    if length <= timedelta(0):
        raise InvalidField(f"{name}.timeout", "must be longer than zero")
    if length > LONGEST_CALLBACK_WAIT:
        raise InvalidField(f"{name}.timeout",
                           f"must be at most {format_iso_duration(LONGEST_CALLBACK_WAIT)}")
    return {"mode": mode, "timeout": text}


def _request(value: Any, name: str, context: _Context) -> dict[str, Any]:
    request = _object(value, name, {"uri", "method", "headers", "body", "authentication"})
    uri = _string(_required(request, "uri", name), f"{name}.uri", MAX_URI_CHARS)
    try:
        uri_template(uri)  # first: a placeholder in the host says more than "not a URL"
        parts = urlsplit(uri)
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises for a port that is not a number in range
    except PlaceholderError as exc:
        raise InvalidField(f"{name}.uri", str(exc)) from None
    except ValueError:
        valid = False
    if not valid:
        raise InvalidField(f"{name}.uri", "must be an absolute http or https URL")
    if re.search(r"[\s\x00-\x1f\x7f]", uri):
        raise InvalidField(f"{name}.uri", "must not contain spaces or control characters "
                                          "(percent-encode them)")
    if not context.private_networks and is_private_literal(parts.hostname or ""):
        raise InvalidField(f"{name}.uri", f"the host {parts.hostname} is a loopback, private, "
                                          "link-local or metadata address; calls there are "
                                          "refused unless outbound.allow_private_networks "
                                          "is set")
    out: dict[str, Any] = {
        "uri": uri,
        "method": _enum(_required(request, "method", name), f"{name}.method", HTTP_METHODS),
    }
    if request.get("headers") is not None:
        out["headers"] = _headers(request["headers"], f"{name}.headers")
    if request.get("body") is not None:
        out["body"] = _string(request["body"], f"{name}.body", MAX_BODY_CHARS, empty=True)
    if request.get("authentication") is not None:
        out["authentication"] = _authentication(
            request["authentication"], f"{name}.authentication", context
        )
        if out["authentication"]["type"] == "Signature":
            _check_unsigned_headers(out.get("headers") or {}, f"{name}.headers")
    return out


def _check_unsigned_headers(headers: Mapping[str, str], name: str) -> None:
    """A signed call's own headers: none of those the signature writes."""
    for key in headers:
        if key.lower() in SIGNATURE_HEADERS:
            raise InvalidField(f"{name}.{key}", "is written by the service on a call signed "
                                                "with a Signature authentication")


def _headers(value: Any, name: str, service_writes: Collection[str] = RESERVED_HEADERS
             ) -> dict[str, str]:
    """Header names and values (of a request, or a message's headers or custom properties);
    `service_writes` are the names, in lower case, that the service itself writes there."""
    headers = _object(value, name)
    if len(headers) > MAX_HEADERS:
        raise InvalidField(name, f"at most {MAX_HEADERS} headers are allowed")
    total = 0
    seen: set[str] = set()
    for key, item in headers.items():
        if not _HEADER_NAME.fullmatch(key):
            raise InvalidField(f"{name}.{key}", "is not a valid header name")
        if key.lower() in seen:  # header names have no case: which one would be sent?
            raise InvalidField(f"{name}.{key}", "is given twice, in different cases")
        seen.add(key.lower())
        if key.lower() in service_writes:
            raise InvalidField(f"{name}.{key}", "is a header the service writes itself")
        if is_identification_header(key):
            raise InvalidField(f"{name}.{key}", IDENTIFICATION_RULE)
        text = _string(item, f"{name}.{key}", MAX_HEADER_CHARS, empty=True)
        if not _HEADER_VALUE.fullmatch(text):
            raise InvalidField(f"{name}.{key}",
                               "must be printable ASCII, without line breaks")
        total += len(key) + len(text)
    if total > MAX_HEADER_CHARS:
        raise InvalidField(name, f"headers must total at most {MAX_HEADER_CHARS} characters")
    return dict(headers)


def _authentication(value: Any, name: str, context: _Context) -> dict[str, Any]:
    auth = _object(value, name)
    kind = _enum(_required(auth, "type", name), f"{name}.type", AUTH_TYPES)
    context.uses_authentication = True
    if kind == "Basic":
        _object(auth, name, {"type", "username", "password"})
        context.keep_secret(f"{name}.password", _required(auth, "password", name))
        return {"type": kind, "username": _string(_required(auth, "username", name),
                                                  f"{name}.username", 256)}
    if kind == "Signature":
        return _signature(auth, name, context)
    if kind == "ActiveDirectoryOAuth":
        _object(auth, name, {"type", "tenant", "audience", "clientId", "secret"})
        context.keep_secret(f"{name}.secret", _required(auth, "secret", name))
        return {
            "type": kind,
            **{key: _string(_required(auth, key, name), f"{name}.{key}", 512)
               for key in ("tenant", "audience", "clientId")},
        }
    _object(auth, name, {"type", "pfx", "password", "certificateThumbprint",
                         "certificateSubjectName", "certificateExpiration"})
    return _client_certificate(auth, name, context)


def _signature(auth: dict[str, Any], name: str, context: _Context) -> dict[str, Any]:
    """Standard Webhooks signing: a `whsec_` secret, and the previous one while receivers
    move to it; both kept apart as secrets."""
    _object(auth, name, {"type", "secret", "previousSecret"})
    for key in ("secret", "previousSecret"):
        value = _required(auth, key, name) if key == "secret" else auth.get(key)
        if value is None:
            continue
        label = f"{name}.{key}"
        text = _string(value, label, MAX_SECRET_CHARS)
        try:
            secret_key(text)
        except ValueError as exc:
            raise InvalidField(label, str(exc)) from None
        context.keep_secret(label, text)
    return {"type": "Signature"}


def _client_certificate(auth: dict[str, Any], name: str, context: _Context) -> dict[str, Any]:
    pfx_text = _string(_required(auth, "pfx", name), f"{name}.pfx", 16384)
    password = auth.get("password")
    if password is not None:
        password = _string(password, f"{name}.password", 256, empty=True)
    try:
        pfx = base64.b64decode(pfx_text, validate=True)
        key, cert, _extra = pkcs12.load_key_and_certificates(
            pfx, password.encode() if password else None
        )
    except (binascii.Error, ValueError):
        raise InvalidField(f"{name}.pfx", "is not a base64 PKCS#12 file that the password opens") \
            from None
    if cert is None or key is None:
        raise InvalidField(f"{name}.pfx", "must hold a certificate and its private key")
    context.secrets[f"{name}.pfx"] = pfx_text
    if password:
        context.secrets[f"{name}.password"] = password
    return {
        "type": "ClientCertificate",
        "certificateThumbprint": thumbprint(cert),
        "certificateSubjectName": cert.subject.rfc4514_string(),
        "certificateExpiration": format_datetime(cert.not_valid_after_utc),
    }


def _storage_queue(value: Any, name: str, context: _Context) -> dict[str, Any]:
    message = _object(value, name, {"storageAccount", "queueName", "sasToken", "message"})
    context.keep_secret(f"{name}.sasToken", _required(message, "sasToken", name))
    account = _string(_required(message, "storageAccount", name), f"{name}.storageAccount", 24)
    if not re.fullmatch(r"[a-z0-9]{3,24}", account, re.ASCII):
        raise InvalidField(f"{name}.storageAccount", "is 3-24 lower-case letters and digits")
    queue = _string(_required(message, "queueName", name), f"{name}.queueName", 63)
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]", queue, re.ASCII):
        raise InvalidField(f"{name}.queueName", "is not a valid storage queue name")
    text = _string(_required(message, "message", name), f"{name}.message", MAX_BODY_CHARS,
                   empty=True)
    return {"storageAccount": account, "queueName": queue, "message": text}


_BROKERED_PROPERTIES = {
    "contentType", "correlationId", "forcePersistence", "label", "messageId", "partitionKey",
    "replyTo", "replyToSessionId", "scheduledEnqueueTimeUtc", "sessionId", "timeToLive", "to",
    "viaPartitionKey",
}


def _service_bus(value: Any, name: str, context: _Context) -> dict[str, Any]:
    is_topic = name.endswith("TopicMessage")
    target = "topicPath" if is_topic else "queueName"
    message = _object(value, name, {
        target, "namespace", "transportType", "authentication", "message",
        "brokeredMessageProperties", "customMessageProperties",
    })
    out: dict[str, Any] = {
        "namespace": _service_bus_name(_required(message, "namespace", name),
                                       f"{name}.namespace", is_namespace_name, NAMESPACE_RULE),
        target: _service_bus_name(_required(message, target, name), f"{name}.{target}",
                                  is_entity_path, ENTITY_PATH_RULE),
        "message": _string(_required(message, "message", name), f"{name}.message",
                           MAX_BODY_CHARS, empty=True),
    }
    if message.get("transportType") is not None:
        out["transportType"] = _enum(message["transportType"], f"{name}.transportType",
                                     TRANSPORT_TYPES)
    auth_name = f"{name}.authentication"
    auth = _object(_required(message, "authentication", name), auth_name,
                   {"sasKeyName", "sasKey", "type"})
    context.keep_secret(f"{auth_name}.sasKey", _required(auth, "sasKey", auth_name))
    out["authentication"] = {
        "sasKeyName": _string(_required(auth, "sasKeyName", auth_name),
                              f"{auth_name}.sasKeyName", 256),
        "type": _enum(auth.get("type", "SharedAccessKey"), f"{auth_name}.type",
                      ("SharedAccessKey",)),
    }
    if message.get("brokeredMessageProperties") is not None:
        props_name = f"{name}.brokeredMessageProperties"
        props = _object(message["brokeredMessageProperties"], props_name, _BROKERED_PROPERTIES)
        out["brokeredMessageProperties"] = {
            key: _scalar(item, f"{props_name}.{key}") for key, item in props.items()}
    if message.get("customMessageProperties") is not None:
        # Sent as headers of Send Message, beside those the service writes for the message.
        out["customMessageProperties"] = _headers(
            message["customMessageProperties"], f"{name}.customMessageProperties",
            RESERVED_HEADERS | SEND_MESSAGE_HEADERS)
    return out


def _service_bus_name(value: Any, name: str, follows_rule: Callable[[str], bool], rule: str
                      ) -> str:
    """A namespace or entity path: it becomes part of the URL the message is sent to, so
    only what Service Bus itself allows (a `?`, `#`, `/` or `:` would name another place)."""
    text = _string(value, name, 1024)  # the rule says how long, in its own words
    if not follows_rule(text):
        raise InvalidField(name, rule)
    return text


def _broker(value: Any, name: str, context: _Context, kind: str) -> str:
    broker = _string(value, name, 100)
    if broker not in context.brokers:
        raise InvalidField(name, f"no broker named {broker!r} is configured")
    if context.brokers[broker] != kind:
        raise InvalidField(name, f"the broker {broker!r} takes {context.brokers[broker]} "
                                 f"messages, not {kind}")
    return broker


def _amqp(value: Any, name: str, context: _Context) -> dict[str, Any]:
    message = _object(value, name, {"broker", "exchange", "routingKey", "message", "headers"})
    out: dict[str, Any] = {
        "broker": _broker(_required(message, "broker", name), f"{name}.broker", context,
                          "amqp"),
        "exchange": _string(message.get("exchange", ""), f"{name}.exchange", 255, empty=True),
        "routingKey": _string(_required(message, "routingKey", name), f"{name}.routingKey",
                              255, empty=True),
        "message": _string(_required(message, "message", name), f"{name}.message",
                           MAX_BODY_CHARS, empty=True),
    }
    if message.get("headers") is not None:
        out["headers"] = _headers(message["headers"], f"{name}.headers")
    return out


def _redis(value: Any, name: str, context: _Context) -> dict[str, Any]:
    message = _object(value, name, {"broker", "stream", "message"})
    return {
        "broker": _broker(_required(message, "broker", name), f"{name}.broker", context,
                          "redis"),
        "stream": _string(_required(message, "stream", name), f"{name}.stream", 255),
        "message": _string(_required(message, "message", name), f"{name}.message",
                           MAX_BODY_CHARS, empty=True),
    }


def _steps(value: Any, name: str, context: _Context) -> dict[str, Any] | Any:
    steps = _list(value, name, 50)
    if not steps:
        raise InvalidField(name, "must have at least one step")
    out = []
    seen: set[str] = set()
    for index, item in enumerate(steps):
        step_name = f"{name}.{index}"
        step = _object(item, step_name,
                       {"name", "action", "retryPolicy", "timeout", "pauseOnFailure", "manual"})
        label = _string(_required(step, "name", step_name), f"{step_name}.name", 64)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label, re.ASCII):
            raise InvalidField(f"{step_name}.name", "is letters, digits and _")
        if label.lower() in seen:
            raise InvalidField(f"{step_name}.name", "is used by an earlier step")
        seen.add(label.lower())
        entry: dict[str, Any] = {"name": label}
        inner = _action(_required(step, "action", step_name), f"{step_name}.action", context)
        if inner["type"] == "sequence":
            raise InvalidField(f"{step_name}.action.type", "a step cannot be a sequence")
        if "completion" in inner:
            raise InvalidField(f"{step_name}.action.completion",
                               "a step cannot wait for a callback; only the main action and "
                               "the error action can")
        entry["action"] = inner
        if step.get("retryPolicy") is not None:
            entry["retryPolicy"] = _retry_policy(step["retryPolicy"], f"{step_name}.retryPolicy")
        if step.get("timeout") is not None:
            entry["timeout"] = _timeout(step["timeout"], f"{step_name}.timeout", context)
        for flag in ("pauseOnFailure", "manual"):
            if step.get(flag) is not None:
                entry[flag] = _boolean(step[flag], f"{step_name}.{flag}")
        out.append(entry)
    return out


def _duration(value: Any, name: str) -> str:
    text = _string(value, name, 64)
    try:
        parse_duration(text)
    except ValueError as exc:
        raise InvalidField(name, str(exc)) from None
    return text


def _timeout(value: Any, name: str, context: _Context) -> str:
    """How long an attempt may take: a duration above zero, at most the operator's
    `outbound.max_timeout`."""
    text = _duration(value, name)
    length = parse_duration(text)
    if length <= timedelta(0):
        raise InvalidField(name, "must be longer than zero")
    if length > context.longest_timeout:
        raise InvalidField(name, f"must be at most {format_iso_duration(context.longest_timeout)}"
                                 " (the service's outbound.max_timeout)")
    return text


def _retry_policy(value: Any, name: str) -> dict[str, Any]:
    policy = _object(value, name, {"retryType", "retryInterval", "retryCount",
                                   "maxRetryInterval"})
    out: dict[str, Any] = {
        "retryType": _enum(_required(policy, "retryType", name), f"{name}.retryType",
                           RETRY_TYPES),
    }
    if policy.get("retryInterval") is not None:
        out["retryInterval"] = _duration(policy["retryInterval"], f"{name}.retryInterval")
        if parse_duration(out["retryInterval"]).total_seconds() < 1:
            raise InvalidField(f"{name}.retryInterval", "must be at least one second")
    if policy.get("maxRetryInterval") is not None:
        out["maxRetryInterval"] = _duration(policy["maxRetryInterval"],
                                            f"{name}.maxRetryInterval")
    if policy.get("retryCount") is not None:
        count = _integer(policy["retryCount"], f"{name}.retryCount")
        if not 0 <= count <= 20:
            raise InvalidField(f"{name}.retryCount", "must be between 0 and 20")
        out["retryCount"] = count
    return out


_RECURRENCE_FIELDS = {"frequency", "interval", "count", "endTime", "schedule", "timeZone",
                      "cron", "jitter", "excludeCalendars"}
MAX_EXCLUDED_CALENDARS = 10
# What a cron expression says in place of Azure's frequency, interval and schedule.
_CRON_EXCLUDES = ("frequency", "interval", "schedule")
_SCHEDULE_FIELDS = {"minutes", "hours", "weekDays", "monthDays", "monthlyOccurrences", "months"}


def _int_list(schedule: dict[str, Any], key: str) -> tuple[int, ...]:
    name = f"recurrence.schedule.{key}"
    if schedule.get(key) is None:
        return ()
    return tuple(_integer(item, name) for item in _list(schedule[key], name, 100))


def _recurrence(value: Any, now: datetime) -> dict[str, Any]:
    """A valid recurrence, normalised."""
    doc = _object(value, "recurrence", _RECURRENCE_FIELDS)
    out: dict[str, Any] = {}
    cron = None
    if doc.get("cron") is not None:
        cron = out["cron"] = _string(doc["cron"], "recurrence.cron", 256).strip()
        for key in _CRON_EXCLUDES:
            if doc.get(key) is not None:
                raise InvalidField(f"recurrence.{key}", "cannot be given with recurrence.cron, "
                                                        "which says when the job fires")
        frequency = CRON
    else:
        frequency = out["frequency"] = _enum(_required(doc, "frequency", "recurrence"),
                                             "recurrence.frequency", FREQUENCIES)
    interval = 1
    if doc.get("interval") is not None:
        interval = out["interval"] = _integer(doc["interval"], "recurrence.interval")
    count = None
    if doc.get("count") is not None:
        count = out["count"] = _integer(doc["count"], "recurrence.count")
    end_time = None
    if doc.get("endTime") is not None:
        end_time = parse_datetime(doc["endTime"], "recurrence.endTime", _job_zone({
            "recurrence": doc}))
        out["endTime"] = format_datetime(end_time)
    time_zone = "UTC"
    if doc.get("timeZone") is not None:
        time_zone = out["timeZone"] = _time_zone(doc["timeZone"])
    schedule = Schedule()
    if doc.get("schedule") is not None:
        out["schedule"], schedule = _schedule(doc["schedule"])
    jitter = None
    if doc.get("jitter") is not None:
        out["jitter"] = _duration(doc["jitter"], "recurrence.jitter")
        jitter = Duration.parse(out["jitter"])
    calendars: tuple[str, ...] = ()
    if doc.get("excludeCalendars") is not None:
        calendars = _calendar_names(doc["excludeCalendars"], "recurrence.excludeCalendars")
        out["excludeCalendars"] = list(calendars)
    recurrence = Recurrence(frequency, interval, count, end_time, schedule, time_zone,
                            cron=cron, jitter=jitter, exclude_calendars=calendars)
    validate_recurrence(recurrence, now)
    return out


def _catch_up(value: Any) -> dict[str, Any]:
    """A valid `catchUp`, normalised."""
    doc = _object(value, "catchUp", {"policy", "window", "maxRuns"})
    out: dict[str, Any] = {"policy": _enum(_required(doc, "policy", "catchUp"),
                                           "catchUp.policy", CATCH_UP_POLICIES)}
    window = None
    if doc.get("window") is not None:
        out["window"] = _duration(doc["window"], "catchUp.window")
        window = Duration.parse(out["window"])
    runs = None
    if doc.get("maxRuns") is not None:
        runs = out["maxRuns"] = _integer(doc["maxRuns"], "catchUp.maxRuns")
    validate_catch_up(CatchUp(out["policy"], window, runs))
    return out


ALERT_FIELDS = {"on", "channels", "afterConsecutive", "lateBy", "durationOver", "realert"}
# The events that need a threshold, and the field that gives it.
ALERT_THRESHOLDS = {AlertEvent.LATE: "lateBy", AlertEvent.DURATION_OVER: "durationOver"}


def parse_alerts(value: Any, name: str = "alerts") -> dict[str, Any]:
    """A job's (or a collection's default) `alerts`, normalised: the events that alert,
    each once; the channels they go to, at least one when some event alerts; the
    thresholds; `on: []` turns a job's alerts off, its collection's default included."""
    doc = _object(value, name, ALERT_FIELDS)
    at = f"{name}." if name else ""  # where its fields are: `alerts.on`, or `on` alone
    if doc.get("on") is None:
        raise InvalidField(f"{at}on", "is required")
    events = _list(doc["on"], f"{at}on", len(AlertEvent))
    on: list[str] = []
    for index, item in enumerate(events):
        event = _enum(item, f"{at}on.{index}", tuple(AlertEvent))
        if event in on:
            raise InvalidField(f"{at}on.{index}", f"names {event} again")
        on.append(event)
    out: dict[str, Any] = {"on": on, "channels": _alert_channels(doc, at, bool(on))}
    if doc.get("afterConsecutive") is not None:
        count = _integer(doc["afterConsecutive"], f"{at}afterConsecutive")
        if not 1 <= count <= MAX_AFTER_CONSECUTIVE:
            raise InvalidField(f"{at}afterConsecutive",
                               f"must be from 1 to {MAX_AFTER_CONSECUTIVE}")
        out["afterConsecutive"] = count
    for key in ("lateBy", "durationOver", "realert"):
        if doc.get(key) is not None:
            out[key] = _positive_duration(doc[key], f"{at}{key}")
    for event, key in ALERT_THRESHOLDS.items():
        if event in on and key not in out:
            raise InvalidField(f"{at}{key}", f"is required when {at}on names {event}")
    return out


def _alert_channels(doc: dict[str, Any], at: str, needed: bool) -> list[str]:
    """The channels an alert rule names: each a channel name, once in any case."""
    field_name = f"{at}channels"
    if doc.get("channels") is None:
        if needed:
            raise InvalidField(field_name, "is required: name the channels that hear of the "
                                           "alerts")
        return []
    channels: list[str] = []
    for index, item in enumerate(_list(doc["channels"], field_name, MAX_RULE_CHANNELS)):
        channel = check_channel_name(item, f"{field_name}.{index}")
        if channel.lower() in (known.lower() for known in channels):
            raise InvalidField(f"{field_name}.{index}", f"names {channel} again")
        channels.append(channel)
    if needed and not channels:
        raise InvalidField(field_name, "must name at least one channel")
    return channels


def _positive_duration(value: Any, name: str) -> str:
    text = _duration(value, name)
    if parse_duration(text) <= timedelta(0):
        raise InvalidField(name, "must be longer than zero")
    return text


def parse_run_on(value: Any, name: str = "runOn") -> list[str]:
    """A `runOn`: the names of the engine nodes that alone run a job's executions, at least
    one and at most MAX_RUN_ON, each once (without regard to case); lower-cased."""
    names = _list(value, name, MAX_RUN_ON)
    if not names:
        raise InvalidField(name, "must name at least one engine node")
    out: list[str] = []
    for index, item in enumerate(names):
        label = _string(item, f"{name}.{index}", MAX_NODE_NAME)
        if not is_node_name(label):
            raise InvalidField(f"{name}.{index}", f"must be a node name of {NODE_NAME_RULE}, "
                                                  f"not {label!r}")
        if node_name(label) in out:
            raise InvalidField(f"{name}.{index}", f"names {label} again")
        out.append(node_name(label))
    return out


def _calendar_names(value: Any, name: str) -> tuple[str, ...]:
    """The names of the collection's calendars a recurrence skips the days of: at most
    MAX_EXCLUDED_CALENDARS, each once (without regard to case). Whether they exist is the
    collection's to say, when the job is written."""
    names: list[str] = []
    for index, item in enumerate(_list(value, name, MAX_EXCLUDED_CALENDARS)):
        label = check_calendar_name(_string(item, f"{name}.{index}", 64), f"{name}.{index}")
        if label.lower() in (known.lower() for known in names):
            raise InvalidField(f"{name}.{index}", f"names {label} again")
        names.append(label)
    return tuple(names)


def _job_zone(doc: dict[str, Any]) -> ZoneInfo:
    """The time zone a job's times without an offset are read in: its recurrence's, or UTC."""
    recurrence = doc.get("recurrence")
    if isinstance(recurrence, dict) and recurrence.get("timeZone") is not None:
        return ZoneInfo(_time_zone(recurrence["timeZone"]))
    return ZoneInfo("UTC")


def _time_zone(value: Any) -> str:
    name = _string(value, "recurrence.timeZone", 64)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidField("recurrence.timeZone", f"{name!r} is not an IANA time zone") from None
    return name


def _schedule(value: Any) -> tuple[dict[str, Any], Schedule]:
    doc = _object(value, "recurrence.schedule", _SCHEDULE_FIELDS)
    minutes, hours = _int_list(doc, "minutes"), _int_list(doc, "hours")
    month_days, months = _int_list(doc, "monthDays"), _int_list(doc, "months")
    week_days: tuple[str, ...] = ()
    if doc.get("weekDays") is not None:
        week_days = tuple(
            _enum(day, "recurrence.schedule.weekDays", WEEK_DAYS)
            for day in _list(doc["weekDays"], "recurrence.schedule.weekDays", 7)
        )
    occurrences: list[MonthlyOccurrence] = []
    if doc.get("monthlyOccurrences") is not None:
        name = "recurrence.schedule.monthlyOccurrences"
        for item in _list(doc["monthlyOccurrences"], name, 35):
            # ARM spelled the key with a capital O; accept both.
            entry = _object(item, name, {"day", "occurrence", "Occurrence"})
            raw = entry.get("occurrence", entry.get("Occurrence"))
            occurrences.append(MonthlyOccurrence(
                day=_enum(_required(entry, "day", name), f"{name}.day", WEEK_DAYS),
                occurrence=_integer(raw, f"{name}.occurrence") if raw is not None else 1,
            ))
    out: dict[str, Any] = {}
    for key, values in (("minutes", minutes), ("hours", hours), ("weekDays", week_days),
                        ("monthDays", month_days), ("months", months)):
        if doc.get(key) is not None:
            out[key] = list(values)
    if doc.get("monthlyOccurrences") is not None:
        out["monthlyOccurrences"] = [
            {"day": item.day, "occurrence": item.occurrence} for item in occurrences
        ]
    schedule = Schedule(minutes, hours, week_days, month_days, tuple(occurrences), months)
    return out, schedule


# --- secrets and merges --------------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# The action types this version has, each with its message's key and its codec.
for _codec in (
    ActionCodec("http", "request", HttpAction, _request, decode_http, encode_http),
    ActionCodec("https", "request", HttpAction, _request, decode_http, encode_http),
    ActionCodec("storageQueue", "queueMessage", StorageQueueAction, _storage_queue,
                decode_storage_queue, encode_storage_queue),
    ActionCodec("serviceBusQueue", "serviceBusQueueMessage", ServiceBusAction, _service_bus,
                decode_service_bus, encode_service_bus),
    ActionCodec("serviceBusTopic", "serviceBusTopicMessage", ServiceBusAction, _service_bus,
                decode_service_bus, encode_service_bus),
    ActionCodec("amqp", "amqpMessage", AmqpAction, _amqp, decode_amqp, encode_amqp),
    ActionCodec("redis", "redisMessage", RedisAction, _redis, decode_redis, encode_redis),
):
    register_action_codec(_codec)
