"""Notification channels of a job collection, and the messages sent through them.

A channel is where a collection's notifications go: a `webhook` (a JSON POST, signed as
Standard Webhooks says when it has a secret), `email` (through the operator's SMTP server) or
`slack` (an incoming-webhook URL, which is itself the credential). A notification is rendered
once per channel type: the webhook's JSON, Slack's `{"text": ...}`, an email's subject and
plain-text body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.domain import InvalidField

# What a collection holds at most; the services count them.
MAX_CHANNELS = 20
MAX_RECIPIENTS = 20
MAX_NAME_CHARS = 64
MAX_ADDRESS_CHARS = 254  # RFC 5321's longest path, less its angle brackets
MAX_URL_CHARS = 2048
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
# An address as the SMTP envelope takes it: no spaces, quotes, angle brackets or controls,
# so that nothing a client writes can add a header or a recipient.
ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?",
                     re.ASCII)
CHANNEL_TYPES = ("webhook", "email", "slack")
# What a secret field holds when the channel was read without opening its secrets.
SEALED = "<sealed>"


@dataclass(frozen=True, slots=True)
class WebhookChannel:
    """POSTs each notification as JSON to `url`, signed with `secret` (a `whsec_` key)
    when there is one."""

    name: str
    url: str
    secret: str | None = field(default=None, repr=False)

    type = "webhook"


@dataclass(frozen=True, slots=True)
class EmailChannel:
    """Mails each notification to `to` from `sender` (None: the operator's default)."""

    name: str
    to: tuple[str, ...]
    sender: str | None = None

    type = "email"


@dataclass(frozen=True, slots=True)
class SlackChannel:
    """Posts each notification to a Slack incoming webhook; its URL is the credential."""

    name: str
    url: str = field(repr=False)

    type = "slack"


Channel = WebhookChannel | EmailChannel | SlackChannel


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to a channel: `kind` says what happened (`test` for a test message),
    `fields` are the event's facts, `link` where to see more."""

    id: str
    kind: str
    collection: str
    time: datetime
    subject: str
    text: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """Whether a notification reached its channel, and if not, why."""

    delivered: bool
    error: str | None = None


def check_channel_name(name: Any, field_name: str = "name") -> str:
    """The name, unless it is not 1-64 letters, digits, `-` and `_` (InvalidField)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidField(field_name, f"{name!r} is not a channel name: use "
                           f"1-{MAX_NAME_CHARS} letters, digits, '-' and '_'")
    return name


def check_address(value: Any, field_name: str) -> str:
    """An email address as `local@domain`, without display name or comments."""
    if not isinstance(value, str):
        raise InvalidField(field_name, "must be a string")
    if len(value) > MAX_ADDRESS_CHARS or not ADDRESS.fullmatch(value) \
            or ".." in value.partition("@")[2]:
        raise InvalidField(field_name, f"{value[:100]!r} is not an email address such as "
                           "someone@example.com")
    return value


def test_message(notification_id: str, collection: str, channel: str,
                      now: datetime) -> Notification:
    """The message a channel's test sends."""
    return Notification(
        id=notification_id, kind="test", collection=collection, time=now,
        subject=f"Test notification from job collection {collection}",
        text=(f"This is a test of the notification channel {channel} of the job collection "
              f"{collection}. If you read this, the channel works."),
        fields={"channel": channel})


# --- rendering -------------------------------------------------------------------------------

def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def webhook_body(notification: Notification) -> dict[str, Any]:
    """The JSON document a webhook channel POSTs: the event's facts, then its words."""
    body: dict[str, Any] = {**notification.fields, "type": notification.kind,
                            "id": notification.id, "collection": notification.collection,
                            "time": _time(notification.time),
                            "subject": notification.subject, "text": notification.text}
    if notification.link is not None:
        body["link"] = notification.link
    return body


def slack_body(notification: Notification) -> dict[str, Any]:
    """The document a Slack incoming webhook takes: the subject in bold, the text, the link."""
    lines = [f"*{notification.subject}*", notification.text]
    if notification.link is not None:
        lines.append(f"<{notification.link}|Open in the scheduler>")
    return {"text": "\n".join(lines)}


def email_text(notification: Notification) -> tuple[str, str]:
    """An email's subject and plain-text body."""
    lines = [notification.text, ""]
    lines.extend(f"{key}: {value}" for key, value in notification.fields.items())
    lines.append(f"time: {_time(notification.time)}")
    if notification.link is not None:
        lines.extend(["", notification.link])
    return notification.subject, "\n".join(lines) + "\n"
