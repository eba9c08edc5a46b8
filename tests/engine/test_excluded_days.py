"""Jobs that skip the days of their collection's exclusion calendars
(`recurrence.excludeCalendars`), fired through the production loop on both databases: an
excluded occurrence is a `skipped` execution naming its calendar, spends no `count`, and the
rest fire as before; a calendar a job names cannot be deleted from under it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.clock import FrozenClock
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"
CALENDARS = f"{COLLECTION}/calendars"
EXECUTIONS = f"{COLLECTION}/executions"


def put_calendar(collection: Tenant, name: str, document: dict[str, Any]) -> None:
    """Store a calendar of the collection."""
    response = collection.call("PUT", f"{CALENDARS}/{name}", document)
    assert response.status_code in (200, 201), response.data


def daily(receiver: Receiver, **recurrence: Any) -> dict[str, Any]:
    """A job calling the receiver every day at 12:00 UTC from 2026-03-02, without retries."""
    job = receiver.job(startTime="2026-03-02T12:00:00Z",
                       recurrence={"frequency": "day", **recurrence})
    job["action"]["retryPolicy"] = {"retryType": "none"}
    return job


def run_days(driver: NodeDriver, clock: FrozenClock, days: int) -> None:
    """Step the node every hour for `days` days."""
    for _ in range(days * 24):
        clock.advance(timedelta(hours=1))
        driver.step()


def executions_of(collection: Tenant, job_id: str) -> list[dict[str, Any]]:
    """A job's executions, oldest first."""
    response = collection.call("GET", f"{JOBS}/{job_id}/executions?$top=100")
    assert response.status_code == 200, response.data
    return sorted(response.get_json(), key=lambda execution: execution["scheduledTime"])


def test_excluded_days_are_skipped_and_spend_no_count(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    # 2026-03-07 and 03-08 are a weekend. 12:00 UTC on the 3rd is already the 4th in
    # Auckland (UTC+13), where the 4th is a holiday.
    put_calendar(collection, "weekends", {"rules": ["FREQ=WEEKLY;BYDAY=SA,SU"]})
    put_calendar(collection, "Holidays", {"timeZone": "Pacific/Auckland",
                                          "dates": ["2026-03-04"]})
    job = daily(receiver, count=5, excludeCalendars=["weekends", "holidays"])
    created = collection.call("PUT", f"{JOBS}/weekdays", job)
    assert created.status_code == 201, created.data
    assert created.get_json()["recurrence"]["excludeCalendars"] == ["weekends", "holidays"]
    run_days(driver, clock, 12)
    fired = [request.headers["x-ms-scheduler-expected-execution-time"]
             for request in receiver.requests]
    assert fired == ["2026-03-02T12:00:00Z", "2026-03-04T12:00:00Z", "2026-03-05T12:00:00Z",
                     "2026-03-06T12:00:00Z", "2026-03-09T12:00:00Z"], "five runs, as counted"
    executions = executions_of(collection, "weekdays")
    assert [(e["scheduledTime"], e["status"]) for e in executions] == [
        ("2026-03-02T12:00:00Z", "completed"), ("2026-03-03T12:00:00Z", "skipped"),
        ("2026-03-04T12:00:00Z", "completed"), ("2026-03-05T12:00:00Z", "completed"),
        ("2026-03-06T12:00:00Z", "completed"), ("2026-03-07T12:00:00Z", "skipped"),
        ("2026-03-08T12:00:00Z", "skipped"), ("2026-03-09T12:00:00Z", "completed")]
    job_now = collection.call("GET", f"{JOBS}/weekdays").get_json()
    assert job_now["state"] == "completed" and job_now["status"]["executionCount"] == 5
    history = collection.call("GET", f"{JOBS}/weekdays/history?$filter=status eq skipped"
                              ).get_json()
    assert len(history) == 3
    assert "the calendar Holidays excludes" in history[-1]["message"]
    assert "the calendar weekends excludes" in history[0]["message"]
    skipped = executions[1]["id"]
    events = collection.call("GET", f"{EXECUTIONS}/{skipped}/events").get_json()
    assert [event["kind"] for event in events["value"]] == ["scheduled", "skipped"]
    assert events["value"][-1]["detail"] == {"reason": "calendar", "calendar": "Holidays"}
    assert driver.sample("scheduler_engine_skipped_occurrences_total") == 3
    assert driver.sample("scheduler_engine_missed_occurrences_total") == 0


def test_a_calendar_changed_later_is_read_when_the_occurrence_comes(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    put_calendar(collection, "closures", {"dates": []})
    collection.call("PUT", f"{JOBS}/shop", daily(receiver, excludeCalendars=["closures"]))
    run_days(driver, clock, 1)
    put_calendar(collection, "closures", {"dates": ["2026-03-03"]})
    run_days(driver, clock, 2)
    assert [(e["scheduledTime"][:10], e["status"]) for e in executions_of(collection, "shop")
            ] == [("2026-03-02", "completed"), ("2026-03-03", "skipped"),
                  ("2026-03-04", "completed")]


def test_downtime_over_excluded_days_fires_once_and_skips_the_excluded(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    put_calendar(collection, "weekends", {"rules": ["FREQ=WEEKLY;BYDAY=SA,SU"]})
    collection.call("PUT", f"{JOBS}/report", daily(receiver, excludeCalendars=["weekends"]))
    clock.set(datetime(2026, 3, 8, 12, tzinfo=UTC))  # no engine ran for a week
    driver.step()
    statuses = [(e["scheduledTime"][:10], e["status"])
                for e in executions_of(collection, "report")]
    assert statuses == [("2026-03-02", "missed"), ("2026-03-03", "missed"),
                        ("2026-03-04", "missed"), ("2026-03-05", "missed"),
                        ("2026-03-06", "completed"), ("2026-03-07", "skipped"),
                        ("2026-03-08", "skipped")]


def test_a_calendar_a_job_names_must_exist_and_stays_while_named(
    collection: Tenant, receiver: Receiver
) -> None:
    refused = collection.call("PUT", f"{JOBS}/orphan",
                              daily(receiver, excludeCalendars=["nowhere"]))
    assert refused.status_code == 400
    assert "recurrence.excludeCalendars.0: the job collection has no calendar named nowhere" \
        in refused.get_json()["error"]["message"]
    assert collection.call("GET", f"{JOBS}/orphan").status_code == 404
    put_calendar(collection, "Holidays", {"dates": ["2026-12-25"]})
    assert collection.call("PUT", f"{JOBS}/named",
                           daily(receiver, excludeCalendars=["HOLIDAYS"])).status_code == 201
    blocked = collection.call("DELETE", f"{CALENDARS}/holidays")
    assert blocked.status_code == 409
    assert "jobs named" in blocked.get_json()["error"]["message"]
    assert collection.call("GET", f"{CALENDARS}/Holidays").status_code == 200
    collection.call("PATCH", f"{JOBS}/named", {"recurrence": {"excludeCalendars": None}})
    assert collection.call("DELETE", f"{CALENDARS}/holidays").status_code == 200


@pytest.mark.parametrize(("names", "expected"), [
    ("weekends", "recurrence.excludeCalendars"),
    (["a b"], "recurrence.excludeCalendars.0"),
    (["x", "X"], "recurrence.excludeCalendars.1: names X again"),
    ([f"c{n}" for n in range(11)], "recurrence.excludeCalendars: must have at most 10"),
])
def test_bad_calendar_names_are_refused_naming_the_field(
    collection: Tenant, receiver: Receiver, names: Any, expected: str
) -> None:
    response = collection.call("PUT", f"{JOBS}/bad", daily(receiver, excludeCalendars=names))
    assert response.status_code == 400, response.data
    assert expected in response.get_json()["error"]["message"]


def test_the_detailed_preview_names_the_calendar_that_skips_an_occurrence(
    collection: Tenant, receiver: Receiver
) -> None:
    put_calendar(collection, "weekends", {"rules": ["FREQ=WEEKLY;BYDAY=SA,SU"]})
    collection.call("PUT", f"{JOBS}/report", daily(receiver, excludeCalendars=["weekends"]))
    plain = collection.call("GET", f"{JOBS}/report/occurrences?$top=7").get_json()
    assert plain[0] == "2026-03-02T12:00:00Z" and len(plain) == 7, "every occurrence, as times"
    detailed = collection.call("GET", f"{JOBS}/report/occurrences?$top=7&details=true")
    assert detailed.get_json() == [
        {"time": f"2026-03-0{day}T12:00:00Z", **({"skippedBy": "weekends"} if day > 6 else {})}
        for day in range(2, 9)]
    refused = collection.call("GET", f"{JOBS}/report/occurrences?details=yes")
    assert refused.status_code == 400
    assert "details must be true or false" in refused.get_json()["error"]["message"]
