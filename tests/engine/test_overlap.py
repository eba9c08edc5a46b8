"""A job's `concurrencyPolicy` decides what a new run does while another of the job is open:
run as well (`allow`), be skipped (`skip`), wait behind it (`bufferOne` keeps one waiting,
`bufferAll` every one), or cancel it and run (`replace`); a run by hand follows the policy
unless the request names another. Through the production loop, on both databases, with a
target that holds its answer until the test lets it go."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from scheduler.clock import FrozenClock
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant


@pytest.fixture
def held(receiver: Receiver) -> Iterator[threading.Event]:
    """The receiver holds its answers to `/slow` until this is set (at the latest when the
    test ends)."""
    receiver.holds["/slow"] = released = threading.Event()
    yield released
    released.set()


def minutely(receiver: Receiver, policy: str, **extra: Any) -> dict[str, Any]:
    """A job calling the receiver's slow path every minute from 12:01, without retries."""
    job = receiver.job("/slow", startTime="2026-03-01T12:01:00Z",
                       recurrence={"frequency": "minute"}, concurrencyPolicy=policy, **extra)
    job["action"]["retryPolicy"] = {"retryType": "none"}
    return job


def at(clock: FrozenClock, minute: int, second: int = 0) -> None:
    """Set the clock to 12:`minute`:`second`."""
    clock.set(datetime(2026, 3, 1, 12, minute, second, tzinfo=UTC))


def executions(collection: Tenant, job_id: str) -> list[dict[str, Any]]:
    """The job's executions, earliest occurrence first."""
    found = collection.call("GET", f"{JOBS}/{job_id}/executions").get_json()
    return sorted(found, key=lambda run: (run["scheduledTime"], run["id"]))


def statuses(collection: Tenant, job_id: str) -> list[tuple[str, str]]:
    """The time (hh:mm) and status of each of the job's executions, in order."""
    return [(run["scheduledTime"][11:16], run["status"])
            for run in executions(collection, job_id)]


def events(collection: Tenant, execution_id: str) -> list[dict[str, Any]]:
    """An execution's events, oldest first."""
    response = collection.call("GET", f"{JOBS.rsplit('/', 1)[0]}/executions/{execution_id}"
                                      "/events")
    assert response.status_code == 200, response.data
    found: list[dict[str, Any]] = response.get_json()["value"]
    return found


def first_run_held(collection: Tenant, driver: NodeDriver, clock: FrozenClock,
                   job_id: str) -> None:
    """The 12:01 run goes out at 12:01 and stays open: its target holds the answer."""
    at(clock, 1)
    driver.run_pass()
    driver.run_timers()
    assert statuses(collection, job_id) == [("12:01", "running")]


def let_go(held: threading.Event, driver: NodeDriver) -> None:
    """The target answers what it holds; the node records the outcomes."""
    held.set()
    driver.settle()
    driver.record()


def test_skip_records_an_occurrence_due_while_the_last_run_is_open_as_skipped(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    held: threading.Event,
) -> None:
    assert collection.call("PUT", f"{JOBS}/skip", minutely(receiver, "skip")
                           ).status_code == 201
    first_run_held(collection, driver, clock, "skip")
    at(clock, 2)
    driver.run_pass()  # 12:02 falls due with 12:01 still open
    assert statuses(collection, "skip") == [("12:01", "running"), ("12:02", "skipped")]
    skipped = executions(collection, "skip")[1]
    assert "an earlier run of the job was still open" in skipped["message"]
    [_scheduled, event] = events(collection, skipped["id"])
    assert event["kind"] == "skipped"
    assert event["detail"]["reason"] == "overlap" and event["detail"]["policy"] == "skip"
    let_go(held, driver)
    at(clock, 3)
    while driver.step():
        pass
    assert statuses(collection, "skip") == [("12:01", "completed"), ("12:02", "skipped"),
                                            ("12:03", "completed")]
    job = collection.call("GET", f"{JOBS}/skip").get_json()
    assert job["concurrencyPolicy"] == "skip"
    assert job["status"]["executionCount"] == 2  # a skipped occurrence spends no count
    history = collection.call("GET", f"{JOBS}/skip/history?$filter=status eq skipped"
                              ).get_json()
    assert len(history) == 1 and "(concurrencyPolicy skip)" in history[0]["message"]


def test_skip_decided_ahead_of_an_occurrence_is_made_at_its_time(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    held: threading.Event,
) -> None:
    assert collection.call("PUT", f"{JOBS}/ahead", minutely(receiver, "skip")
                           ).status_code == 201
    first_run_held(collection, driver, clock, "ahead")
    at(clock, 1, 59)
    driver.run_pass()  # 12:02 is made ahead of its time, while 12:01 is open
    assert statuses(collection, "ahead") == [("12:01", "running"), ("12:02", "waiting")]
    let_go(held, driver)  # 12:01 ends before 12:02 is due: 12:02 runs, on time
    at(clock, 2)
    while driver.step():
        pass
    assert statuses(collection, "ahead") == [("12:01", "completed"), ("12:02", "completed")]
    assert [r.header("x-ms-scheduler-expected-execution-time") for r in receiver.requests
            ] == ["2026-03-01T12:01:00Z", "2026-03-01T12:02:00Z"]
    # Now 12:02's run stays open past 12:03: 12:03, made ahead, is skipped at its time.
    receiver.holds["/slow"] = again = threading.Event()
    try:
        receiver.requests.clear()
        at(clock, 2, 59)
        driver.run_pass()
        driver.run_timers()
        at(clock, 3)
        driver.run_pass()
        driver.run_timers()
        assert statuses(collection, "ahead")[2:] == [("12:03", "running")]
        at(clock, 3, 59)
        driver.run_pass()
        assert statuses(collection, "ahead")[3:] == [("12:04", "waiting")]
        at(clock, 4)
        driver.run_pass()
        assert statuses(collection, "ahead")[3:] == [("12:04", "skipped")]
        skipped = executions(collection, "ahead")[3]
        assert "still open when it fell due" in skipped["message"]
    finally:
        again.set()


def test_buffer_one_keeps_one_run_waiting_and_skips_the_rest(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    held: threading.Event,
) -> None:
    assert collection.call("PUT", f"{JOBS}/one", minutely(receiver, "bufferOne")
                           ).status_code == 201
    first_run_held(collection, driver, clock, "one")
    for minute in (2, 3):
        at(clock, minute)
        driver.run_pass()
    assert statuses(collection, "one") == [("12:01", "running"), ("12:02", "waiting"),
                                           ("12:03", "skipped")]
    waiting = executions(collection, "one")[1]
    assert [event["kind"] for event in events(collection, waiting["id"])] == [
        "scheduled", "waiting"]
    let_go(held, driver)
    while driver.step():  # 12:02 goes on as soon as 12:01 ended, late
        pass
    assert statuses(collection, "one") == [("12:01", "completed"), ("12:02", "completed"),
                                           ("12:03", "skipped")]


def test_buffer_all_runs_every_waiting_run_one_after_another_in_order(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    held: threading.Event,
) -> None:
    assert collection.call("PUT", f"{JOBS}/all", minutely(receiver, "bufferAll")
                           ).status_code == 201
    first_run_held(collection, driver, clock, "all")
    for minute in (2, 3, 4):
        at(clock, minute)
        driver.run_pass()
    assert statuses(collection, "all") == [("12:01", "running"), ("12:02", "waiting"),
                                           ("12:03", "waiting"), ("12:04", "waiting")]
    held.set()
    driver.settle()
    driver.record()
    for _ in range(10):  # each waiting run goes on once the one before it ended
        driver.step()
    assert statuses(collection, "all") == [(f"12:0{minute}", "completed")
                                           for minute in (1, 2, 3, 4)]
    sent = [r.header("x-ms-scheduler-expected-execution-time") for r in receiver.requests]
    assert sent == [f"2026-03-01T12:0{minute}:00Z" for minute in (1, 2, 3, 4)]


def test_replace_cancels_the_open_run_and_runs_the_new_one(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    held: threading.Event,
) -> None:
    assert collection.call("PUT", f"{JOBS}/new", minutely(receiver, "replace")
                           ).status_code == 201
    first_run_held(collection, driver, clock, "new")
    at(clock, 2)
    driver.run_pass()
    driver.run_timers()
    [replaced, new] = executions(collection, "new")
    assert replaced["status"] == "canceled"
    assert "a later run of the job replaced it" in replaced["message"]
    assert new["status"] == "running"
    held.set()
    driver.settle()
    driver.record()
    assert statuses(collection, "new") == [("12:01", "canceled"), ("12:02", "completed")]


def test_a_run_by_hand_follows_the_policy_unless_the_request_names_another(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    held: threading.Event,
) -> None:
    assert collection.call("PUT", f"{JOBS}/byhand", minutely(receiver, "skip")
                           ).status_code == 201
    first_run_held(collection, driver, clock, "byhand")
    skipped = collection.call("POST", f"{JOBS}/byhand/run")
    assert skipped.status_code == 202, skipped.data
    assert skipped.get_json()["status"] == "skipped"
    allowed = collection.call("POST", f"{JOBS}/byhand/run", {"overlap": "allow"})
    assert allowed.get_json()["status"] == "pending"
    waiting = collection.call("POST", f"{JOBS}/byhand/run", {"overlap": "bufferAll"})
    assert waiting.get_json()["status"] == "waiting"
    bad = collection.call("POST", f"{JOBS}/byhand/run", {"overlap": "sometimes"})
    assert bad.status_code == 400
    assert "overlap: must be one of allow, skip" in bad.get_json()["error"]["message"]
    let_go(held, driver)
    while driver.step():
        pass
    runs = {run["id"]: run["status"] for run in executions(collection, "byhand")}
    assert runs[skipped.get_json()["id"]] == "skipped"
    assert runs[allowed.get_json()["id"]] == "completed"
    assert runs[waiting.get_json()["id"]] == "completed"


@pytest.mark.parametrize("value", ["sometimes", 3, ["skip"]])
def test_an_unknown_policy_is_refused_and_nothing_is_stored(
    collection: Tenant, receiver: Receiver, value: Any
) -> None:
    response = collection.call("PUT", f"{JOBS}/bad", minutely(receiver, "allow") | {
        "concurrencyPolicy": value})
    assert response.status_code == 400
    assert "concurrencyPolicy: must be one of allow, skip, bufferOne, bufferAll, replace" in \
        response.get_json()["error"]["message"]
    assert collection.call("GET", f"{JOBS}/bad").status_code == 404


def test_allow_is_as_without_a_policy_and_is_not_written_back(
    collection: Tenant, receiver: Receiver
) -> None:
    assert collection.call("PUT", f"{JOBS}/plain", minutely(receiver, "ALLOW")
                           ).status_code == 201
    assert "concurrencyPolicy" not in collection.call("GET", f"{JOBS}/plain").get_json()
    assert collection.call("PUT", f"{JOBS}/cased", minutely(receiver, "BUFFERONE")
                           ).get_json()["concurrencyPolicy"] == "bufferOne"


def test_a_waiting_run_whose_first_step_is_manual_waits_for_resume_once_let_go(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    approve = {"name": "approve", "manual": True, "retryPolicy": {"retryType": "none"},
               "action": {"type": "http", "request": {"uri": receiver.url("/go"),
                                                      "method": "POST"}}}
    job = {"startTime": "2026-03-01T12:01:00Z", "recurrence": {"frequency": "minute"},
           "concurrencyPolicy": "bufferAll",
           "action": {"type": "sequence", "steps": [approve]}}
    assert collection.call("PUT", f"{JOBS}/gated", job).status_code == 201
    for minute in (1, 2):
        at(clock, minute)
        driver.step()
    assert statuses(collection, "gated") == [("12:01", "paused"), ("12:02", "waiting")]
    [first, second] = executions(collection, "gated")
    collection.call("POST", f"{JOBS.rsplit('/', 1)[0]}/executions/{first['id']}/resume")
    for _ in range(3):
        driver.step()
    # Let go once 12:01 ended, 12:02 waits at its manual step, as a run of its own would.
    assert statuses(collection, "gated") == [("12:01", "completed"), ("12:02", "paused")]
    assert len(receiver.requests) == 1
    collection.call("POST", f"{JOBS.rsplit('/', 1)[0]}/executions/{second['id']}/resume")
    driver.step()
    assert statuses(collection, "gated") == [("12:01", "completed"), ("12:02", "completed")]
