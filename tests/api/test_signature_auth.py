"""The `Signature` authentication of HTTP actions: `whsec_` secrets, refused when malformed,
sealed at rest and never shown."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.db.models import Job
from scheduler.db.session import Database
from tests.support import JOBS, Tenant, http_job

AUTH = "action.request.authentication"


def whsec(size: int, fill: int = 7) -> str:
    """A Standard Webhooks secret of `size` bytes."""
    return "whsec_" + base64.b64encode(bytes([fill]) * size).decode()


SECRET, PREVIOUS = whsec(32), whsec(24, fill=9)


def signed(authentication: dict[str, Any], **request: Any) -> dict[str, Any]:
    """An HTTP job with this authentication."""
    job = http_job()
    job["action"]["request"].update(authentication=authentication, **request)
    return job


def job_count(db: Database) -> int:
    with db.snapshot() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


BAD = [
    (f"{AUTH}.secret", {"type": "Signature"}),
    (f"{AUTH}.secret", {"type": "Signature", "previousSecret": PREVIOUS}),
    (f"{AUTH}.secret", {"type": "Signature", "secret": SECRET.removeprefix("whsec_")}),
    (f"{AUTH}.secret", {"type": "Signature", "secret": "whsec_not*base64!"}),
    (f"{AUTH}.secret", {"type": "Signature", "secret": whsec(23)}),
    (f"{AUTH}.secret", {"type": "Signature", "secret": whsec(65)}),
    (f"{AUTH}.secret", {"type": "Signature", "secret": "whsec_"}),
    (f"{AUTH}.secret", {"type": "Signature", "secret": 42}),
    (f"{AUTH}.previousSecret", {"type": "signature", "secret": SECRET,
                                "previousSecret": "hunter2"}),
    (f"{AUTH}.password", {"type": "signature", "secret": SECRET, "password": "pw"}),
]


@pytest.mark.parametrize(("field", "authentication"), BAD,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD)])
def test_a_malformed_signature_authentication_gets_400_naming_the_field(
    collection: Tenant, db: Database, field: str, authentication: dict[str, Any],
) -> None:
    response = collection.call("PUT", f"{JOBS}/signed", signed(authentication))
    assert response.status_code == 400, response.data
    message = response.get_json()["error"]["message"]
    assert message.startswith(f"{field}:"), message
    assert job_count(db) == 0


def test_the_secret_rule_is_said_in_words(collection: Tenant) -> None:
    response = collection.call("PUT", f"{JOBS}/signed", signed(
        {"type": "Signature", "secret": whsec(16)}))
    assert response.get_json()["error"]["message"] == (
        f"{AUTH}.secret: must be whsec_ followed by the base64 of 24 to 64 random bytes, "
        "not 16")


@pytest.mark.parametrize("header", ["webhook-id", "Webhook-Timestamp", "WEBHOOK-SIGNATURE"])
def test_a_signed_call_cannot_set_the_headers_its_signature_writes(
    collection: Tenant, db: Database, header: str,
) -> None:
    response = collection.call("PUT", f"{JOBS}/signed", signed(
        {"type": "Signature", "secret": SECRET}, headers={header: "mine"}))
    assert response.status_code == 400, response.data
    assert response.get_json()["error"]["message"].startswith(
        f"action.request.headers.{header}: is written by the service")
    assert job_count(db) == 0
    unsigned = http_job()
    unsigned["action"]["request"]["headers"] = {header: "mine"}
    assert collection.call("PUT", f"{JOBS}/plain", unsigned).status_code == 201


@pytest.mark.parametrize(("field", "action"), [
    ("action.queueMessage.authentication", {"type": "storageQueue", "queueMessage": {
        "storageAccount": "acct1", "queueName": "jobs", "sasToken": "sv=x", "message": "m",
        "authentication": {"type": "Signature", "secret": SECRET}}}),
    ("action.serviceBusQueueMessage.authentication.type", {
        "type": "serviceBusQueue", "serviceBusQueueMessage": {
            "namespace": "shop-bus", "queueName": "orders", "message": "m",
            "authentication": {"type": "Signature", "sasKeyName": "send", "sasKey": "k"}}}),
])
def test_a_queue_action_cannot_be_signed(
    collection: Tenant, db: Database, field: str, action: dict[str, Any],
) -> None:
    response = collection.call("PUT", f"{JOBS}/queued", {"action": action})
    assert response.status_code == 400, response.data
    assert response.get_json()["error"]["message"].startswith(f"{field}:")
    assert job_count(db) == 0


def test_an_unpadded_secret_is_read_as_verifiers_read_it(collection: Tenant) -> None:
    unpadded = SECRET.rstrip("=")
    assert unpadded != SECRET
    response = collection.call("PUT", f"{JOBS}/signed", signed(
        {"type": "Signature", "secret": unpadded}))
    assert response.status_code == 201, response.data


def test_the_secrets_are_sealed_at_rest_and_never_shown(
    collection: Tenant, db: Database,
) -> None:
    created = collection.call("PUT", f"{JOBS}/signed", signed(
        {"type": "signature", "secret": SECRET, "previousSecret": PREVIOUS}))
    assert created.status_code == 201, created.data
    for response in (created, collection.call("GET", f"{JOBS}/signed"),
                     collection.call("GET", JOBS)):
        text = response.get_data(as_text=True)
        assert SECRET[6:] not in text and PREVIOUS[6:] not in text
    assert created.get_json()["action"]["request"]["authentication"] == {"type": "Signature"}
    app_box = collection.client.application.extensions["scheduler"].box
    with db.snapshot() as session:
        row = session.scalar(select(Job))
        assert row is not None and row.secrets is not None
        assert SECRET[6:] not in row.definition and SECRET[6:].encode() not in row.secrets
        assert app_box.open(row.secrets) == {
            "action.authentication.secret": SECRET,
            "action.authentication.previous_secret": PREVIOUS}


def test_a_patch_keeps_the_secrets_and_ends_a_rotation_by_dropping_the_previous_one(
    collection: Tenant, db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/signed", signed(
        {"type": "Signature", "secret": SECRET, "previousSecret": PREVIOUS}))
    app_box = collection.client.application.extensions["scheduler"].box

    def stored() -> dict[str, str]:
        with db.snapshot() as session:
            row = session.scalar(select(Job))
            assert row is not None
            opened: dict[str, str] = app_box.open(row.secrets)
            return opened

    kept = collection.call("PATCH", f"{JOBS}/signed", {"action": {"request": {"body": "x"}}})
    assert kept.status_code == 200, kept.data
    assert set(stored()) == {"action.authentication.secret",
                             "action.authentication.previous_secret"}
    ended = collection.call("PATCH", f"{JOBS}/signed", {"action": {"request": {
        "authentication": {"previousSecret": None}}}})
    assert ended.status_code == 200, ended.data
    assert stored() == {"action.authentication.secret": SECRET}
