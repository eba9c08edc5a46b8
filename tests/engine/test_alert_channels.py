"""An alert delivered through each kind of channel, by the engine's courier: a real SMTP
server that requires STARTTLS and a login, and a Slack-shaped incoming webhook."""

from __future__ import annotations

import json
import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler.actions.notify import NotificationSender, SmtpServer
from scheduler.clock import FrozenClock
from scheduler.settings import Settings
from tests.engine.harness import DASHBOARD_ORIGIN, MakeDriver, NodeDriver, Receiver
from tests.mail import SENDER, SMTP_PASSWORD, SMTP_USER, Mailbox, mailing_settings
from tests.support import JOBS, Tenant

COLLECTION = JOBS.rsplit("/", 1)[0]


@pytest.fixture
def settings(settings: Settings, mailbox: Mailbox,
             smtp_ca: tuple[Path, ssl.SSLContext]) -> Settings:
    """The usual test settings, sending email through the test's SMTP server."""
    return mailing_settings(settings, mailbox, smtp_ca[0])


@pytest.fixture
def alerting(make_driver: MakeDriver, clock: FrozenClock, mailbox: Mailbox,
             smtp_ca: tuple[Path, ssl.SSLContext]) -> NodeDriver:
    """An engine node whose courier mails through the test's SMTP server."""
    smtp = SmtpServer(host="127.0.0.1", port=mailbox.port, username=SMTP_USER,
                      password=SMTP_PASSWORD, default_sender=SENDER, ca_file=smtp_ca[0])
    return make_driver(alerts=NotificationSender(True, smtp, clock=clock))


def test_a_failure_alert_is_mailed_and_posted_to_slack(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, mailbox: Mailbox,
    clock: FrozenClock,
) -> None:
    for name, channel in (("oncall", {"type": "email", "to": ["oncall@example.com"]}),
                          ("chat", {"type": "slack",
                                    "url": receiver.url("/services/T0/B0/secret")})):
        response = collection.call("PUT", f"{COLLECTION}/notificationChannels/{name}", channel)
        assert response.status_code == 201, response.data
    receiver.answers["/broken"] = (500, {}, b"upstream is down")
    job = receiver.minutely(action={"type": "http", "request": {
        "uri": receiver.url("/broken"), "method": "GET"}, "retryPolicy": {"retryType": "none"}},
        alerts={"on": ["failed"], "channels": ["oncall", "chat"]})
    assert collection.call("PUT", f"{JOBS}/nightly", job).status_code == 201
    clock.set(datetime(2026, 3, 1, 12, 1, tzinfo=UTC))
    while alerting.step():
        pass
    alerting.settle()
    [(sender, recipients, mail)] = mailbox.mails
    assert (sender, recipients) == (SENDER, ["oncall@example.com"])
    assert mail["Subject"] == "Job nightly failed in jc1"
    body = mail.get_payload()
    assert "The job nightly failed." in body and "upstream is down" in body
    assert f"{DASHBOARD_ORIGIN}/ui/" in body
    [posted] = [request for request in receiver.requests if request.path.startswith("/services")]
    text = json.loads(posted.body)["text"]
    assert text.startswith("*Job nightly failed in jc1*\nThe job nightly failed.")
    assert "|Open in the scheduler>" in text
    [alert] = collection.call("GET", f"{JOBS}/nightly/alerts").get_json()["value"]
    assert alert["status"] == "sent"
    assert {name: entry["delivered"] for name, entry in alert["deliveries"].items()} == {
        "oncall": True, "chat": True}
