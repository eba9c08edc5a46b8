"""Times without an offset are wall-clock times in the job's time zone, in what the API
returns and in when the job fires."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant


def local_job(receiver: Receiver, start: str, **recurrence: Any) -> dict[str, Any]:
    """A job calling the receiver, starting at `start`, with `recurrence`."""
    job = receiver.job("/local", startTime=start)
    if recurrence:
        job["recurrence"] = recurrence
    return job


def test_a_start_time_without_an_offset_is_wall_clock_time_in_the_job_s_zone(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    """The fake clock starts at 2026-03-01T12:00:00Z, 07:00 in New York (EST, UTC-5)."""
    job = local_job(receiver, "2026-03-01T09:00:00", frequency="day",
                    timeZone="America/New_York", endTime="2026-03-03T09:30:00")
    created = collection.call("PUT", f"{JOBS}/morning", job)
    assert created.status_code == 201, created.data
    document = created.get_json()
    assert document["startTime"] == "2026-03-01T14:00:00Z"
    assert document["recurrence"]["endTime"] == "2026-03-03T14:30:00Z"
    assert document["status"]["nextExecutionTime"] == "2026-03-01T14:00:00Z"

    driver.clock.advance(timedelta(hours=1, minutes=59))
    driver.step()
    assert receiver.requests == [], "nothing fires at 09:00 UTC"
    driver.clock.advance(timedelta(minutes=1))
    assert driver.step() == 1
    assert receiver.requests[0].header("x-ms-scheduler-expected-execution-time") \
        .startswith("2026-03-01T14:00:00")


@pytest.mark.parametrize(("start", "zone", "expected"), [
    ("2026-03-08T02:30:00", "America/New_York", "2026-03-08T07:30:00Z"),  # in the gap
    ("2026-11-01T01:30:00", "America/New_York", "2026-11-01T05:30:00Z"),  # its first instance
    ("2026-07-01T09:00:00", "Europe/Paris", "2026-07-01T07:00:00Z"),
    ("2026-07-01T09:00:00+02:00", "America/New_York", "2026-07-01T07:00:00Z"),  # an offset wins
    ("2026-07-01T09:00:00Z", "Europe/Paris", "2026-07-01T09:00:00Z"),
    ("2026-07-01T09:00:00", None, "2026-07-01T09:00:00Z"),  # no zone: UTC
])
def test_start_times_read_in_their_zone(
    collection: Tenant, receiver: Receiver, start: str, zone: str | None, expected: str
) -> None:
    recurrence: dict[str, Any] = {"frequency": "day"}
    if zone is not None:
        recurrence["timeZone"] = zone
    created = collection.call("PUT", f"{JOBS}/j", local_job(receiver, start, **recurrence))
    assert created.status_code == 201, created.data
    assert created.get_json()["startTime"] == expected
    assert collection.call("GET", f"{JOBS}/j").get_json()["startTime"] == expected


def test_an_end_time_without_an_offset_in_the_past_of_the_zone_is_refused(
    collection: Tenant, receiver: Receiver
) -> None:
    """12:00Z is 13:00 in Paris: 12:30 Paris time has passed, though 12:30Z has not."""
    job = local_job(receiver, "2026-03-01T11:00:00", frequency="minute",
                    timeZone="Europe/Paris", endTime="2026-03-01T12:30:00")
    refused = collection.call("PUT", f"{JOBS}/j", job)
    assert refused.status_code == 400
    assert "recurrence.endTime" in refused.get_json()["error"]["message"]
