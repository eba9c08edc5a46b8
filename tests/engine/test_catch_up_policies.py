"""A job's `catchUp` decides what happens to the occurrences it missed while no engine ran:
the latest once (as without it), each of them up to `maxRuns`, or none; a `window` bounds how
late one may be. Every occurrence not run is recorded `missed`, saying why; past 1,000 in
one go, the rest are one history entry with their count and range. Through the production
loop, on both databases."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.clock import FrozenClock
from tests.engine.harness import MakeDriver, NodeDriver, Receiver
from tests.support import JOBS, Tenant

START = datetime(2026, 3, 1, 12, 1, tzinfo=UTC)


def statuses(collection: Tenant, job_id: str) -> Counter[str]:
    """How many of the job's executions have each status."""
    found: Counter[str] = Counter()
    for skip in range(0, 5000, 1000):
        response = collection.call("GET", f"{JOBS}/{job_id}/executions?$top=1000&$skip={skip}")
        assert response.status_code == 200, response.data
        found.update(execution["status"] for execution in response.get_json())
        if len(response.get_json()) < 1000:
            return found
    raise AssertionError("more executions than the test made")


def after_downtime(driver: NodeDriver, clock: FrozenClock, minutes: int,
                   seconds: int = 0) -> None:
    """No engine runs for `minutes` (and `seconds`) after 12:00:30; then one node steps until
    nothing is left to run."""
    clock.set(START - timedelta(seconds=30) + timedelta(minutes=minutes, seconds=seconds))
    while driver.step():
        pass


def fired(receiver: Receiver) -> list[str]:
    """The occurrences the receiver was called for, in order."""
    return sorted(request.headers["x-ms-scheduler-expected-execution-time"]
                  for request in receiver.requests)


def test_all_runs_each_missed_occurrence_up_to_max_runs(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    job = receiver.minutely(catchUp={"policy": "all", "maxRuns": 3})
    assert collection.call("PUT", f"{JOBS}/all", job).status_code == 201
    after_downtime(driver, clock, 10)  # 12:01 ... 12:10 passed
    assert fired(receiver) == ["2026-03-01T12:08:00Z", "2026-03-01T12:09:00Z",
                               "2026-03-01T12:10:00Z"]
    assert statuses(collection, "all") == {"completed": 3, "missed": 7}
    written = collection.call("GET", f"{JOBS}/all").get_json()
    assert written["catchUp"] == {"policy": "all", "maxRuns": 3}
    assert written["status"]["executionCount"] == 3
    history = collection.call("GET", f"{JOBS}/all/history?$filter=status eq missed"
                              ).get_json()
    assert len(history) == 7
    assert all("the job ran the latest 3 (catchUp.maxRuns)" in entry["message"]
               for entry in history)


def test_none_runs_only_an_occurrence_that_is_on_time(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    assert collection.call("PUT", f"{JOBS}/none", receiver.minutely(
        catchUp={"policy": "none"})).status_code == 201
    after_downtime(driver, clock, 10, seconds=20)  # 12:10 is 20 s late: on time
    assert fired(receiver) == ["2026-03-01T12:10:00Z"]
    assert statuses(collection, "none") == {"completed": 1, "missed": 9}
    clock.advance(timedelta(minutes=5))  # 12:11 ... 12:14 over a minute late; 12:15 not
    driver.step()
    assert fired(receiver) == ["2026-03-01T12:10:00Z", "2026-03-01T12:15:00Z"]
    assert statuses(collection, "none") == {"completed": 2, "missed": 13}
    [entry, *_] = collection.call("GET", f"{JOBS}/none/history?$filter=status eq missed"
                                  ).get_json()
    assert "it was more than PT1M late (the job's catch-up window)" in entry["message"]


def test_a_window_bounds_how_late_an_occurrence_may_run(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    assert collection.call("PUT", f"{JOBS}/windowed", receiver.minutely(
        catchUp={"policy": "all", "window": "PT3M"})).status_code == 201
    after_downtime(driver, clock, 10, seconds=20)  # 12:08 ... 12:10 within three minutes
    assert fired(receiver) == ["2026-03-01T12:08:00Z", "2026-03-01T12:09:00Z",
                               "2026-03-01T12:10:00Z"]
    assert statuses(collection, "windowed") == {"completed": 3, "missed": 7}
    # `latest` with a window: the latest, too late, does not run either.
    assert collection.call("PUT", f"{JOBS}/late", receiver.minutely(
        startTime="2026-03-01T12:20:00Z",
        catchUp={"policy": "latest", "window": "PT30S"})).status_code == 201
    clock.set(datetime(2026, 3, 1, 12, 21, 45, tzinfo=UTC))
    while driver.step():
        pass
    assert statuses(collection, "late") == {"missed": 2}


def test_a_disabled_job_never_replays_what_it_skipped(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    assert collection.call("PUT", f"{JOBS}/paused", receiver.minutely(
        state="disabled", catchUp={"policy": "all"})).status_code == 201
    clock.set(START + timedelta(minutes=30, seconds=10))
    driver.step()
    collection.call("PATCH", f"{JOBS}/paused", {"state": "enabled"})
    while driver.step():
        pass
    assert receiver.requests == [] and statuses(collection, "paused") == {}
    clock.advance(timedelta(minutes=1))
    driver.step()
    assert fired(receiver) == ["2026-03-01T12:32:00Z"]


def test_past_a_thousand_missed_the_rest_are_one_entry_with_their_count_and_range(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    driver = make_driver(history_keep=5000)  # the retention would prune past 1,000 a job
    assert collection.call("PUT", f"{JOBS}/long", receiver.minutely()).status_code == 201
    after_downtime(driver, clock, 1100)  # 1,100 occurrences: one fires, 1,099 missed
    assert statuses(collection, "long") == {"completed": 1, "missed": 1000}
    history = collection.call("GET", f"{JOBS}/long/history?$filter=status eq missed&$top=1000"
                              ).get_json()
    summaries = [entry for entry in history if "recorded as this one entry" in entry["message"]]
    assert len(summaries) == 1
    assert summaries[0]["message"].startswith(
        "Missed: 99 occurrences due from 2026-03-01T12:01:00+00:00 to "
        "2026-03-01T13:39:00+00:00 passed while the service was not running")
    assert driver.sample("scheduler_engine_missed_occurrences_total") == 1099


@pytest.mark.parametrize(("catch_up", "expected"), [
    ({"policy": "sometimes"}, "catchUp.policy: must be one of"),
    ({}, "catchUp.policy"),
    ({"policy": "all", "maxRuns": 0}, "catchUp.maxRuns: must be between 1 and 1000"),
    ({"policy": "latest", "maxRuns": 5}, "catchUp.maxRuns: is for the policy all only"),
    ({"policy": "all", "window": "PT0S"}, "catchUp.window: must be longer than zero"),
    ({"policy": "all", "window": "soon"}, "catchUp.window"),
    ({"policy": "all", "extra": 1}, "catchUp"),
    ("all", "catchUp"),
])
def test_a_bad_catch_up_is_refused_naming_the_field(
    collection: Tenant, receiver: Receiver, catch_up: Any, expected: str
) -> None:
    response = collection.call("PUT", f"{JOBS}/bad", receiver.minutely(catchUp=catch_up))
    assert response.status_code == 400, response.data
    assert expected in response.get_json()["error"]["message"]
    assert collection.call("GET", f"{JOBS}/bad").status_code == 404


def test_two_nodes_run_each_caught_up_occurrence_once(
    collection: Tenant, driver: NodeDriver, other: NodeDriver, receiver: Receiver,
    clock: FrozenClock
) -> None:
    assert collection.call("PUT", f"{JOBS}/shared", receiver.minutely(
        catchUp={"policy": "all"})).status_code == 201
    clock.set(START + timedelta(minutes=19, seconds=30))  # 12:01 ... 12:20 passed
    while driver.step() + other.step():
        pass
    assert fired(receiver) == [f"2026-03-01T12:{minute:02d}:00Z" for minute in range(1, 21)]
    assert statuses(collection, "shared") == {"completed": 20}
