"""Sending notifications to channels: webhooks and Slack over the jobs' HTTP client (so that
`outbound.allow_private_networks` holds for them as for any target), email over SMTP with
STARTTLS and a login.

`NotificationSender.send` blocks until the message is delivered or has failed, within its
timeout, and never raises for a target's failure: the `Delivery` says what went wrong.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from scheduler.actions.http import HttpCaller, HttpOutcome, HttpRequest
from scheduler.clock import Clock, SystemClock
from scheduler.domain.notifications import (
    Channel,
    Delivery,
    EmailChannel,
    Notification,
    WebhookChannel,
    email_text,
    slack_body,
    webhook_body,
)
from scheduler.domain.signatures import Signer, secret_key

DEFAULT_TIMEOUT = 10.0
# How much of a refusing target's answer a failed delivery quotes.
QUOTED_BODY_CHARS = 200
USER_AGENT = "scheduler-notifications"


@dataclass(frozen=True)
class SmtpServer:
    """The operator's SMTP server: where email channels send, and how."""

    host: str = ""
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: str = field(default="", repr=False)
    default_sender: str = ""
    timeout: float = DEFAULT_TIMEOUT
    ca_file: Path | None = None  # None: the system's trust store

    def tls_context(self) -> ssl.SSLContext:
        """The context the server's certificate is checked with."""
        return ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None)


class NotificationSender:
    """Sends one notification to one channel, now (`scheduler.services.notifications`'
    ChannelSender)."""

    def __init__(self, allow_private_networks: bool, smtp: SmtpServer, *,
                 clock: Clock | None = None, timeout: float = DEFAULT_TIMEOUT,
                 tls_context: Callable[[], ssl.SSLContext] = ssl.create_default_context
                 ) -> None:
        self.allow_private_networks = allow_private_networks
        self.smtp = smtp
        self.clock = clock or SystemClock()
        self.timeout = timeout
        self._tls_context = tls_context

    def send(self, channel: Channel, notification: Notification) -> Delivery:
        """Deliver the notification to the channel, or say why it was not."""
        if isinstance(channel, EmailChannel):
            return self.send_email(channel, notification)
        if isinstance(channel, WebhookChannel):
            signer = None
            if channel.secret is not None:
                signer = Signer(notification.id, (secret_key(channel.secret),))
            return self.post(channel.url, webhook_body(notification), signer)
        return self.post(channel.url, slack_body(notification), None)

    # --- webhooks and Slack --------------------------------------------------------------------

    def post(self, url: str, document: object, signer: Signer | None) -> Delivery:
        """POST a JSON document; delivered on a 2xx answer within the timeout."""
        request = HttpRequest("POST", url, {"Content-Type": "application/json",
                                            "User-Agent": USER_AGENT},
                              json.dumps(document, separators=(",", ":")), signer=signer)
        outcome = asyncio.run(self._call(request))
        if outcome.success:
            return Delivery(True)
        if outcome.status_code is None:
            return Delivery(False, outcome.message)
        answered = outcome.body.strip()[:QUOTED_BODY_CHARS]
        return Delivery(False, f"the target answered {outcome.status_code} {outcome.reason}"
                        + (f": {answered}" if answered else ""))

    async def _call(self, request: HttpRequest) -> HttpOutcome:
        """One call on a client of its own, closed after it."""
        caller = HttpCaller(self.allow_private_networks, max_connections_per_host=1,
                            tls_context=self._tls_context, clock=self.clock)
        try:
            return await caller.call(request, self.timeout)
        finally:
            await caller.close()

    # --- email ---------------------------------------------------------------------------------

    def send_email(self, channel: EmailChannel, notification: Notification) -> Delivery:
        """Mail the notification through the operator's SMTP server."""
        smtp = self.smtp
        if not smtp.host:
            return Delivery(False, "the operator has not configured an SMTP server "
                                   "(notifications.smtp_host)")
        sender = channel.sender or smtp.default_sender
        if not sender:
            return Delivery(False, "the channel names no sender and notifications.smtp_from "
                                   "is not set")
        message = email_message(notification, sender, channel.to)
        where = f"the SMTP server {smtp.host}:{smtp.port}"
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
                if smtp.starttls:
                    client.starttls(context=smtp.tls_context())
                if smtp.username:
                    # No initial response: Python 3.11's AUTH LOGIN sends the user name
                    # where the password belongs when it starts with one (bpo-27820).
                    client.login(smtp.username, smtp.password, initial_response_ok=False)
                client.send_message(message, from_addr=sender, to_addrs=list(channel.to))
        except smtplib.SMTPAuthenticationError as exc:
            return Delivery(False, f"{where} refused the login: {_smtp_reason(exc)}")
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            return Delivery(False, f"{where} refused the recipients {refused}")
        except smtplib.SMTPResponseException as exc:
            return Delivery(False, f"{where} answered {_smtp_reason(exc)}")
        except (smtplib.SMTPException, OSError) as exc:
            return Delivery(False, f"{where}: {exc or type(exc).__name__}")
        return Delivery(True)


def email_message(notification: Notification, sender: str, to: tuple[str, ...]
                  ) -> EmailMessage:
    """The email of a notification, plain text."""
    subject, body = email_text(notification)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(notification.time)
    message["Message-ID"] = make_msgid(notification.id)
    message.set_content(body)
    return message


def _smtp_reason(exc: smtplib.SMTPResponseException) -> str:
    """An SMTP server's code and words."""
    words = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) \
        else str(exc.smtp_error)
    return f"{exc.smtp_code} {words}"
