"""`POST .../jobs/{id}/backfill` runs the occurrences of a past range of a job's schedule,
each once as a new execution of trigger `backfill` with its occurrence's time, under the
job's overlap policy (or the request's); `onlyMissed` leaves out those that ran. Through the
production loop, on both databases."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.clock import FrozenClock
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant

START = datetime(2026, 3, 1, 12, 1, tzinfo=UTC)


def backfill(collection: Tenant, job_id: str, start: str, end: str, **extra: Any) -> Any:
    """Ask for a backfill of the job from 12:`start` to 12:`end` (minutes:seconds)."""
    return collection.call("POST", f"{JOBS}/{job_id}/backfill", {
        "start": f"2026-03-01T12:{start}Z", "end": f"2026-03-01T12:{end}Z", **extra})


def sent(receiver: Receiver) -> list[str]:
    """The occurrence each call was made for, in the order they came."""
    return [request.header("x-ms-scheduler-expected-execution-time")
            for request in receiver.requests]


def runs(collection: Tenant, job_id: str) -> Counter[tuple[str, str]]:
    """How many of the job's executions have each trigger and status."""
    found = collection.call("GET", f"{JOBS}/{job_id}/executions?$top=1000").get_json()
    return Counter((run["trigger"], run["status"]) for run in found)


def after_downtime(driver: NodeDriver, clock: FrozenClock, minutes: int) -> None:
    """No engine ran from 12:00:30 for `minutes`; then one node steps until nothing is left."""
    clock.set(START - timedelta(seconds=30) + timedelta(minutes=minutes))
    while driver.step():
        pass


def test_a_backfill_runs_only_what_was_missed_each_once_as_its_occurrence(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    assert collection.call("PUT", f"{JOBS}/nightly", receiver.minutely()).status_code == 201
    after_downtime(driver, clock, 5)  # 12:01 ... 12:04 missed, 12:05 fired
    assert sent(receiver) == ["2026-03-01T12:05:00Z"]
    receiver.requests.clear()
    response = backfill(collection, "nightly", "00:00", "05:00", onlyMissed=True)
    assert response.status_code == 202, response.data
    made = response.get_json()
    assert [run["scheduledTime"] for run in made["executions"]] == [
        f"2026-03-01T12:0{minute}:00Z" for minute in (1, 2, 3, 4)]
    assert {run["trigger"] for run in made["executions"]} == {"backfill"}
    assert made["leftOut"] == {"ranAlready": 1, "excluded": 0}
    while driver.step():
        pass
    assert sorted(sent(receiver)) == [f"2026-03-01T12:0{minute}:00Z" for minute in (1, 2, 3, 4)]
    assert runs(collection, "nightly") == {("schedule", "missed"): 4,
                                           ("schedule", "completed"): 1,
                                           ("backfill", "completed"): 4}
    # Asked again, nothing is left: each missed occurrence ran once.
    again = backfill(collection, "nightly", "00:00", "05:00", onlyMissed=True).get_json()
    assert again["executions"] == [] and again["leftOut"]["ranAlready"] == 5
    job = collection.call("GET", f"{JOBS}/nightly").get_json()
    assert job["status"]["executionCount"] == 1  # a backfill spends no count
    assert job["status"]["nextExecutionTime"] == "2026-03-01T12:06:00Z"
    assert driver.sample("scheduler_engine_backfilled_runs_total") == 4


def test_a_backfill_follows_the_overlap_policy_buffering_runs_one_after_another(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    assert collection.call("PUT", f"{JOBS}/serial", receiver.minutely(
        startTime="2026-03-01T13:00:00Z")).status_code == 201
    assert collection.call("PUT", f"{JOBS}/skipper", receiver.minutely(
        concurrencyPolicy="skip", state="disabled")).status_code == 201
    clock.set(datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
    made = backfill(collection, "serial", "00:00", "03:00", overlap="bufferAll").get_json()
    assert [run["status"] for run in made["executions"]] == []  # before its start: none
    assert collection.call("PUT", f"{JOBS}/serial", receiver.minutely()).status_code == 200
    made = backfill(collection, "serial", "00:00", "03:00", overlap="bufferAll").get_json()
    assert [run["status"] for run in made["executions"]] == ["pending", "waiting", "waiting"]
    for _ in range(6):
        driver.step()
    backfilled = [moment for moment in sent(receiver) if moment < "2026-03-01T12:04"]
    assert backfilled == [f"2026-03-01T12:0{minute}:00Z" for minute in (1, 2, 3)]
    # Under the job's own `skip`, a backfill while a run is open is skipped.
    refused = backfill(collection, "skipper", "00:00", "03:00")
    assert refused.status_code == 409 and "disabled" in refused.get_json()["error"]["message"]
    collection.call("PATCH", f"{JOBS}/skipper", {"state": "enabled"})
    made = backfill(collection, "skipper", "00:00", "03:00").get_json()
    assert [run["status"] for run in made["executions"]] == ["pending", "skipped", "skipped"]
    assert "concurrencyPolicy skip" in made["executions"][1]["message"]


def test_a_backfill_leaves_out_the_days_a_calendar_excludes(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    calendars = JOBS.rsplit("/", 1)[0] + "/calendars"
    assert collection.call("PUT", f"{calendars}/holidays", {
        "timeZone": "UTC", "dates": ["2026-03-02"]}).status_code in (200, 201)
    assert collection.call("PUT", f"{JOBS}/daily", receiver.job(
        startTime="2026-03-01T13:00:00Z",
        recurrence={"frequency": "day", "excludeCalendars": ["holidays"]})).status_code == 201
    clock.set(datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
    made = collection.call("POST", f"{JOBS}/daily/backfill", {
        "start": "2026-03-01T00:00:00Z", "end": "2026-03-04T00:00:00Z"}).get_json()
    assert [run["scheduledTime"] for run in made["executions"]] == [
        "2026-03-01T13:00:00Z", "2026-03-03T13:00:00Z"]
    assert made["leftOut"] == {"ranAlready": 0, "excluded": 1}


@pytest.mark.parametrize(("body", "expected"), [
    ({"end": "2026-03-01T12:05:00Z"}, "start: is required"),
    ({"start": "2026-03-01T12:05:00Z"}, "end: is required"),
    ({"start": "2026-03-01T12:05:00Z", "end": "2026-03-01T12:01:00Z"},
     "start: must not be after end"),
    ({"start": "2026-03-01T12:05:00Z", "end": "2026-03-03T00:00:00Z"},
     "end: must not be after now"),
    ({"start": "2026-03-01T12:00:00Z", "end": "2026-03-02T12:00:00Z"},
     "more than 1000 occurrences"),
    ({"start": "2026-03-01T12:00:00Z", "end": "2026-03-01T12:05:00Z", "onlyMissed": "yes"},
     "onlyMissed: must be true or false"),
    ({"start": "2026-03-01T12:00:00Z", "end": "2026-03-01T12:05:00Z", "overlap": "x"},
     "overlap: must be one of"),
    ({"start": "soon", "end": "2026-03-01T12:05:00Z"}, "start"),
    ({"start": "2026-03-01T12:00:00Z", "end": "2026-03-01T12:05:00Z", "extra": 1}, "extra"),
])
def test_a_bad_backfill_is_refused_naming_the_problem_and_makes_nothing(
    collection: Tenant, receiver: Receiver, clock: FrozenClock, body: dict[str, Any],
    expected: str,
) -> None:
    collection.call("PUT", f"{JOBS}/job", receiver.minutely())
    clock.set(datetime(2026, 3, 2, 12, 30, tzinfo=UTC))
    response = collection.call("POST", f"{JOBS}/job/backfill", body)
    assert response.status_code == 400, response.data
    assert expected in response.get_json()["error"]["message"]
    assert collection.call("GET", f"{JOBS}/job/executions").get_json() == []
