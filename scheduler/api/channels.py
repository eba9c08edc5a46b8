"""Notification channels of a job collection: webhooks, email recipients and Slack incoming
webhooks that its notifications go to; their secrets sealed at rest and never answered; a
test message on request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, g, request

from scheduler.api.requests import check_api_version, field_error, read_json
from scheduler.api.responses import json_response
from scheduler.api.runtime import call, read_connection, runtime, snapshot, transaction
from scheduler.domain import InvalidField
from scheduler.domain.addresses import is_private_literal
from scheduler.domain.notifications import (
    CHANNEL_TYPES,
    MAX_RECIPIENTS,
    MAX_URL_CHARS,
    Channel,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
    check_address,
    check_channel_name,
)
from scheduler.domain.signatures import secret_key
from scheduler.errors import BadRequest
from scheduler.services import notifications as services
from scheduler.services.calls import record_and_wake

bp = Blueprint("channels", __name__)

# Matched in lower case: the request adapter lower-cases the word, as it does `jobs`.
CHANNELS = ("/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>"
            "/notificationchannels")
MAX_CHANNEL_BYTES = 16 * 1024
# How a secret is answered; a PUT that sends it back is refused, never stored as the secret.
REDACTED = "<redacted>"
FIELDS = {"webhook": ("name", "type", "url", "secret"), "email": ("name", "type", "to", "from"),
          "slack": ("name", "type", "url")}


@bp.before_request
def _api_version() -> None:
    check_api_version()


@dataclass(frozen=True, slots=True)
class ChannelRules:
    """What a channel document is held to, from the operator's settings: whether URLs may
    name private addresses, whether email can be sent, and its default sender."""

    private_networks: bool
    email_enabled: bool
    default_sender: str


# --- the document ----------------------------------------------------------------------------

def parse_channel(name: str, document: Any, rules: ChannelRules) -> Channel:
    """A channel from its JSON document (`type` and that type's fields, `name` if it is the
    channel's own; a member given as null is left out); InvalidField naming the field that
    does not hold."""
    check_channel_name(name)
    if not isinstance(document, dict):
        raise InvalidField("", "the channel must be a JSON object")
    given = {key: value for key, value in document.items() if value is not None}
    kind = given.get("type")
    if kind not in CHANNEL_TYPES:
        raise InvalidField("type", f"must be one of {', '.join(CHANNEL_TYPES)}, not "
                           f"{str(kind)[:50]!r}" if kind is not None else
                           f"is required: one of {', '.join(CHANNEL_TYPES)}")
    for key in given:
        if key not in FIELDS[kind]:
            raise InvalidField(key, f"is not a field of a {kind} channel")
    if "name" in given and check_channel_name(given["name"]).lower() != name.lower():
        raise InvalidField("name", f"must be the channel's name in the path, {name}")
    if kind == "webhook":
        secret = given.get("secret")
        return WebhookChannel(name, read_url(given.get("url"), "url", rules),
                              None if secret is None else read_secret(secret, "secret"))
    if kind == "slack":
        return SlackChannel(name, read_url(given.get("url"), "url", rules))
    return _email(name, given, rules)


def _email(name: str, given: dict[str, Any], rules: ChannelRules) -> EmailChannel:
    if not rules.email_enabled:
        raise InvalidField("type", "email channels need an SMTP server, and the operator has "
                           "not configured one (notifications.smtp_host)")
    to = given.get("to")
    if not isinstance(to, list) or not 1 <= len(to) <= MAX_RECIPIENTS:
        raise InvalidField("to", f"must be a JSON array of 1 to {MAX_RECIPIENTS} email "
                           "addresses")
    sender = given.get("from")
    if sender is None and not rules.default_sender:
        raise InvalidField("from", "is required: the operator has set no default sender "
                           "(notifications.smtp_from)")
    return EmailChannel(name, tuple(check_address(item, f"to[{index}]")
                                    for index, item in enumerate(to)),
                        None if sender is None else check_address(sender, "from"))


def read_url(value: Any, field_name: str, rules: ChannelRules) -> str:
    """An absolute http or https URL of a host; one written as a private address only
    where the operator allows private networks."""
    if value is None:
        raise InvalidField(field_name, "is required")
    if not isinstance(value, str):
        raise InvalidField(field_name, "must be a string")
    if value.startswith(REDACTED[:-1]):
        raise InvalidField(field_name, "holds the redacted form an answer shows: send the "
                           "URL itself")
    if len(value) > MAX_URL_CHARS:
        raise InvalidField(field_name, f"must be at most {MAX_URL_CHARS} characters")
    if re.search(r"[\s\x00-\x1f\x7f]", value):
        raise InvalidField(field_name, "must not contain spaces or control characters "
                           "(percent-encode them)")
    try:
        parts = urlsplit(value)
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:
        valid = False
    if not valid:
        raise InvalidField(field_name, "must be an absolute http or https URL")
    if not rules.private_networks and is_private_literal(parts.hostname or ""):
        raise InvalidField(field_name, f"the host {parts.hostname} is a loopback, private, "
                           "link-local or metadata address; calls there are refused unless "
                           "outbound.allow_private_networks is set")
    return value


def read_secret(value: Any, field_name: str) -> str:
    """A Standard Webhooks secret, `whsec_` and base64."""
    if not isinstance(value, str):
        raise InvalidField(field_name, "must be a string")
    if value == REDACTED:
        raise InvalidField(field_name, "holds the redacted form an answer shows: send the "
                           "secret itself, or leave it out for unsigned messages")
    try:
        secret_key(value)
    except ValueError as exc:
        raise InvalidField(field_name, str(exc)) from None
    return value


def channel_document(channel: Channel) -> dict[str, Any]:
    """A channel as answered: never a secret. A webhook's secret, when it has one, reads
    `<redacted>`; a Slack URL shows only its origin."""
    document: dict[str, Any] = {"name": channel.name, "type": channel.type}
    if isinstance(channel, WebhookChannel):
        document["url"] = channel.url
        if channel.secret is not None:
            document["secret"] = REDACTED
    elif isinstance(channel, EmailChannel):
        document["to"] = list(channel.to)
        if channel.sender is not None:
            document["from"] = channel.sender
    else:
        parts = urlsplit(channel.url)
        document["url"] = f"<redacted: {parts.scheme}://{parts.netloc.rpartition('@')[2]}/…>"
    return document


# --- routes ----------------------------------------------------------------------------------


def _rules() -> ChannelRules:
    settings = runtime().settings
    return ChannelRules(private_networks=settings.outbound.allow_private_networks,
                        email_enabled=settings.notifications.email_enabled,
                        default_sender=settings.notifications.smtp_from)


def _read_channel(name: str) -> Channel:
    """The request's channel document, read and checked; a field that does not hold is a
    400 naming it."""
    size = len(request.get_data(cache=True))
    if size > MAX_CHANNEL_BYTES:
        raise BadRequest(f"The channel document is {size} bytes; at most "
                         f"{MAX_CHANNEL_BYTES} bytes are allowed.")
    try:
        return parse_channel(name, read_json(MAX_CHANNEL_BYTES), _rules())
    except InvalidField as exc:
        raise field_error(exc) from None


@bp.get(CHANNELS, strict_slashes=False)
def list_channels(sub: str, cs: str, jc: str) -> Response:
    """The collection's channels, by name: `{"value": [...]}`."""
    found = services.list_channels(read_connection(), g.subscription_id, cs, jc)
    return json_response({"value": [channel_document(channel) for channel in found]})


@bp.get(CHANNELS + "/<channel_name>", strict_slashes=False)
def get_channel(sub: str, cs: str, jc: str, channel_name: str) -> Response:
    """One channel, by its name in any case."""
    channel = services.read_channel(read_connection(), g.subscription_id, cs, jc,
                                    channel_name)
    return json_response(channel_document(channel))


@bp.put(CHANNELS + "/<channel_name>", strict_slashes=False)
def put_channel(sub: str, cs: str, jc: str, channel_name: str) -> Response:
    """Create a channel (201) or replace it whole (200)."""
    channel = _read_channel(channel_name)
    context = call()
    with transaction() as session:
        stored, created = services.put_channel(session, context, cs, jc, channel)
        status = 201 if created else 200
        record_and_wake(session, context, "channel.put", status, wake=False)
        return json_response(channel_document(stored), status)


@bp.delete(CHANNELS + "/<channel_name>", strict_slashes=False)
def delete_channel(sub: str, cs: str, jc: str, channel_name: str) -> Response:
    """Delete a channel (204)."""
    context = call()
    with transaction() as session:
        services.delete_channel(session, context, cs, jc, channel_name)
        record_and_wake(session, context, "channel.delete", 204, wake=False)
    return Response(b"", status=204)


@bp.post(CHANNELS + "/<channel_name>/test", strict_slashes=False)
def send_test_message(sub: str, cs: str, jc: str, channel_name: str) -> Response:
    """Send the channel a test message now: 200 saying whether it was delivered, and if
    not, why (a target's failure is not the client's error)."""
    context = call()
    with snapshot() as session:
        channel, collection = services.opened_channel(session, context, cs, jc, channel_name)
    # No transaction is open while the message goes out: it may take its whole timeout.
    delivery = services.send_test(runtime().notifier, context, collection, channel)
    with transaction() as session:
        services.record_test(session, context, cs, jc, channel, delivery)
        record_and_wake(session, context, "channel.test", 200, wake=False)
    answer: dict[str, Any] = {"delivered": delivery.delivered}
    if delivery.error is not None:
        answer["error"] = delivery.error
    return json_response(answer)
