"""The stored form of a notification channel: the project's own JSON (`"v": 1`, snake_case)
without its secrets, which are sealed apart, and its name in its own column. Only this module
reads or writes it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import InvalidToken

from scheduler.db.stored_jobs import Sealer
from scheduler.domain.notifications import (
    SEALED,
    Channel,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
)

# The stored form's version: a later form can tell the rows written before it.
STORED_VERSION = 1


class StoredChannelError(ValueError):
    """A stored channel this version cannot read, or whose secrets do not open."""


def slack_origin(url: str) -> str:
    """The scheme and host of a Slack URL: what may be shown of it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def stored_form(channel: Channel) -> tuple[str, dict[str, str]]:
    """A channel as it is stored (its name apart): the JSON document, and the secrets to
    seal."""
    form: dict[str, Any] = {"v": STORED_VERSION, "type": channel.type}
    secrets: dict[str, str] = {}
    if isinstance(channel, WebhookChannel):
        form["url"] = channel.url
        form["signed"] = channel.secret is not None
        if channel.secret is not None:
            secrets["secret"] = channel.secret
    elif isinstance(channel, EmailChannel):
        form["to"], form["sender"] = list(channel.to), channel.sender
    else:
        # Only the origin stays in clear: the rest of the URL is the credential.
        form["origin"] = slack_origin(channel.url)
        secrets["url"] = channel.url
    return json.dumps(form, separators=(",", ":")), secrets


def seal_channel(channel: Channel, box: Sealer) -> tuple[str, bytes | None]:
    """A channel's stored document and its secrets sealed with the box (None if it has
    none): the two columns it is kept in."""
    text, secrets = stored_form(channel)
    return text, box.seal(secrets)


def public_channel(name: str, text: str) -> Channel:
    """A stored channel with its secrets left sealed: a webhook's secret reads `SEALED`, a
    Slack URL its origin. For what is shown of a channel, which never includes a secret."""
    return _load(name, text, None)


def open_channel(name: str, text: str, sealed: bytes | None, box: Sealer) -> Channel:
    """A stored channel with its secrets opened; StoredChannelError if they do not open."""
    try:
        secrets = box.open(sealed)
    except InvalidToken:
        raise StoredChannelError(f"the secrets of the channel {name} do not open with this "
                                 "home's keys") from None
    return _load(name, text, secrets)


def load_channel(name: str, text: str, secrets: dict[str, str]) -> Channel:
    """A stored channel with its secrets given opened (as an export file carries them);
    StoredChannelError if it does not read."""
    return _load(name, text, secrets)


def _load(name: str, text: str, secrets: dict[str, str] | None) -> Channel:
    """A stored channel, its secrets from `secrets` (None: left sealed)."""
    try:
        form: dict[str, Any] = json.loads(text)
        kind = form["type"]
        if kind == "webhook":
            secret = None
            if form["signed"]:
                secret = SEALED if secrets is None else secrets["secret"]
            return WebhookChannel(name, form["url"], secret)
        if kind == "email":
            return EmailChannel(name, tuple(form["to"]), form["sender"])
        if kind == "slack":
            return SlackChannel(name, form["origin"] if secrets is None else secrets["url"])
    except (ValueError, KeyError, TypeError):
        pass
    raise StoredChannelError(f"the stored channel {name} cannot be read by this version")
