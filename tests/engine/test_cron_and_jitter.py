"""Jobs on a cron expression, and jobs whose occurrences are spread by a jitter, fired
through the production loop on both databases: what the occurrences preview shows is what
fires, across DST changes, on every node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.clock import FrozenClock
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant


def fired_for(receiver: Receiver) -> list[str]:
    """The occurrence each call the receiver got was made for, in order."""
    return [request.headers["x-ms-scheduler-expected-execution-time"]
            for request in receiver.requests]


def preview(collection: Tenant, job_id: str, top: int) -> list[str]:
    """The job's next `top` fire times, as its occurrences route shows them."""
    response = collection.call("GET", f"{JOBS}/{job_id}/occurrences?$top={top}")
    assert response.status_code == 200, response.data
    return list(response.get_json())


def cron_job(receiver: Receiver, cron: str, **recurrence: Any) -> dict[str, Any]:
    """A job on a cron expression calling the receiver, without retries."""
    job = receiver.job()
    del job["startTime"]
    job["recurrence"] = {"cron": cron, **recurrence}
    job["action"]["retryPolicy"] = {"retryType": "none"}
    return job


def step_through(driver: NodeDriver, clock: FrozenClock, until: datetime,
                 step: timedelta) -> None:
    """Move the clock to `until` in steps, the node stepped at each."""
    while clock.now() < until:
        clock.advance(step)
        driver.step()


def test_a_cron_job_fires_at_what_its_preview_shows(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    job = cron_job(receiver, "0 */6 * * MON-FRI", timeZone="Europe/Berlin")
    created = collection.call("PUT", f"{JOBS}/cron", job)
    assert created.status_code == 201, created.data
    assert created.get_json()["recurrence"] == {"cron": "0 */6 * * MON-FRI",
                                                "timeZone": "Europe/Berlin"}
    shown = preview(collection, "cron", 6)
    # 2026-03-01 is a Sunday: Monday 00:00 in Berlin (CET, +01:00) comes first.
    assert shown == ["2026-03-01T23:00:00Z", "2026-03-02T05:00:00Z", "2026-03-02T11:00:00Z",
                     "2026-03-02T17:00:00Z", "2026-03-02T23:00:00Z", "2026-03-03T05:00:00Z"]
    step_through(driver, clock, datetime(2026, 3, 3, 6, tzinfo=UTC), timedelta(minutes=30))
    assert fired_for(receiver) == shown
    status = collection.call("GET", f"{JOBS}/cron").get_json()["status"]
    assert status["executionCount"] == 6 and status["nextExecutionTime"] == \
        "2026-03-03T11:00:00Z"


@pytest.mark.parametrize(("cron", "zone", "expected"), [
    # New York falls back on 2026-11-01: 01:30 happens twice and fires once, the first.
    ("30 1 * * *", "America/New_York", ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z",
                                        "2026-11-02T06:30:00Z"]),
    # Berlin springs forward on 2026-03-29: 02:30 does not exist and fires at 03:30 CEST.
    ("30 2 * * *", "Europe/Berlin", ["2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z",
                                     "2026-03-30T00:30:00Z"]),
])
def test_a_cron_job_keeps_the_dst_rules(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    cron: str, zone: str, expected: list[str]
) -> None:
    first = datetime.fromisoformat(expected[0])
    clock.set(first - timedelta(hours=12))
    assert collection.call("PUT", f"{JOBS}/dst", cron_job(receiver, cron, timeZone=zone)
                           ).status_code == 201
    assert preview(collection, "dst", 3) == expected
    step_through(driver, clock, datetime.fromisoformat(expected[-1]) + timedelta(hours=1),
                 timedelta(minutes=15))
    assert fired_for(receiver) == expected


def test_a_cron_job_honours_count_and_end_time(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    # Made at 12:00:00, a time the expression matches: that is its first occurrence.
    twice = cron_job(receiver, "*/10 * * * *", count=2)
    assert collection.call("PUT", f"{JOBS}/twice", twice).status_code == 201
    until = cron_job(receiver, "5-59/10 * * * *", endTime="2026-03-01T12:25:00Z")
    assert collection.call("PUT", f"{JOBS}/until", until).status_code == 201
    step_through(driver, clock, clock.now() + timedelta(hours=1), timedelta(minutes=5))
    assert sorted(fired_for(receiver)) == [
        "2026-03-01T12:00:00Z", "2026-03-01T12:05:00Z", "2026-03-01T12:10:00Z",
        "2026-03-01T12:15:00Z", "2026-03-01T12:25:00Z"]
    for job_id in ("twice", "until"):
        assert collection.call("GET", f"{JOBS}/{job_id}").get_json()["state"] == "completed"


@pytest.mark.parametrize(("recurrence", "expected"), [
    ({"cron": "0 9 * *"}, "recurrence.cron: must have 5 or 6 fields"),
    ({"cron": "0 24 * * *"}, "recurrence.cron: field 2 (hour): 24 is out of range 0-23"),
    ({"cron": "0 0 30 2 *"}, "recurrence.cron: never matches a date"),
    ({"cron": "@reboot"}, "recurrence.cron: @reboot is not a schedule"),
    ({"cron": "0 9 * * *", "frequency": "day"}, "recurrence.frequency: cannot be given with"),
    ({"cron": "0 9 * * *", "schedule": {"hours": [9]}}, "recurrence.schedule: cannot be"),
    ({"cron": 9}, "recurrence.cron"),
    ({"frequency": "minute", "jitter": "PT31S"}, "recurrence.jitter: must be at most half"),
    ({"cron": "*/10 * * * *", "jitter": "PT6M"}, "recurrence.jitter: must be at most half"),
    ({"frequency": "day", "jitter": "PT0.5S"}, "recurrence.jitter: must be at least one"),
    ({"frequency": "week", "jitter": "P2D"}, "recurrence.jitter: must be at most one day"),
    ({"frequency": "day", "jitter": "later"}, "recurrence.jitter"),
])
def test_a_bad_cron_or_jitter_is_refused_naming_the_field(
    collection: Tenant, receiver: Receiver, recurrence: dict[str, Any], expected: str
) -> None:
    job = receiver.job(recurrence=recurrence)
    response = collection.call("PUT", f"{JOBS}/bad", job)
    assert response.status_code == 400, response.data
    assert expected in response.get_json()["error"]["message"]
    assert collection.call("GET", f"{JOBS}/bad").status_code == 404


def test_a_cron_job_within_the_plans_quota(collection: Tenant, receiver: Receiver) -> None:
    # The Standard plan allows at most one run a minute: seconds in a cron are too often.
    response = collection.call("PUT", f"{JOBS}/fast", cron_job(receiver, "*/10 * * * * *"))
    assert response.status_code == 409, response.data
    assert "more often than the job collection's quota" in response.get_json()["error"][
        "message"]


def test_jittered_occurrences_fire_when_the_preview_says_on_any_node(
    collection: Tenant, driver: NodeDriver, other: NodeDriver, receiver: Receiver,
    clock: FrozenClock
) -> None:
    for job_id in ("spread1", "spread2"):
        job = receiver.job(recurrence={"frequency": "minute", "interval": 5,
                                       "jitter": "PT2M"})
        job["startTime"] = "2026-03-01T12:05:00Z"
        assert collection.call("PUT", f"{JOBS}/{job_id}", job).status_code == 201
    first, second = preview(collection, "spread1", 6), preview(collection, "spread2", 6)
    assert first != second, "jobs on one schedule spread apart"
    for shown in (first, second):
        times = [datetime.fromisoformat(text) for text in shown]
        nominal = [datetime(2026, 3, 1, 12, 5 * (k + 1), tzinfo=UTC) for k in range(6)]
        assert all(base <= at < base + timedelta(minutes=2) for base, at in zip(
            nominal, times, strict=True)), shown
        assert all(at.microsecond == 0 for at in times)
    assert preview(collection, "spread1", 6) == first, "the same on every recomputation"
    # Half the occurrences fire on one node, the rest on the other.
    step_through(driver, clock, datetime(2026, 3, 1, 12, 20, tzinfo=UTC),
                 timedelta(seconds=15))
    step_through(other, clock, datetime(2026, 3, 1, 12, 35, tzinfo=UTC),
                 timedelta(seconds=15))
    by_job: dict[str, list[str]] = {"spread1": [], "spread2": []}
    for request in receiver.requests:
        by_job[request.headers["x-ms-scheduler-jobid"]].append(
            request.headers["x-ms-scheduler-expected-execution-time"])
    assert by_job == {"spread1": first, "spread2": second}
    executions = collection.call(
        "GET", "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"
    ).get_json()
    assert len(executions) == 12
    for execution in executions:
        # Lateness is measured from the jittered time: the fake clock fired each within 15 s.
        scheduled = datetime.fromisoformat(execution["scheduledTime"])
        started = datetime.fromisoformat(execution["startTime"])
        assert timedelta(0) <= started - scheduled < timedelta(seconds=15)
