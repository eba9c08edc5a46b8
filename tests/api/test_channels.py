"""A job collection's notification channels over the API, on both databases: created,
replaced, read, listed and deleted; every document that breaks a rule refused naming the
field, with nothing stored; secrets sealed at rest and never answered; each change audited;
a collection's channels go with it; and the test message, delivered to a real webhook
receiver (its signature checked by the standardwebhooks package), a Slack-shaped endpoint and
a real SMTP server with STARTTLS and a login, or not delivered, saying why."""

from __future__ import annotations

import json
import ssl
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.models import NotificationChannel
from scheduler.db.session import Database
from scheduler.domain.notifications import MAX_CHANNELS
from scheduler.settings import NotificationSettings, Settings
from tests.engine.harness import Receiver
from tests.mail import SENDER, Mailbox, free_port, mailing_settings
from tests.support import CLOUD_SERVICE_XML, Tenant, collection_xml, new_tenant

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"
CHANNELS = f"{COLLECTION}/notificationChannels"
ASM_COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"


@pytest.fixture
def settings(settings: Settings, mailbox: Mailbox,
             smtp_ca: tuple[Path, ssl.SSLContext]) -> Settings:
    """The usual test settings, sending email through the test's SMTP server."""
    return mailing_settings(settings, mailbox, smtp_ca[0])


# --- helpers ---------------------------------------------------------------------------------

def put(tenant: Tenant, name: str, document: Any, status: int) -> dict[str, Any]:
    """PUT a channel, which must answer `status`; the document answered."""
    response = tenant.call("PUT", f"{CHANNELS}/{name}", document)
    assert response.status_code == status, response.data
    answered: dict[str, Any] = response.get_json()
    return answered


def listed(tenant: Tenant) -> list[dict[str, Any]]:
    """The collection's channels, which must answer 200."""
    response = tenant.call("GET", CHANNELS)
    assert response.status_code == 200, response.data
    value: list[dict[str, Any]] = response.get_json()["value"]
    return value


def refusal(tenant: Tenant, name: str, document: Any) -> str:
    """The message of a PUT that must be refused with 400."""
    response = tenant.call("PUT", f"{CHANNELS}/{name}", document)
    assert response.status_code == 400, response.data
    message: str = response.get_json()["error"]["message"]
    return message


def sent_test(tenant: Tenant, name: str) -> dict[str, Any]:
    """POST a channel's test, which must answer 200; the answer."""
    response = tenant.call("POST", f"{CHANNELS}/{name}/test")
    assert response.status_code == 200, response.data
    answered: dict[str, Any] = response.get_json()
    return answered


def audit(tenant: Tenant) -> list[tuple[str, str | None]]:
    """The collection's audit, newest first, as (kind, detail)."""
    response = tenant.call("GET", f"{COLLECTION}/audit")
    assert response.status_code == 200, response.data
    return [(change["kind"], change.get("detail")) for change in response.get_json()["value"]]


def stored_rows(db: Database) -> list[tuple[str, str, bytes | None]]:
    """Every stored channel as (name, document, sealed secrets)."""
    with db.snapshot() as session:
        rows = session.execute(select(NotificationChannel.name, NotificationChannel.document,
                                      NotificationChannel.secrets))
        return [(name, document, secrets) for name, document, secrets in rows]


# --- writing and reading ---------------------------------------------------------------------

def test_channels_are_created_read_replaced_listed_and_deleted(collection: Tenant) -> None:
    created = put(collection, "Ops", {"type": "email", "to": ["a@example.com"]}, 201)
    assert created == {"name": "Ops", "type": "email", "to": ["a@example.com"]}
    assert collection.call("GET", f"{CHANNELS}/OPS").get_json() == created
    replaced = put(collection, "ops", {"type": "webhook", "url": "https://example.com/h"}, 200)
    assert replaced == {"name": "Ops", "type": "webhook", "url": "https://example.com/h"}
    put(collection, "alpha", {"type": "slack", "url": SLACK}, 201)
    assert [item["name"] for item in listed(collection)] == ["alpha", "Ops"]
    assert listed(collection)[1] == replaced

    response = collection.call("DELETE", f"{CHANNELS}/oPs")
    assert response.status_code == 204 and response.data == b""
    assert collection.call("GET", f"{CHANNELS}/ops").status_code == 404
    assert collection.call("DELETE", f"{CHANNELS}/ops").status_code == 404
    assert [item["name"] for item in listed(collection)] == ["alpha"]


def test_missing_channels_and_collections_answer_404(collection: Tenant) -> None:
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/test")):
        response = collection.call(method, f"{CHANNELS}/nothing{suffix}")
        assert response.status_code == 404, response.data
        assert response.get_json()["error"]["message"] == (
            "The notification channel nothing does not exist.")
    elsewhere = CHANNELS.replace("jc1", "jc2")
    for method, path in (("GET", elsewhere), ("GET", f"{elsewhere}/x"),
                         ("PUT", f"{elsewhere}/x"), ("POST", f"{elsewhere}/x/test")):
        body = {"type": "slack", "url": SLACK} if method == "PUT" else None
        response = collection.call(method, path, body)
        assert response.status_code == 404, (method, path, response.data)
        assert "jc2 does not exist" in response.get_json()["error"]["message"]


def test_secrets_are_never_answered_and_sealed_at_rest(collection: Tenant,
                                                      db: Database) -> None:
    webhook = {"type": "webhook", "url": "https://example.com/hook", "secret": SECRET}
    answers = [put(collection, "signed", webhook, 201),
               put(collection, "team", {"type": "slack", "url": SLACK}, 201),
               put(collection, "signed", webhook, 200)]
    answers += [collection.call("GET", f"{CHANNELS}/{name}").get_json()
                for name in ("signed", "team")]
    answers += listed(collection)
    answers += [collection.call("GET", f"{COLLECTION}/audit").get_json()]
    shown = json.dumps(answers)
    assert SECRET not in shown and "XXXXXXXX" not in shown and "/services/" not in shown
    assert answers[0] == {"name": "signed", "type": "webhook",
                          "url": "https://example.com/hook", "secret": "<redacted>"}
    assert answers[1] == {"name": "team", "type": "slack",
                          "url": "<redacted: https://hooks.slack.com/…>"}
    rows = stored_rows(db)
    assert len(rows) == 2
    for _name, document, sealed in rows:
        assert sealed is not None
        assert SECRET not in document and "XXXXXXXX" not in document
        assert SECRET.encode() not in sealed and b"XXXXXXXX" not in sealed


def test_a_replace_without_the_secret_drops_it(collection: Tenant, db: Database) -> None:
    put(collection, "hook", {"type": "webhook", "url": "https://example.com/h",
                             "secret": SECRET}, 201)
    answered = put(collection, "hook", {"type": "webhook", "url": "https://example.com/h"}, 200)
    assert "secret" not in answered
    assert stored_rows(db) == [("hook", stored_rows(db)[0][1], None)]


def test_a_redacted_secret_sent_back_is_refused(collection: Tenant) -> None:
    shown = put(collection, "hook", {"type": "webhook", "url": "https://example.com/h",
                                     "secret": SECRET}, 201)
    assert refusal(collection, "hook", shown).startswith("secret: holds the redacted form")
    slack = put(collection, "team", {"type": "slack", "url": SLACK}, 201)
    assert refusal(collection, "team", slack).startswith("url: holds the redacted form")


BAD_DOCUMENTS: list[tuple[Any, str]] = [
    ({"type": "pager", "url": SLACK}, "type: must be one of webhook, email, slack"),
    ({"url": SLACK}, "type: is required"),
    ({"type": "slack"}, "url: is required"),
    ({"type": "slack", "url": 5}, "url: must be a string"),
    ({"type": "slack", "url": "ftp://example.com/x"}, "url: must be an absolute http or https"),
    ({"type": "slack", "url": "https:///path"}, "url: must be an absolute http or https"),
    ({"type": "slack", "url": "/relative"}, "url: must be an absolute http or https"),
    ({"type": "webhook", "url": "https://example.com:99999/"}, "url: must be an absolute"),
    ({"type": "webhook", "url": "https://example.com/a b"}, "url: must not contain spaces"),
    ({"type": "webhook", "url": "https://example.com/" + "x" * 2048}, "url: must be at most"),
    ({"type": "webhook", "url": "https://example.com/", "secret": "hunter2"},
     "secret: must be whsec_"),
    ({"type": "webhook", "url": "https://example.com/", "secret": 7}, "secret: must be a str"),
    ({"type": "webhook", "url": "https://example.com/", "to": ["a@example.com"]},
     "to: is not a field of a webhook channel"),
    ({"type": "slack", "url": SLACK, "secret": SECRET}, "secret: is not a field of a slack"),
    ({"type": "email", "to": "a@example.com"}, "to: must be a JSON array of 1 to 20"),
    ({"type": "email", "to": []}, "to: must be a JSON array of 1 to 20"),
    ({"type": "email", "to": [f"u{i}@example.com" for i in range(21)]}, "to: must be a JSON"),
    ({"type": "email", "to": ["a@example.com", "not an address"]},
     "to[1]: 'not an address' is not an email address"),
    ({"type": "email", "to": ["a@example.com\r\nBcc: b@example.com"]}, "to[0]: "),
    ({"type": "email", "to": ["Ann <a@example.com>"]}, "to[0]: "),
    ({"type": "email", "to": [3]}, "to[0]: must be a string"),
    ({"type": "email", "to": ["a@example.com"], "from": "me"}, "from: 'me' is not an email"),
    ({"type": "email", "to": ["a@example.com"], "url": SLACK},
     "url: is not a field of a email channel"),
    ({"type": "slack", "url": SLACK, "name": "other"}, "name: must be the channel's name"),
    (["slack"], "the channel must be a JSON object"),
]


@pytest.mark.parametrize(("document", "message"), BAD_DOCUMENTS,
                         ids=[message.split(":")[0] + f"-{index}"
                              for index, (_, message) in enumerate(BAD_DOCUMENTS)])
def test_a_document_that_breaks_a_rule_is_refused_naming_the_field_and_stores_nothing(
        collection: Tenant, db: Database, document: Any, message: str) -> None:
    put(collection, "kept", {"type": "slack", "url": SLACK}, 201)
    before, audited, rows = listed(collection), audit(collection), stored_rows(db)
    assert refusal(collection, "kept", document).startswith(message)
    assert refusal(collection, "new", document).startswith(message)
    assert listed(collection) == before
    assert audit(collection) == audited
    assert stored_rows(db) == rows


@pytest.mark.parametrize("name", ["with.dot", "x" * 65, "spaced%20name", "caf%C3%A9"])
def test_a_name_that_is_not_one_is_refused(collection: Tenant, name: str) -> None:
    assert refusal(collection, name, {"type": "slack", "url": SLACK}).startswith("name: ")
    assert listed(collection) == []


def test_a_body_that_is_not_json_is_refused(collection: Tenant) -> None:
    response = collection.call("PUT", f"{CHANNELS}/hook", data="{",
                               content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.get_json()["error"]["message"]
    assert listed(collection) == []


def test_a_collection_holds_at_most_twenty_channels(collection: Tenant, db: Database) -> None:
    for index in range(MAX_CHANNELS):
        put(collection, f"c{index}", {"type": "slack", "url": SLACK}, 201)
    response = collection.call("PUT", f"{CHANNELS}/one-more", {"type": "slack", "url": SLACK})
    assert response.status_code == 409, response.data
    assert response.get_json()["error"]["message"] == (
        "The notification channel breaks a quota: a job collection holds at most 20 channels, "
        "and this one holds 20.")
    assert put(collection, "c0", {"type": "email", "to": ["a@example.com"]}, 200)["name"] == "c0"
    with db.snapshot() as session:
        assert session.scalar(select(func.count()).select_from(NotificationChannel)) == 20


def test_a_deleted_collection_takes_its_channels(collection: Tenant, db: Database) -> None:
    put(collection, "team", {"type": "slack", "url": SLACK}, 201)
    put(collection, "ops", {"type": "email", "to": ["a@example.com"]}, 201)
    assert collection.call("DELETE", ASM_COLLECTION).status_code == 202
    assert collection.call("GET", CHANNELS).status_code == 404
    assert stored_rows(db) == []
    assert collection.call("PUT", ASM_COLLECTION, collection_xml()).status_code == 202
    assert listed(collection) == []


def test_another_subscriptions_collection_is_not_found(collection: Tenant,
                                                       other_tenant: Tenant) -> None:
    put(collection, "team", {"type": "slack", "url": SLACK}, 201)
    for method, path, body in (("GET", "team", None), ("PUT", "team", {"type": "slack",
                                                                        "url": SLACK}),
                               ("DELETE", "team", None), ("POST", "team/test", None)):
        response = other_tenant.call(method, f"{CHANNELS}/{path}", body)
        assert response.status_code == 404, (method, response.data)
    assert [item["name"] for item in listed(collection)] == ["team"]


def test_every_change_is_audited_without_a_secret(collection: Tenant,
                                                  receiver: Receiver) -> None:
    put(collection, "hook", {"type": "webhook", "url": receiver.url("/h"), "secret": SECRET},
        201)
    put(collection, "hook", {"type": "email", "to": ["a@example.com", "b@example.com"],
                             "from": "me@example.com"}, 200)
    put(collection, "team", {"type": "slack", "url": SLACK}, 201)
    put(collection, "hook", {"type": "webhook", "url": receiver.url("/h")}, 200)
    sent_test(collection, "hook")
    collection.call("DELETE", f"{CHANNELS}/hook")
    collection.call("DELETE", f"{CHANNELS}/hook")  # a 404 records nothing
    assert audit(collection)[:6] == [
        ("channel.delete", "channel hook"),
        ("channel.test", "channel hook: delivered"),
        ("channel.put", f"channel hook: webhook to {receiver.url('/h')}"),
        ("channel.create", "channel team: slack to https://hooks.slack.com"),
        ("channel.put", "channel hook: email to a@example.com, b@example.com from "
                        "me@example.com"),
        ("channel.create", f"channel hook: webhook to {receiver.url('/h')}, signed"),
    ]


def test_the_paths_match_in_any_case(collection: Tenant, receiver: Receiver) -> None:
    put(collection, "hook", {"type": "webhook", "url": receiver.url("/h")}, 201)
    base = "/CloudServices/CS1/resources/scheduler/~/JobCollections/JC1"
    for words in ("notificationChannels", "NOTIFICATIONCHANNELS", "notificationchannels"):
        assert collection.call("GET", f"{base}/{words}/HOOK").get_json()["name"] == "hook"
        assert collection.call("GET", f"{base}/{words}").get_json()["value"][0]["name"] == "hook"
    response = collection.call("POST", f"{base}/NotificationChannels/Hook/TEST")
    assert response.get_json() == {"delivered": True}


def test_a_channel_write_is_pollable_by_its_request_id(collection: Tenant) -> None:
    response = collection.call("PUT", f"{CHANNELS}/team", {"type": "slack", "url": SLACK})
    operation = collection.call("GET", f"/operations/{response.headers['x-ms-request-id']}")
    assert b"<HttpStatusCode>201</HttpStatusCode>" in operation.data


# --- the test message ------------------------------------------------------------------------

def test_a_webhook_gets_a_signed_json_test_message(collection: Tenant, receiver: Receiver,
                                                   clock: FrozenClock) -> None:
    put(collection, "hook", {"type": "webhook", "url": receiver.url("/hook"),
                             "secret": SECRET}, 201)
    assert sent_test(collection, "hook") == {"delivered": True}
    [received] = receiver.requests
    assert (received.method, received.path) == ("POST", "/hook")
    assert received.header("content-type") == "application/json"
    body = json.loads(received.body)
    assert body == {"type": "test", "id": received.header("webhook-id"), "collection": "jc1",
                    "time": "2026-03-01T12:00:00Z", "channel": "hook",
                    "subject": "Test notification from job collection jc1",
                    "text": body["text"]}
    assert "channel hook" in body["text"]
    with freeze_time(clock.now()):
        assert Webhook(SECRET).verify(received.body, received.headers) == body
    assert received.header("webhook-timestamp") == str(int(clock.now().timestamp()))


def test_an_unsigned_webhook_carries_no_signature(collection: Tenant,
                                                  receiver: Receiver) -> None:
    put(collection, "hook", {"type": "webhook", "url": receiver.url("/hook")}, 201)
    assert sent_test(collection, "hook") == {"delivered": True}
    assert receiver.requests[0].header("webhook-signature") == ""


def test_slack_gets_its_text(collection: Tenant, receiver: Receiver) -> None:
    put(collection, "team", {"type": "slack", "url": receiver.url("/services/T/B/x")}, 201)
    assert sent_test(collection, "team") == {"delivered": True}
    [received] = receiver.requests
    assert received.path == "/services/T/B/x"
    text = json.loads(received.body)["text"]
    assert json.loads(received.body) == {"text": text}
    assert text.startswith("*Test notification from job collection jc1*\n")
    assert "notification channel team" in text


def test_a_target_that_fails_is_not_delivered_and_says_why(collection: Tenant,
                                                           receiver: Receiver) -> None:
    receiver.answers["/broken"] = (500, {}, b"upstream is down")
    put(collection, "hook", {"type": "webhook", "url": receiver.url("/broken")}, 201)
    assert sent_test(collection, "hook") == {
        "delivered": False,
        "error": "the target answered 500 Internal Server Error: upstream is down"}
    assert audit(collection)[0] == (
        "channel.test", "channel hook: not delivered: the target answered 500 Internal Server "
                        "Error: upstream is down")


def test_a_target_that_does_not_answer_is_not_delivered(collection: Tenant) -> None:
    put(collection, "hook", {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/"},
        201)
    answer = sent_test(collection, "hook")
    assert answer["delivered"] is False
    assert "127.0.0.1" in answer["error"]


def test_email_arrives_through_starttls_and_a_login(collection: Tenant,
                                                    mailbox: Mailbox) -> None:
    put(collection, "ops", {"type": "email", "to": ["a@example.com", "b@example.com"],
                            "from": "alerts@example.com"}, 201)
    put(collection, "fallback", {"type": "email", "to": ["c@example.com"]}, 201)
    assert sent_test(collection, "ops") == {"delivered": True}
    assert sent_test(collection, "fallback") == {"delivered": True}
    [(sender, recipients, message), (default_sender, others, _)] = mailbox.mails
    assert (sender, recipients) == ("alerts@example.com", ["a@example.com", "b@example.com"])
    assert (default_sender, others) == (SENDER, ["c@example.com"])
    assert message["Subject"] == "Test notification from job collection jc1"
    assert message["From"] == "alerts@example.com"
    assert message["To"] == "a@example.com, b@example.com"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert "notification channel ops of the job collection jc1" in body.decode()
    assert "time: 2026-03-01T12:00:00Z" in body.decode()
    assert [good for _, good in mailbox.logins] == [True, True]


@pytest.mark.parametrize("mailbox", [("LOGIN",), ("PLAIN",)], indirect=True,
                         ids=["login", "plain"])
def test_either_login_mechanism_is_used(collection: Tenant, mailbox: Mailbox) -> None:
    put(collection, "ops", {"type": "email", "to": ["a@example.com"]}, 201)
    assert sent_test(collection, "ops") == {"delivered": True}
    assert [address for _, address, _ in mailbox.mails] == [["a@example.com"]]
    assert mailbox.logins == [(mailbox.offered, True)]


def test_an_smtp_server_that_refuses_the_login_is_not_delivered(
        collection: Tenant, settings: Settings, clock: FrozenClock, db: Database,
        mailbox: Mailbox) -> None:
    wrong = replace(settings, notifications=replace(settings.notifications,
                                                    smtp_password="wrong"))
    tenant = new_tenant(create_app(wrong, clock, db=db, background=False), db, clock, "other")
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    tenant.call("PUT", ASM_COLLECTION, collection_xml())
    put(tenant, "ops", {"type": "email", "to": ["a@example.com"]}, 201)
    answer = sent_test(tenant, "ops")
    assert answer["delivered"] is False
    assert answer["error"].startswith(
        f"the SMTP server 127.0.0.1:{mailbox.port} refused the login: 535")
    assert mailbox.mails == []


def test_an_smtp_server_whose_certificate_is_not_trusted_is_not_delivered(
        settings: Settings, clock: FrozenClock, db: Database, mailbox: Mailbox) -> None:
    untrusted = replace(settings, notifications=replace(settings.notifications,
                                                        smtp_ca_file=""))
    tenant = new_tenant(create_app(untrusted, clock, db=db, background=False), db, clock,
                        "other")
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    tenant.call("PUT", ASM_COLLECTION, collection_xml())
    put(tenant, "ops", {"type": "email", "to": ["a@example.com"]}, 201)
    answer = sent_test(tenant, "ops")
    assert answer["delivered"] is False
    assert "CERTIFICATE_VERIFY_FAILED" in answer["error"]
    assert mailbox.mails == [] and mailbox.logins == []


# --- the operator's settings -----------------------------------------------------------------

def tenant_of(settings: Settings, clock: FrozenClock, db: Database) -> Tenant:
    """A tenant with a collection, on an API built with `settings`."""
    app: Flask = create_app(settings, clock, db=db, background=False)
    tenant = new_tenant(app, db, clock, "guarded")
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert tenant.call("PUT", ASM_COLLECTION, collection_xml()).status_code == 202
    return tenant


@pytest.mark.parametrize("kind", ["webhook", "slack"])
def test_a_private_address_is_refused_unless_allowed(settings: Settings, clock: FrozenClock,
                                                     db: Database, kind: str) -> None:
    closed = replace(settings, outbound=replace(settings.outbound,
                                                allow_private_networks=False))
    tenant = tenant_of(closed, clock, db)
    for host in ("127.0.0.1", "10.0.0.5", "169.254.169.254", "[::1]", "0x7f.1"):
        message = refusal(tenant, "c", {"type": kind, "url": f"http://{host}/x"})
        assert message.startswith("url: the host") and "allow_private_networks" in message
    assert listed(tenant) == []
    assert put(tenant, "c", {"type": kind, "url": "https://example.com/x"}, 201)


def test_a_name_resolving_to_a_private_address_is_not_called(
        settings: Settings, clock: FrozenClock, db: Database, receiver: Receiver) -> None:
    closed = replace(settings, outbound=replace(settings.outbound,
                                                allow_private_networks=False))
    tenant = tenant_of(closed, clock, db)
    put(tenant, "hook", {"type": "webhook", "url": receiver.url("/h", host="localhost")}, 201)
    answer = sent_test(tenant, "hook")
    assert answer["delivered"] is False
    assert "allow_private_networks" in answer["error"]
    assert receiver.requests == []


def test_email_channels_are_refused_without_an_smtp_server(
        settings: Settings, clock: FrozenClock, db: Database) -> None:
    tenant = tenant_of(replace(settings, notifications=NotificationSettings()), clock, db)
    message = refusal(tenant, "ops", {"type": "email", "to": ["a@example.com"]})
    assert message.startswith("type: email channels need an SMTP server, and the operator "
                              "has not configured one (notifications.smtp_host)")
    assert listed(tenant) == []


def test_email_channels_name_a_sender_without_the_operators_default(
        settings: Settings, clock: FrozenClock, db: Database) -> None:
    tenant = tenant_of(replace(settings, notifications=replace(settings.notifications,
                                                               smtp_from="")), clock, db)
    assert refusal(tenant, "ops", {"type": "email", "to": ["a@example.com"]}).startswith(
        "from: is required: the operator has set no default sender")
    assert put(tenant, "ops", {"type": "email", "to": ["a@example.com"],
                               "from": "me@example.com"}, 201)["from"] == "me@example.com"
