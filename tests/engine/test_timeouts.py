"""A job says how long one attempt may take (`action.request.timeout`, a queue message's
`timeout`, a step's `timeout`), up to the operator's `outbound.max_timeout`; a timed-out
attempt fails saying so, and its retries follow the policy. Through the production loop, on
both databases."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.settings import Settings
from tests.engine.harness import MakeDriver, NodeDriver, Receiver
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, new_tenant

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"


def slow_job(receiver: Receiver, timeout: str, **extra: Any) -> dict[str, Any]:
    """A job calling the receiver's held `/slow` once, with its own attempt timeout."""
    job = receiver.job("/slow")
    job["action"]["request"]["timeout"] = timeout
    job["action"]["retryPolicy"] = {"retryType": "none"}
    job.update(extra)
    return job


def answer_after(receiver: Receiver, path: str, seconds: float) -> threading.Event:
    """Hold the receiver's answers on `path` for `seconds` of real time."""
    receiver.holds[path] = released = threading.Event()
    threading.Timer(seconds, released.set).start()
    return released


def test_a_timed_out_attempt_fails_saying_so_and_its_retry_follows_the_policy(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    receiver.holds["/slow"] = released = threading.Event()
    job = slow_job(receiver, "PT0.3S")
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT30S",
                                    "retryCount": 1}
    assert collection.call("PUT", f"{JOBS}/slow", job).status_code == 201
    clock.advance(timedelta(seconds=10))
    try:
        assert driver.step() == 1, "the job's own deadline ends the attempt"
        assert driver.step() == 0, "the retry waits its interval"
        clock.advance(timedelta(seconds=30))
        assert driver.step() == 1
    finally:
        released.set()
    history = collection.call("GET", f"{JOBS}/slow/history").get_json()
    assert [(entry["status"], entry["retryCount"]) for entry in history] == [
        ("failed", 1), ("failed", 0)]
    assert all("no answer within 0.3 s" in entry["message"] for entry in history)
    assert collection.call("GET", f"{JOBS}/slow").get_json()["state"] == "faulted"


def test_an_attempt_may_take_longer_than_the_default_when_its_job_says_so(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    driver = make_driver(timeout=0.2)  # the default an attempt without its own timeout has
    answer_after(receiver, "/slow", 0.6)
    assert collection.call("PUT", f"{JOBS}/patient", slow_job(receiver, "PT30S")).status_code \
        == 201
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    [entry] = collection.call("GET", f"{JOBS}/patient/history").get_json()
    assert entry["status"] == "completed", entry["message"]


def test_a_step_may_be_given_longer_than_the_default(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    driver = make_driver(timeout=0.2)
    answer_after(receiver, "/slow", 0.6)
    job = {"startTime": "2026-03-01T12:00:05Z", "action": {"type": "sequence", "steps": [
        {"name": "slow", "timeout": "PT30S", "retryPolicy": {"retryType": "none"},
         "action": {"type": "http", "request": {"uri": receiver.url("/slow"),
                                                "method": "POST"}}}]}}
    assert collection.call("PUT", f"{JOBS}/seq", job).status_code == 201, "over 60 s is fine"
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    [entry] = collection.call("GET", f"{JOBS}/seq/history").get_json()
    assert entry["status"] == "completed", entry["message"]


def test_the_error_action_keeps_its_own_timeout(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    receiver.answers["/hook"] = (500, {}, b"down")
    receiver.holds["/error"] = released = threading.Event()
    job = receiver.job()
    job["action"]["retryPolicy"] = {"retryType": "none"}
    job["action"]["errorAction"] = {"type": "http", "retryPolicy": {"retryType": "none"},
                                    "request": {"uri": receiver.url("/error"),
                                                "method": "POST", "timeout": "PT0.3S"}}
    assert collection.call("PUT", f"{JOBS}/flaky", job).status_code == 201
    clock.advance(timedelta(seconds=10))
    try:
        assert driver.step() == 1
        assert driver.step() == 1
    finally:
        released.set()
    error, main = collection.call("GET", f"{JOBS}/flaky/history").get_json()
    assert main["actionName"] == "MainAction" and main["status"] == "failed"
    assert error["actionName"] == "ErrorAction" and "no answer within 0.3 s" in error["message"]


def test_the_engine_holds_a_stored_timeout_to_the_operators_maximum(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    # Written while the maximum allowed it; the operator has lowered it since.
    driver = make_driver(longest_timeout=0.3)
    receiver.holds["/slow"] = released = threading.Event()
    assert collection.call("PUT", f"{JOBS}/slow", slow_job(receiver, "PT10M")).status_code \
        == 201
    clock.advance(timedelta(seconds=10))
    try:
        assert driver.step() == 1
    finally:
        released.set()
    [entry] = collection.call("GET", f"{JOBS}/slow/history").get_json()
    assert entry["status"] == "failed" and "no answer within 0.3 s" in entry["message"]


def test_a_queue_message_carries_its_timeout(collection: Tenant) -> None:
    job = {"startTime": "2026-03-02T00:00:00Z", "action": {"type": "storageQueue",
           "queueMessage": {"storageAccount": "acct1", "queueName": "jobs",
                            "sasToken": "sv=secret", "message": "m", "timeout": "PT2M"}}}
    created = collection.call("PUT", f"{JOBS}/queued", job)
    assert created.status_code == 201, created.data
    assert created.get_json()["action"]["queueMessage"]["timeout"] == "PT2M"
    read = collection.call("GET", f"{JOBS}/queued").get_json()
    assert read["action"]["queueMessage"]["timeout"] == "PT2M"


@pytest.mark.parametrize(("place", "timeout", "expected"), [
    ("request", "PT0S", "action.request.timeout: must be longer than zero"),
    ("request", "PT31M", "action.request.timeout: must be at most PT30M"),
    ("request", "soon", "action.request.timeout"),
    ("request", 30, "action.request.timeout"),
    ("step", "PT2H", "action.steps.0.timeout: must be at most PT30M"),
    ("error", "P1D", "action.errorAction.request.timeout: must be at most PT30M"),
])
def test_a_timeout_out_of_bounds_is_refused_naming_the_field(
    collection: Tenant, place: str, timeout: Any, expected: str
) -> None:
    request = {"uri": "http://example.com/hook", "method": "POST"}
    action: dict[str, Any] = {"type": "http", "request": {**request, "timeout": timeout}}
    if place == "step":
        action = {"type": "sequence", "steps": [
            {"name": "a", "timeout": timeout, "action": {"type": "http", "request": request}}]}
    elif place == "error":
        action = {"type": "http", "request": request,
                  "errorAction": {"type": "http", "request": {**request, "timeout": timeout}}}
    job = {"startTime": "2026-03-02T00:00:00Z", "action": action}
    response = collection.call("PUT", f"{JOBS}/bad", job)
    assert response.status_code == 400
    assert expected in response.get_json()["error"]["message"]
    assert collection.call("GET", f"{JOBS}/bad").status_code == 404
    inline = collection.call("POST", f"{COLLECTION}/executions", {"action": action})
    assert inline.status_code == 400 and expected in inline.get_json()["error"]["message"]


def test_the_operator_may_allow_longer_attempts(
    settings: Settings, clock: FrozenClock, db: Database
) -> None:
    longer = replace(settings, outbound=replace(settings.outbound, max_timeout="PT2H"))
    app: Flask = create_app(longer, clock, db=db, background=False)
    tenant = new_tenant(app, db, clock, "patient")
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert tenant.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                       collection_xml()).status_code == 202
    job = {"startTime": "2026-03-02T00:00:00Z", "action": {"type": "http", "request": {
        "uri": "http://example.com/hook", "method": "POST", "timeout": "PT90M"}}}
    assert tenant.call("PUT", f"{JOBS}/long", job).status_code == 201
    job["action"]["request"]["timeout"] = "PT3H"
    refused = tenant.call("PUT", f"{JOBS}/long", job)
    assert refused.status_code == 400
    assert "must be at most PT2H" in refused.get_json()["error"]["message"]
