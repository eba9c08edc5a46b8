"""Alert rules through the production loop, on both databases: a job's events (failed after
N in a row, recovered, faulted, missed, late, durationOver) made into alerts once, delivered
by the node's courier to a real webhook receiver with retries, and kept for the API."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from standardwebhooks.webhooks import Webhook

from scheduler.actions.notify import NotificationSender, SmtpServer
from scheduler.clock import FrozenClock
from scheduler.domain.alerts import MAX_DELIVERY_ATTEMPTS
from tests.engine.harness import DASHBOARD_ORIGIN, MakeDriver, NodeDriver, Receiver
from tests.support import JOBS, Tenant

COLLECTION = JOBS.rsplit("/", 1)[0]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def hooks(start_receiver: Callable[..., Receiver]) -> Receiver:
    """The webhook receiver alerts go to (a receiver of its own, apart from the jobs')."""
    return start_receiver()


@pytest.fixture
def ops(collection: Tenant, hooks: Receiver) -> str:
    """A signed webhook channel `ops` of the collection, posting to `hooks`."""
    response = collection.call("PUT", f"{COLLECTION}/notificationChannels/ops", {
        "type": "webhook", "url": hooks.url("/alerts"), "secret": SECRET})
    assert response.status_code == 201, response.data
    return "ops"


def at(clock: FrozenClock, minute: int, second: int = 0) -> None:
    """Set the clock to 12:`minute`:`second`."""
    clock.set(datetime(2026, 3, 1, 12, minute, second, tzinfo=UTC))


def received(hooks: Receiver) -> list[dict[str, Any]]:
    """The alerts the webhook received, oldest first."""
    return [json.loads(request.body) for request in hooks.requests
            if request.path == "/alerts"]


def kept(collection: Tenant, job_id: str) -> list[dict[str, Any]]:
    """The job's alerts as the API keeps them, newest first."""
    response = collection.call("GET", f"{JOBS}/{job_id}/alerts")
    assert response.status_code == 200, response.data
    found: list[dict[str, Any]] = response.get_json()["value"]
    return found


def failing_job(receiver: Receiver, alerts: dict[str, Any] | None, **extra: Any
                ) -> dict[str, Any]:
    """A job calling the receiver's `/fail` every minute from 12:01, without retries."""
    receiver.answers["/fail"] = (500, {}, b"broken")
    return receiver.minutely(action={"type": "http", "request": {
        "uri": receiver.url("/fail"), "method": "GET"}, "retryPolicy": {"retryType": "none"}},
        alerts=alerts, **extra)


def test_three_failures_in_a_row_alert_once_then_again_after_realert_then_recovered(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    job = failing_job(receiver, {"on": ["failed", "recovered"], "afterConsecutive": 3,
                                 "realert": "PT5M", "channels": [ops]})
    assert collection.call("PUT", f"{JOBS}/nightly", job).status_code == 201
    for minute in (1, 2):
        at(clock, minute)
        alerting.work()
    assert received(hooks) == []  # two failures: not yet
    at(clock, 3)
    alerting.work()
    [first] = received(hooks)
    assert first["type"] == "alert.failed" and first["job"] == "nightly"
    assert first["consecutiveFailures"] == 3 and first["message"]
    assert first["subject"] == "Job nightly failed in jc1"
    assert "failed 3 times in a row" in first["text"]
    assert first["link"].startswith(f"{DASHBOARD_ORIGIN}/ui/{collection.subscription_id}/")
    assert first["link"].endswith(f"/jobs/nightly/executions/{first['executionId']}")
    for minute in (4, 5, 6, 7):  # failing on, within `realert` of the alert: no more
        at(clock, minute)
        alerting.work()
    assert len(received(hooks)) == 1
    at(clock, 8)  # five minutes after the alert: it is sent again
    alerting.work()
    assert [alert["consecutiveFailures"] for alert in received(hooks)] == [3, 8]
    receiver.answers["/fail"] = (200, {}, b"fine again")
    at(clock, 9)
    alerting.work()
    recovered = received(hooks)[-1]
    assert recovered["type"] == "alert.recovered" and recovered["failuresBefore"] == 8
    assert [(alert["event"], alert["status"]) for alert in kept(collection, "nightly")] == [
        ("recovered", "sent"), ("failed", "sent"), ("failed", "sent")]
    newest = kept(collection, "nightly")[0]
    assert newest["deliveries"]["ops"]["delivered"] is True
    assert newest["attempts"] == 1 and newest["channels"] == ["ops"]
    assert alerting.sample("scheduler_engine_alerts_made_total") == 3
    assert alerting.sample("scheduler_engine_alerts_sent_total") == 3


def test_an_alert_is_signed_as_standard_webhooks_says_with_its_id_on_every_try(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    job = failing_job(receiver, {"on": ["failed"], "channels": [ops]})
    assert collection.call("PUT", f"{JOBS}/signed", job).status_code == 201
    at(clock, 1)
    alerting.work()
    [request] = [r for r in hooks.requests if r.path == "/alerts"]
    with freeze_time(clock.now()):  # the signature's time is the fake clock's
        verified = Webhook(SECRET).verify(request.body, request.headers)
    assert verified["type"] == "alert.failed"
    [alert] = kept(collection, "signed")
    assert request.header("webhook-id") == alert["id"] == verified["id"]


def test_a_channel_that_refuses_is_tried_again_with_backoff_until_it_takes_the_alert(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    hooks.answers["/alerts"] = (503, {}, b"down for a moment")
    job = failing_job(receiver, {"on": ["failed"], "channels": [ops]})
    assert collection.call("PUT", f"{JOBS}/retried", job).status_code == 201
    at(clock, 1)
    alerting.work()
    [alert] = kept(collection, "retried")
    assert alert["status"] == "pending" and alert["attempts"] == 1
    assert alert["deliveries"]["ops"] == {
        "delivered": False, "error": "the target answered 503 Service Unavailable: down for "
                                     "a moment", "at": alert["deliveries"]["ops"]["at"]}
    assert alert["nextAttemptAt"] == "2026-03-01T12:01:10Z"
    hooks.answers["/alerts"] = (200, {}, b"ok")
    at(clock, 1, 10)
    alerting.run_timers()  # the courier's timer, set for the retry
    alerting.settle()
    [alert] = kept(collection, "retried")
    assert alert["status"] == "sent" and alert["attempts"] == 2
    assert len(received(hooks)) == 2
    assert alerting.sample("scheduler_engine_alert_deliveries_failed_total") == 1


def test_an_alert_no_channel_takes_fails_after_its_last_try(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    hooks.answers["/alerts"] = (500, {}, b"")
    job = failing_job(receiver, {"on": ["failed"], "channels": [ops]})
    assert collection.call("PUT", f"{JOBS}/refused", job).status_code == 201
    at(clock, 1)
    alerting.work()
    for _ in range(MAX_DELIVERY_ATTEMPTS):
        clock.advance(kept_retry_wait(collection, "refused"))
        alerting.run_timers()
        alerting.settle()
    [alert] = kept(collection, "refused")
    assert alert["status"] == "failed" and alert["attempts"] == MAX_DELIVERY_ATTEMPTS
    assert "finishedAt" in alert and "nextAttemptAt" not in alert
    assert len(received(hooks)) == MAX_DELIVERY_ATTEMPTS
    assert alerting.sample("scheduler_engine_alerts_failed_total") == 1


def kept_retry_wait(collection: Tenant, job_id: str) -> timedelta:
    """How long until the job's alert is due again (nothing, once it is not)."""
    [alert] = kept(collection, job_id)
    if "nextAttemptAt" not in alert:
        return timedelta(0)
    due = datetime.fromisoformat(alert["nextAttemptAt"].replace("Z", "+00:00"))
    created = datetime.fromisoformat(alert["deliveries"]["ops"]["at"].replace("Z", "+00:00"))
    return due - created


def test_occurrences_missed_while_no_engine_ran_make_one_alert(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    job = receiver.minutely(alerts={"on": ["missed"], "channels": [ops]})
    assert collection.call("PUT", f"{JOBS}/minutely", job).status_code == 201
    at(clock, 1)
    alerting.work()
    at(clock, 10)  # the node was away from 12:01 to 12:10
    alerting.work()
    [alert] = received(hooks)
    assert alert["type"] == "alert.missed" and alert["missed"] == 8
    assert alert["firstMissed"] == "2026-03-01T12:02:00Z"
    assert alert["lastMissed"] == "2026-03-01T12:09:00Z"
    assert "missed 8 occurrences" in alert["text"]
    assert alert["link"].endswith("/jobs/minutely")  # no one execution: the job's page


def test_a_first_attempt_that_starts_past_late_by_alerts_late(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    job = receiver.minutely(alerts={"on": ["late"], "lateBy": "PT30S", "channels": [ops]})
    assert collection.call("PUT", f"{JOBS}/late", job).status_code == 201
    at(clock, 1, 20)  # 20 s late: within lateBy
    alerting.work()
    assert received(hooks) == []
    at(clock, 2, 45)  # 45 s late
    alerting.work()
    [alert] = received(hooks)
    assert alert["type"] == "alert.late" and alert["lateBySeconds"] == 45.0
    assert alert["scheduledTime"] == "2026-03-01T12:02:00Z"


def test_an_attempt_longer_than_duration_over_alerts_without_failing(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    receiver.holds["/slow"] = held = threading.Event()
    job = receiver.job("/slow", alerts={"on": ["durationOver"], "durationOver": "PT1M",
                                        "channels": [ops]})
    assert collection.call("PUT", f"{JOBS}/long", job).status_code == 201
    try:
        at(clock, 0, 10)
        alerting.run_pass()
        alerting.run_timers()  # the call goes out, and the target holds it
        at(clock, 1, 40)  # 90 s later
        held.set()
        alerting.work()
    finally:
        held.set()
    [alert] = received(hooks)
    assert alert["type"] == "alert.durationOver" and alert["durationSeconds"] == 90.0
    run = collection.call("GET", f"{JOBS}/long/executions").get_json()[0]
    assert run["status"] == "completed"


def test_a_job_that_ends_faulted_alerts_faulted_and_failed(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    receiver.answers["/hook"] = (500, {}, b"no")
    job = receiver.job(alerts={"on": ["failed", "faulted"], "channels": [ops]})
    job["action"]["retryPolicy"] = {"retryType": "none"}
    assert collection.call("PUT", f"{JOBS}/once", job).status_code == 201
    at(clock, 0, 10)
    alerting.work()
    assert sorted(alert["type"] for alert in received(hooks)) == ["alert.failed",
                                                                  "alert.faulted"]
    assert collection.call("GET", f"{JOBS}/once").get_json()["state"] == "faulted"


def test_a_collections_default_rules_cover_its_jobs_without_rules_of_their_own(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    response = collection.call("PUT", f"{COLLECTION}/defaultAlerts",
                               {"on": ["failed"], "channels": [ops]})
    assert response.status_code == 200, response.data
    assert collection.call("PUT", f"{JOBS}/inherits", failing_job(receiver, None)
                           ).status_code == 201
    assert collection.call("PUT", f"{JOBS}/quiet", failing_job(receiver, {"on": []})
                           ).status_code == 201
    at(clock, 1)
    alerting.work()
    assert [alert["job"] for alert in received(hooks)] == ["inherits"]
    assert kept(collection, "quiet") == []


def test_two_nodes_recording_failures_make_each_alert_once(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    sender = NotificationSender(True, SmtpServer(), clock=clock)
    first = make_driver("node-a", alerts=sender)
    second = make_driver("node-b", alerts=sender, events=first.events)
    for index in range(6):
        job = failing_job(receiver, {"on": ["failed"], "channels": [ops]})
        assert collection.call("PUT", f"{JOBS}/job{index}", job).status_code == 201
    for minute in (1, 2):
        at(clock, minute)
        for _ in range(3):
            first.step()
            second.step()
        first.settle()
        second.settle()
    alerts = received(hooks)
    # Six jobs failing twice: the first failure of each streak alerts, once.
    assert sorted(alert["job"] for alert in alerts) == [f"job{index}" for index in range(6)]
    assert len({alert["id"] for alert in alerts}) == 6
    assert all(alert["scheduledTime"] == "2026-03-01T12:01:00Z" for alert in alerts)


def test_alerts_a_stopped_node_held_are_delivered_by_another_node(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    stopped = make_driver("node-a")  # no courier: its alert stays to be delivered
    job = failing_job(receiver, {"on": ["failed"], "channels": [ops]})
    assert collection.call("PUT", f"{JOBS}/orphan", job).status_code == 201
    at(clock, 1)
    stopped.work()
    # The node takes the alert to deliver it, and stops before it sends anything.
    [taken] = stopped.node.take_alerts(clock.now(), clock.now() + timedelta(minutes=2), 10)
    assert taken.alert.job_id == "orphan" and received(hooks) == []
    other = make_driver("node-b", alerts=NotificationSender(True, SmtpServer(), clock=clock),
                        events=stopped.events)
    other.work()
    assert received(hooks) == []  # node-a's heartbeat is still young: the alert is its own
    # Though due, the alert is held: node-b looks again after its poll, not at once.
    assert other.loop.courier is not None and other.loop.courier.next_round_in == 5.0
    for _ in range(4):  # node-a's heartbeat ages out; node-b takes its alert over
        clock.advance(timedelta(seconds=3))
        other.run_timers()
        other.work()
    [alert] = received(hooks)
    assert alert["id"] == taken.alert.id
    assert kept(collection, "orphan")[0]["status"] == "sent"


def test_an_execution_no_node_starts_alerts_late_once_late_by_passed(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    # Only a node named `elsewhere` may run it, and none is: it waits, never started.
    job = receiver.job(runOn=["elsewhere"], alerts={"on": ["late"], "lateBy": "PT30S",
                                                    "channels": [ops]})
    assert collection.call("PUT", f"{JOBS}/stuck", job).status_code == 201
    at(clock, 0, 10)
    alerting.work()
    at(clock, 0, 30)  # 20 s: not late yet
    alerting.run_timers()
    alerting.work()
    assert received(hooks) == []
    at(clock, 0, 45)  # 35 s
    alerting.run_timers()
    alerting.work()
    [alert] = received(hooks)
    assert alert["type"] == "alert.late" and alert["notStarted"] is True
    assert alert["lateBySeconds"] == 35.0
    assert alert["text"] == "The job stuck had not started 35.0 s after its time."
    at(clock, 1, 30)  # later rounds find it again, and make no second alert
    alerting.run_timers()
    alerting.work()
    assert len(received(hooks)) == 1


def test_a_call_in_flight_or_a_backfill_is_not_taken_for_late(
    collection: Tenant, alerting: NodeDriver, receiver: Receiver, hooks: Receiver,
    clock: FrozenClock, ops: str,
) -> None:
    receiver.holds["/slow"] = held = threading.Event()
    rules = {"on": ["late"], "lateBy": "PT30S", "channels": [ops]}
    assert collection.call("PUT", f"{JOBS}/slow", receiver.job("/slow", alerts=rules)
                           ).status_code == 201
    try:
        at(clock, 0, 10)
        alerting.run_pass()
        alerting.run_timers()  # the call goes out on time; the target holds it a minute
        at(clock, 1, 10)
        alerting.run_timers()
        alerting.settle()
        assert received(hooks) == []
    finally:
        held.set()
    alerting.work()
    rules["lateBy"] = "PT10M"
    assert collection.call("PUT", f"{JOBS}/past", receiver.minutely(alerts=rules)
                           ).status_code == 201
    at(clock, 40)  # its 12:40 occurrence fires on time
    alerting.work()
    response = collection.call("POST", f"{JOBS}/past/backfill", {
        "start": "2026-03-01T12:00:00Z", "end": "2026-03-01T12:06:00Z"})
    assert response.status_code == 202, response.data
    assert len(response.get_json()["executions"]) == 5  # 12:02 to 12:06, over 30 min past
    alerting.work()
    alerting.run_timers()
    alerting.work()
    assert received(hooks) == []
    assert {run["status"] for run in collection.call(
        "GET", f"{JOBS}/past/executions?$top=100").get_json()
        if run["trigger"] == "backfill"} == {"completed"}
