"""Signed outbound calls (Standard Webhooks), checked by an independent implementation: the
`standardwebhooks` package, which a receiver would use."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun import freeze_time
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from scheduler.clock import FrozenClock
from tests.engine.harness import Answer, NodeDriver, Receiver
from tests.support import JOBS, Tenant

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
PREVIOUS = "whsec_" + base64.b64encode(bytes(range(100, 124))).decode()
OTHER = "whsec_" + base64.b64encode(b"\x07" * 32).decode()
DUE = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)  # when `Receiver.job` is due


def signed_job(receiver: Receiver, **authentication: Any) -> dict[str, Any]:
    """The receiver's job (`hello {{parameters.who}}` at 12:00:10), signed."""
    job = receiver.job()
    job["action"]["request"]["authentication"] = {"type": "signature", "secret": SECRET,
                                                  **authentication}
    job["action"]["retryPolicy"] = {"retryType": "none"}
    return job


@contextmanager
def at(moment: datetime) -> Iterator[None]:
    """Let the library's check of the timestamp against its wall clock see `moment`: the
    calls were made on the fake clock."""
    with freeze_time(moment):
        yield


def verifies(secret: str, body: bytes, headers: dict[str, str], moment: datetime) -> bool:
    """Whether the library accepts the call as signed with `secret`."""
    with at(moment):
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
        except WebhookVerificationError:
            return False
    return True


def test_a_signed_call_verifies_with_the_standard_webhooks_library(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    response = collection.call("PUT", f"{JOBS}/signed", signed_job(receiver))
    assert response.status_code == 201, response.data
    assert response.get_json()["action"]["request"]["authentication"] == {"type": "Signature"}
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    [request] = receiver.requests
    assert request.body == b"hello world", "signed as sent, its placeholders filled"
    assert request.header("webhook-id") == request.header("x-ms-execution-tag")
    assert request.header("webhook-timestamp") == str(int(DUE.timestamp()))
    assert request.header("webhook-signature").startswith("v1,")
    assert " " not in request.header("webhook-signature"), "one secret, one signature"
    assert verifies(SECRET, request.body, request.headers, DUE)
    assert not verifies(OTHER, request.body, request.headers, DUE)


def test_a_changed_body_id_or_timestamp_fails_verification(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    collection.call("PUT", f"{JOBS}/signed", signed_job(receiver))
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    [request] = receiver.requests
    headers = dict(request.headers)
    assert verifies(SECRET, request.body, headers, DUE)
    assert not verifies(SECRET, b"hello there", headers, DUE)
    for name, value in (("webhook-id", "0" * 32),
                        ("webhook-timestamp", str(int(DUE.timestamp()) + 1))):
        forged = {key: value if key.lower() == name else given
                  for key, given in headers.items()}
        assert not verifies(SECRET, request.body, forged, DUE), name


def test_while_a_secret_is_replaced_a_call_verifies_with_either_secret(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    response = collection.call("PUT", f"{JOBS}/rotating",
                               signed_job(receiver, previousSecret=PREVIOUS))
    assert response.status_code == 201, response.data
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    [request] = receiver.requests
    assert len(request.header("webhook-signature").split(" ")) == 2
    assert verifies(SECRET, request.body, request.headers, DUE), "receivers on the new secret"
    assert verifies(PREVIOUS, request.body, request.headers, DUE), "and those on the old one"
    assert not verifies(OTHER, request.body, request.headers, DUE)


def test_a_call_readied_ahead_is_stamped_with_the_time_it_is_sent(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    collection.call("PUT", f"{JOBS}/soon", signed_job(receiver))
    clock.advance(timedelta(seconds=8))  # 12:00:08, within the lookahead: readied now
    driver.run_pass()
    assert driver.held_calls() == (1, 0)
    assert receiver.requests == []
    clock.advance(timedelta(seconds=2))
    driver.run_timers()  # the readied call's instant, 12:00:10 (and the heartbeat's)
    driver.settle()
    [request] = receiver.requests
    assert request.header("webhook-timestamp") == str(int(DUE.timestamp()))
    assert verifies(SECRET, request.body, request.headers, DUE)


def test_a_retry_keeps_the_message_id_and_is_signed_anew_when_it_is_sent(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    answers: Iterator[Answer] = iter([(500, {}, b"not yet"), (200, {}, b"ok")])
    receiver.responder = lambda request: next(answers)
    job = signed_job(receiver)
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT30S",
                                    "retryCount": 1}
    collection.call("PUT", f"{JOBS}/flaky", job)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    clock.advance(timedelta(seconds=30))
    assert driver.step() == 1
    first, retry = receiver.requests
    assert retry.header("webhook-id") == first.header("webhook-id"), "receivers de-duplicate"
    retried_at = DUE + timedelta(seconds=30)
    assert retry.header("webhook-timestamp") == str(int(retried_at.timestamp()))
    assert verifies(SECRET, retry.body, retry.headers, retried_at)
