"""A target that answers 202 posts the attempt's result later to `{{execution.callbackUrl}}`
(`action.completion: {mode: callback}`): the execution stays running, held by no node,
until the result comes or the deadline passes; either is recorded as any attempt's outcome,
retries following the policy with a new URL each. Through the production loop, on both
databases, with a real loopback target that keeps the URLs it is sent."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import select
from werkzeug.test import TestResponse

from scheduler.clock import FrozenClock
from scheduler.db.executions import EVENTS
from scheduler.db.models import EXECUTIONS, HISTORY
from scheduler.db.session import Database
from tests.engine.harness import MakeDriver, NodeDriver, Received, Receiver
from tests.support import JOBS, Tenant

EXECUTIONS_PATH = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"
PUBLIC_URL = "https://scheduler.example.test:8443"


def callback_job(receiver: Receiver, timeout: str = "PT10M", retries: int = 0,
                 **extra: Any) -> dict[str, Any]:
    """A one-shot job at 12:00:10 that sends its callback URL to the receiver's `/accept`,
    which answers 202; `retries` a minute apart."""
    receiver.answers["/accept"] = (202, {}, b"accepted")
    job = receiver.job("/accept", **extra)
    job["action"]["request"]["headers"] = {"Content-Type": "application/json"}
    job["action"]["request"]["body"] = '{"callback": "{{execution.callbackUrl}}"}'
    job["action"]["completion"] = {"mode": "callback", "timeout": timeout}
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT1M",
                                    "retryCount": retries} if retries else {"retryType": "none"}
    return job


def callback_urls(got: Receiver | list[Received]) -> list[str]:
    """The callback URL of every call a receiver got (or of these calls), in order."""
    requests = got.requests if isinstance(got, Receiver) else got
    return [json.loads(request.body)["callback"] for request in requests]


def post_result(app: Flask, url: str, body: Any) -> TestResponse:
    """Post a result to a callback URL, with no client certificate."""
    return app.test_client().post(urlsplit(url).path, json=body)


def only_execution(collection: Tenant, job: str) -> dict[str, Any]:
    """The one execution of a job, as the API shows it."""
    [execution] = collection.call("GET", f"{JOBS}/{job}/executions").get_json()
    found: dict[str, Any] = execution
    return found


def history(collection: Tenant, job: str) -> list[tuple[str, str]]:
    """A job's history, oldest first: each entry's status and message."""
    entries = collection.call("GET", f"{JOBS}/{job}/history").get_json()
    return [(entry["status"], entry["message"]) for entry in reversed(entries)]


def accepted(collection: Tenant, make_driver: MakeDriver, receiver: Receiver,
             clock: FrozenClock, job: str = "report", **extra: Any) -> NodeDriver:
    """Store a callback job, and step a node to its 202: the execution waits."""
    assert collection.call("PUT", f"{JOBS}/{job}",
                           callback_job(receiver, **extra)).status_code == 201
    driver = make_driver(public_url=PUBLIC_URL)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 0, "an accepted call's outcome is still to come"
    return driver


def test_a_call_answered_202_waits_running_until_its_target_posts_completed(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    app: Flask,
) -> None:
    driver = accepted(collection, make_driver, receiver, clock)
    [url] = callback_urls(receiver)
    execution = only_execution(collection, "report")
    assert url.startswith(f"{PUBLIC_URL}/callbacks/{execution['id']}/")
    assert execution["status"] == "running"
    assert execution["callbackDeadline"] == "2026-03-01T12:10:10Z"
    assert history(collection, "report") == []
    posted = post_result(app, url, {"status": "completed", "output": {"rows": 3},
                                    "message": "report built"})
    assert posted.status_code == 202, posted.data
    assert posted.get_json()["status"] == "completed"
    clock.advance(timedelta(seconds=1))
    assert driver.step() == 1
    execution = only_execution(collection, "report")
    assert execution["status"] == "completed"
    assert execution["outputParameters"] == {"status": "completed", "output": {"rows": 3}}
    assert "callbackDeadline" not in execution
    assert history(collection, "report") == [
        ("completed", "Callback - the target posted its result: completed: report built")]
    assert collection.call("GET", f"{JOBS}/report").get_json()["state"] == "completed"
    assert post_result(app, url, {"status": "completed"}).status_code == 404, \
        "a callback URL works once"


def test_a_failure_posted_back_is_retried_by_the_policy_with_a_new_url(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    app: Flask,
) -> None:
    driver = accepted(collection, make_driver, receiver, clock, retries=1)
    [first] = callback_urls(receiver)
    assert post_result(app, first, {"status": "failed", "message": "disk full"}) \
        .status_code == 202
    clock.advance(timedelta(seconds=1))
    assert driver.step() == 1
    execution = only_execution(collection, "report")
    assert execution["status"] == "pending" and execution["retryCount"] == 1
    clock.advance(timedelta(minutes=1))
    assert driver.step() == 0, "the retry's call is accepted too"
    first_again, second = callback_urls(receiver)
    assert first_again == first and second != first
    assert post_result(app, first, {"status": "completed"}).status_code == 404, \
        "a retry's call kills the URL of the one before"
    assert post_result(app, second, {"status": "completed"}).status_code == 202
    clock.advance(timedelta(seconds=1))
    assert driver.step() == 1
    assert only_execution(collection, "report")["status"] == "completed"
    assert history(collection, "report") == [
        ("failed", "Callback - the target posted its result: failed: disk full"),
        ("completed", "Callback - the target posted its result: completed")]


def test_no_callback_by_the_deadline_fails_the_attempt_and_the_retry_calls_again(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    app: Flask,
) -> None:
    driver = accepted(collection, make_driver, receiver, clock, timeout="PT2M", retries=1)
    clock.advance(timedelta(minutes=1))
    assert driver.run_pass() <= 60, "the node wakes for the deadline"
    assert driver.step() == 0, "the deadline has not passed"
    clock.advance(timedelta(minutes=1, seconds=1))
    assert driver.step() == 1
    [(status, message)] = history(collection, "report")
    assert status == "failed"
    assert message == "Callback - the target did not post its result within PT2M"
    [late] = callback_urls(receiver)
    assert post_result(app, late, {"status": "completed"}).status_code == 404
    clock.advance(timedelta(minutes=1))
    assert driver.step() == 0, "the retry's call is accepted and waits"
    clock.advance(timedelta(minutes=2, seconds=1))
    assert driver.step() == 1
    assert only_execution(collection, "report")["status"] == "failed"
    assert collection.call("GET", f"{JOBS}/report").get_json()["state"] == "faulted"
    assert len(receiver.requests) == 2


def test_a_canceled_execution_refuses_its_callback(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    app: Flask,
) -> None:
    driver = accepted(collection, make_driver, receiver, clock)
    execution = only_execution(collection, "report")
    assert collection.call("PATCH", f"{EXECUTIONS_PATH}/{execution['id']}",
                           {"status": "canceled"}).status_code == 204
    [url] = callback_urls(receiver)
    assert post_result(app, url, {"status": "completed"}).status_code == 404
    clock.advance(timedelta(minutes=11))
    assert driver.step() == 0
    assert only_execution(collection, "report")["status"] == "canceled"


def test_a_result_posted_before_the_202_is_recorded_is_kept(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    app: Flask,
) -> None:
    def post_then_accept(request: Any) -> tuple[int, dict[str, str], bytes]:
        url = json.loads(request.body)["callback"]
        assert post_result(app, url, {"status": "completed"}).status_code == 202
        return 202, {}, b"accepted"

    assert collection.call("PUT", f"{JOBS}/quick", callback_job(receiver)).status_code == 201
    receiver.responder = post_then_accept
    driver = make_driver(public_url=PUBLIC_URL)
    clock.advance(timedelta(seconds=10))
    driver.step()
    clock.advance(timedelta(seconds=1))
    driver.step()
    assert only_execution(collection, "quick")["status"] == "completed"
    assert [status for status, _ in history(collection, "quick")] == ["completed"]


def test_a_waiting_execution_is_recorded_by_another_node_once_its_result_comes(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    app: Flask,
) -> None:
    first = accepted(collection, make_driver, receiver, clock)
    first.stop()
    [url] = callback_urls(receiver)
    assert post_result(app, url, {"status": "completed"}).status_code == 202
    clock.advance(timedelta(seconds=1))
    other = make_driver("node-b", public_url=PUBLIC_URL)
    assert other.step() == 1
    assert only_execution(collection, "report")["status"] == "completed"
    assert len(receiver.requests) == 1, "no call is made again"


def test_skip_skips_new_runs_while_one_waits_for_its_callback(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    app: Flask,
) -> None:
    job = callback_job(receiver, startTime="2026-03-01T12:01:00Z",
                       recurrence={"frequency": "minute"}, concurrencyPolicy="skip")
    assert collection.call("PUT", f"{JOBS}/minutely", job).status_code == 201
    driver = make_driver(public_url=PUBLIC_URL)
    clock.advance(timedelta(minutes=1))
    driver.step()
    clock.advance(timedelta(minutes=1))
    driver.step()
    runs = collection.call("GET", f"{JOBS}/minutely/executions").get_json()
    assert [run["status"] for run in runs] == ["skipped", "running"]
    assert len(receiver.requests) == 1
    [url] = callback_urls(receiver)
    assert post_result(app, url, {"status": "completed"}).status_code == 202
    clock.advance(timedelta(seconds=1))
    assert driver.step() == 1
    clock.advance(timedelta(seconds=59))
    driver.step()
    runs = collection.call("GET", f"{JOBS}/minutely/executions").get_json()
    assert [run["status"] for run in runs] == ["running", "skipped", "completed"]


def test_the_token_is_kept_nowhere_and_the_request_kept_shows_it_redacted(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    app: Flask, db: Database,
) -> None:
    driver = accepted(collection, make_driver, receiver, clock, retries=1)
    [url] = callback_urls(receiver)
    token = url.rsplit("/", 1)[1]
    execution_id = only_execution(collection, "report")["id"]
    events = collection.call("GET", f"{EXECUTIONS_PATH}/{execution_id}/events").get_json()
    [accept] = [event for event in events["value"] if event["kind"] == "accepted"]
    assert accept["detail"]["callbackDeadline"] == "2026-03-01T12:10:10Z"
    assert f"/callbacks/{execution_id}/<redacted>" in accept["detail"]["request"]["body"]
    assert post_result(app, url, {"status": "failed", "message": token}).status_code == 202
    clock.advance(timedelta(seconds=1))
    driver.step()
    with db.reader() as conn:
        rows = [*conn.execute(select(EXECUTIONS)), *conn.execute(select(EVENTS)),
                *conn.execute(select(HISTORY))]
    assert rows and not any(token in str(value) for row in rows for value in row)


def test_the_engine_counts_the_executions_that_wait_for_callbacks(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    driver = accepted(collection, make_driver, receiver, clock)
    driver.node.heartbeat(clock.now())
    assert driver.sample("scheduler_engine_callbacks_pending") == 1
    clock.advance(timedelta(minutes=11))
    driver.step()
    driver.node.heartbeat(clock.now())
    assert driver.sample("scheduler_engine_callbacks_pending") == 0


def test_an_error_action_may_wait_for_its_own_callback(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    app: Flask,
) -> None:
    receiver.answers["/broken"] = (500, {}, b"no")
    job = callback_job(receiver)
    main = {"type": "http", "request": {"uri": receiver.url("/broken"), "method": "POST"},
            "retryPolicy": {"retryType": "none"}}
    job["action"] = {**main, "errorAction": job["action"]}
    assert collection.call("PUT", f"{JOBS}/cleanup", job).status_code == 201
    driver = make_driver(public_url=PUBLIC_URL)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1, "the main action fails; the error action's call is accepted"
    driver.step()
    execution = only_execution(collection, "cleanup")
    assert execution["actionName"] == "ErrorAction" and "callbackDeadline" in execution
    [url] = callback_urls([request for request in receiver.requests
                           if request.path == "/accept"])
    assert post_result(app, url, {"status": "completed"}).status_code == 202
    clock.advance(timedelta(seconds=1))
    assert driver.step() == 1
    assert only_execution(collection, "cleanup")["status"] == "failed"
    assert [status for status, _ in history(collection, "cleanup")] == ["failed", "completed"]
