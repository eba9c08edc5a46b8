"""A real SMTP server on loopback for the tests of email notifications (aiosmtpd): it
requires STARTTLS, with a certificate of the project's own PKI helpers, then a login; and
keeps every mail it takes."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from scheduler.clock import FrozenClock
from scheduler.security import pki
from scheduler.settings import NotificationSettings, Settings

SMTP_USER, SMTP_PASSWORD = "mailer", "s3cret-pass"
SENDER = "scheduler@example.com"


@dataclass
class Mailbox:
    """What the SMTP server received: one (sender, recipients, message) per mail, and the
    logins it was offered."""

    port: int = 0
    offered: str = ""  # the one login mechanism offered, if only one is
    mails: list[tuple[str, list[str], Message]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session,  # noqa: N802 (aiosmtpd's name)
                          envelope: Envelope) -> str:
        """Keep the mail."""
        content = envelope.original_content or b""
        self.mails.append((str(envelope.mail_from), list(envelope.rcpt_tos),
                           message_from_bytes(content)))
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        """Accept the one login."""
        assert isinstance(auth_data, LoginPassword)
        good = (auth_data.login, auth_data.password) == (SMTP_USER.encode(),
                                                         SMTP_PASSWORD.encode())
        self.logins.append((mechanism, good))
        # Not `handled`: the server answers a refusal with its own 535.
        return AuthResult(success=good, handled=False)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_ca(tmp_path: Path, clock: FrozenClock) -> tuple[Path, ssl.SSLContext]:
    """A CA of the project's pki helpers (its PEM file) and a server context whose
    certificate it issued for 127.0.0.1."""
    ca = pki.create_ca("Test SMTP CA", clock.now() - timedelta(days=1))
    server = pki.issue_server_certificate(ca, ["127.0.0.1"], clock.now() - timedelta(days=1))
    (tmp_path / "smtp-ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "smtp.pem").write_bytes(server.cert_pem)
    (tmp_path / "smtp-key.pem").write_bytes(server.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "smtp.pem", tmp_path / "smtp-key.pem")
    return tmp_path / "smtp-ca.pem", context


@pytest.fixture
def mailbox(request: pytest.FixtureRequest,
            smtp_ca: tuple[Path, ssl.SSLContext]) -> Iterator[Mailbox]:
    """A running SMTP server on loopback that requires STARTTLS, then a login; offering
    the login mechanisms a test names (`indirect`), or both PLAIN and LOGIN."""
    offered = getattr(request, "param", ("PLAIN", "LOGIN"))
    box = Mailbox(port=free_port(), offered=offered[0] if len(offered) == 1 else "")
    controller = Controller(box, hostname="127.0.0.1", port=box.port, tls_context=smtp_ca[1],
                            require_starttls=True, auth_required=True,
                            authenticator=box.authenticate,
                            auth_exclude_mechanism=[mechanism for mechanism in
                                                    ("PLAIN", "LOGIN")
                                                    if mechanism not in offered])
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def mailing_settings(settings: Settings, mailbox: Mailbox, ca_file: Path) -> Settings:
    """`settings`, sending email through the test's SMTP server (its certificate checked
    against `ca_file`) with its login."""
    return replace(settings, notifications=NotificationSettings(
        smtp_host="127.0.0.1", smtp_port=mailbox.port, smtp_username=SMTP_USER,
        smtp_password=SMTP_PASSWORD, smtp_from=SENDER, smtp_ca_file=str(ca_file)))
