"""Firing: HTTP calls with Azure's headers, retries, error actions, counters, missed runs."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from scheduler.clock import FrozenClock
from scheduler.db.models import Execution, HistoryEntry, Job, JobCollection
from scheduler.db.session import Database
from scheduler.engine.leased import Tick
from scheduler.engine.loop import READIED_CHECK_EVERY, time_to_record
from scheduler.services.cloudservices import DELETING
from tests.engine.harness import MakeDriver, NodeDriver, Receiver
from tests.support import JOBS, Tenant


def test_one_shot_job_fires_once_at_its_start_time_with_azure_headers(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    assert collection.call("PUT", f"{JOBS}/once", receiver.job()).status_code == 201
    assert driver.step() == 0 and receiver.requests == []
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    clock.advance(timedelta(minutes=5))
    assert driver.step() == 0
    [request] = receiver.requests
    assert request.method == "POST" and request.body == b"hello world"
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["x-ms-scheduler-jobid"] == "once"
    assert headers["x-ms-scheduler-jobcollectionid"] == "jc1"
    assert headers["x-ms-scheduler-expected-execution-time"] == "2026-03-01T12:00:10Z"
    assert headers["x-run"] == headers["x-ms-execution-tag"]
    assert len(headers["x-ms-client-request-id"]) == 36
    job = collection.call("GET", f"{JOBS}/once").get_json()
    assert job["state"] == "completed"
    assert job["status"]["executionCount"] == 1 and job["status"]["failureCount"] == 0
    [entry] = collection.call("GET", f"{JOBS}/once/history").get_json()
    assert entry["status"] == "completed" and entry["actionName"] == "MainAction"
    assert entry["message"].startswith("Http Action - Response from host '127.0.0.1': '200 OK'")


def test_failures_retry_then_run_the_error_action_with_the_same_execution_tag(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    receiver.answers["/hook"] = (503, {"Retry-After": "1"}, b"x" * 5000)
    job = receiver.job()
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT30S",
                                    "retryCount": 2}
    job["action"]["errorAction"] = {"type": "http", "request": {
        "uri": receiver.url("/error"), "method": "PUT", "body": "failed"},
        "retryPolicy": {"retryType": "none"}}
    collection.call("PUT", f"{JOBS}/flaky", job)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert driver.step() == 0, "the retry waits its interval"
    for _ in range(2):
        clock.advance(timedelta(seconds=30))
        assert driver.step() == 1
    assert driver.step() == 1, "the error action runs once the retries are used up"
    paths = [r.path for r in receiver.requests]
    assert paths == ["/hook", "/hook", "/hook", "/error"]
    tags = {r.headers["x-ms-execution-tag"] for r in receiver.requests}
    assert len(tags) == 1
    status = collection.call("GET", f"{JOBS}/flaky").get_json()
    assert status["state"] == "faulted"
    assert status["status"]["failureCount"] == 3 and status["status"]["faultedCount"] == 1
    history = collection.call("GET", f"{JOBS}/flaky/history").get_json()
    assert [(h["actionName"], h["status"], h["retryCount"]) for h in history] == [
        ("ErrorAction", "completed", 0), ("MainAction", "failed", 2),
        ("MainAction", "failed", 1), ("MainAction", "failed", 0)]
    body = history[1]["message"].split("Body: ", 1)[1]
    assert len(body.encode()) == 2048


def test_recurring_job_with_count_completes_after_its_runs(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    created = collection.call("PUT", f"{JOBS}/thrice", receiver.job(
        recurrence={"frequency": "minute", "interval": 1, "count": 3}))
    assert created.status_code == 201, created.data
    clock.advance(timedelta(seconds=10))
    for _ in range(5):
        driver.step()
        clock.advance(timedelta(minutes=1))
    assert len(receiver.requests) == 3
    job = collection.call("GET", f"{JOBS}/thrice").get_json()
    assert job["state"] == "completed" and job["status"]["executionCount"] == 3
    assert "nextExecutionTime" not in job["status"]


def test_disabled_job_and_disabled_collection_do_not_fire(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    collection.call("PUT", f"{JOBS}/off", receiver.job(state="disabled"))
    collection.call("PUT", f"{JOBS}/on", receiver.job())
    collection.call("PATCH", JOBS, {"state": "disabled"})
    clock.advance(timedelta(minutes=1))
    assert driver.step() == 0
    assert receiver.requests == []


def test_jobs_of_a_collection_being_deleted_neither_fire_nor_keep_the_node_awake(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/due", receiver.job())
    with db.transaction() as session:  # its deletion begun, not yet carried out
        session.execute(update(JobCollection).values(lifecycle=DELETING))
    clock.advance(timedelta(minutes=1))
    assert driver.step() == 0
    assert driver.node.next_wakeup() is None
    assert receiver.requests == []


def test_a_retry_of_a_job_disabled_meanwhile_is_canceled_not_run(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    receiver.answers["/hook"] = (503, {}, b"down")
    job = receiver.job()
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT30S",
                                    "retryCount": 2}
    collection.call("PUT", f"{JOBS}/flaky", job)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert collection.call("PATCH", f"{JOBS}/flaky", {"state": "disabled"}).status_code == 200
    clock.advance(timedelta(seconds=30))
    assert driver.step() == 0
    assert len(receiver.requests) == 1
    with db.snapshot() as session:
        [execution] = session.scalars(select(Execution))
    assert execution.status == "canceled" and "disabled" in (execution.message or "")
    assert collection.call("GET", f"{JOBS}/flaky").get_json()["state"] == "disabled"


def execution_ids(db: Database) -> list[str]:
    """The id of every execution."""
    with db.snapshot() as session:
        return list(session.scalars(select(Execution.id)))


@pytest.mark.parametrize(("stop", "left"), [
    (("PATCH", f"{JOBS}/soon", {"state": "disabled"}), ["canceled"]),
    (("DELETE", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1", None), []),
])
def test_a_call_readied_ahead_of_its_time_is_dropped_when_its_job_stops(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database, stop: tuple[str, str, Any], left: list[str],
) -> None:
    collection.call("PUT", f"{JOBS}/soon", receiver.job())  # due at 12:00:10
    clock.advance(timedelta(seconds=9, milliseconds=950))  # within the lookahead
    driver.run_pass()
    assert driver.held_calls() == (1, 0)
    assert collection.call(*stop).status_code in (200, 202)
    driver.run_pass()
    assert driver.held_calls() == (0, 0), "the pass checked it against its job"
    clock.advance(timedelta(milliseconds=50))  # the readied call's instant
    assert driver.run_timers() == 1
    driver.settle()
    assert driver.held_calls() == (0, 0), "the instant's timer launched nothing"
    assert receiver.requests == []
    with db.snapshot() as session:  # a deleted collection's executions went with it
        assert [e.status for e in session.scalars(select(Execution))] == left


def test_a_call_readied_ahead_of_its_time_goes_out_as_its_job_was_changed_meanwhile(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/soon", receiver.job())  # due at 12:00:10
    clock.advance(timedelta(seconds=9, milliseconds=950))  # within the lookahead
    driver.run_pass()
    [readied] = execution_ids(db)
    changed = receiver.job("/changed", parameters={"who": "there"})
    assert collection.call("PUT", f"{JOBS}/soon", changed).status_code == 200
    driver.run_pass()
    assert driver.held_calls() == (1, 0)
    clock.advance(timedelta(milliseconds=50))
    assert driver.run_timers() == 1  # the readied call's instant
    driver.settle()
    [request] = receiver.requests
    assert request.path == "/changed" and request.body == b"hello there"
    assert request.header("x-ms-execution-tag") == readied
    with db.snapshot() as session:
        [execution] = session.scalars(select(Execution))
    assert execution.id == readied and execution.status == "running"


def change_the_job_after_the_first_tick(driver: NodeDriver, change: Callable[[], None]
                                        ) -> list[int]:
    """Make `change` happen in the node's first tick that leases something, once that tick
    is done, as if the API changed the job between two ticks of one pass; returns the number
    of ticks made, as they are made."""
    node, ticks = driver.node, [0]
    tick = node.tick

    def tick_then_change(*args: Any) -> Tick:
        made = tick(*args)
        ticks[0] += 1
        if made.claimed and ticks[0] == 1:
            change()
        return made

    node.tick = tick_then_change  # type: ignore[method-assign]
    return ticks


def test_readied_calls_of_one_job_from_two_versions_are_all_brought_to_the_newest(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    every_minute = {"frequency": "minute", "interval": 1}
    collection.call("PUT", f"{JOBS}/often", receiver.job(recurrence=every_minute))
    # Long enough to hold an occurrence of each version, one tick's batch each.
    driver = make_driver(lookahead=timedelta(minutes=1), batch=1)

    def change() -> None:  # to every minute at :40, its next occurrence 12:00:40
        assert collection.call("PUT", f"{JOBS}/often", receiver.job(
            "/changed", startTime="2026-03-01T12:00:40Z", recurrence=every_minute)
        ).status_code == 200

    ticks = change_the_job_after_the_first_tick(driver, change)
    driver.run_pass()  # readies 12:00:10 from the old version, 12:00:40 from the new
    assert ticks[0] >= 2 and driver.held_calls() == (2, 0)
    driver.run_pass()  # finds that one of them is not current
    for moment in ("12:00:10", "12:00:40"):
        clock.advance(timedelta(seconds=10 if moment == "12:00:10" else 30))
        driver.step()
    assert [(request.path, request.header("x-ms-scheduler-expected-execution-time"))
            for request in receiver.requests] == [
        ("/changed", "2026-03-01T12:00:10Z"), ("/changed", "2026-03-01T12:00:40Z")]


@pytest.mark.parametrize("then", ["announced", "a while later", "at once, unannounced"])
def test_ticks_in_one_pass_check_readied_calls_when_a_change_is_announced_or_now_and_then(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database, then: str,
) -> None:
    for number in range(3):  # due at 12:00:10, one tick's batch each
        collection.call("PUT", f"{JOBS}/soon{number}", receiver.job())
    clock.advance(timedelta(seconds=9))  # within the lookahead
    driver = make_driver(batch=1)

    def stop_the_first_job() -> None:
        [execution] = execution_ids(db)
        response = collection.call("PATCH", f"{JOBS}/{job_of(db, execution)}",
                                   {"state": "disabled"})
        assert response.status_code == 200
        if then == "announced":  # what the listener does with the API's signal
            driver.events.call_soon_threadsafe(driver.announce)
        elif then == "a while later":
            clock.advance(READIED_CHECK_EVERY)

    ticks = change_the_job_after_the_first_tick(driver, stop_the_first_job)
    driver.run_pass()
    after_the_ticks, _ = driver.held_calls()
    driver.run_pass()  # a pass checks them all first
    assert ticks[0] >= 3
    assert after_the_ticks == (3 if then == "at once, unannounced" else 2)
    assert driver.held_calls() == (2, 0)
    clock.advance(timedelta(seconds=1))
    driver.step()
    assert len(receiver.requests) == 2 and "soon0" not in {
        request.header("x-ms-scheduler-jobid") for request in receiver.requests}


@pytest.mark.parametrize("more_due", [False, True])
def test_a_full_batch_of_outcomes_waits_amid_calls_in_flight_unless_more_is_due(
    more_due: bool,
) -> None:
    held = {"finished": 2, "inflight": 1, "batch": 2, "backlog": False, "room": 10,
            "delay_ran": False}
    assert time_to_record(**held, more_due=more_due) is more_due
    assert time_to_record(**{**held, "inflight": 0}, more_due=more_due), \
        "nothing in flight: all of it"
    assert time_to_record(**{**held, "delay_ran": True}, more_due=more_due), \
        "the oldest outcome waited long enough"
    assert not time_to_record(**{**held, "backlog": True, "inflight": 0}, more_due=more_due), \
        "while catching up, the batches due go out first"
    assert time_to_record(**{**held, "backlog": True, "room": 0}, more_due=more_due), \
        "unless the node holds its fill"


def test_a_pass_after_the_calls_of_a_burst_came_back_records_them_all(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    receiver.holds["/slow"] = released = threading.Event()
    collection.call("PUT", f"{JOBS}/slow", receiver.job("/slow"))
    for number in range(2):
        collection.call("PUT", f"{JOBS}/quick{number}", receiver.job())
    clock.advance(timedelta(seconds=10))  # all three due
    driver = make_driver(batch=2)
    try:
        driver.run_pass()
    finally:
        released.set()
    driver.settle()
    driver.record()
    with db.snapshot() as session:
        assert len(session.scalars(select(HistoryEntry)).all()) == 3


def job_of(db: Database, execution_id: str) -> str:
    """The id, in its collection, of an execution's job."""
    with db.snapshot() as session:
        execution = session.get(Execution, execution_id)
        assert execution is not None and execution.job_pk is not None
        job = session.get(Job, execution.job_pk)
        assert job is not None
        return job.job_id


def test_after_downtime_a_job_fires_once_and_records_the_rest_as_missed(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/minutely", receiver.job(
        recurrence={"frequency": "minute", "interval": 1}))
    clock.advance(timedelta(minutes=10, seconds=10))
    assert driver.step() == 1
    assert len(receiver.requests) == 1
    with db.snapshot() as session:
        statuses = sorted(e.status for e in session.scalars(select(Execution)))
    assert statuses == ["completed"] + ["missed"] * 10
    missed = collection.call("GET", f"{JOBS}/minutely/history?$filter=status eq 'missed'")
    assert len(missed.get_json()) == 10
    assert "missed" in missed.get_json()[0]["message"]
    job = collection.call("GET", f"{JOBS}/minutely").get_json()
    assert job["status"]["nextExecutionTime"] == "2026-03-01T12:11:10Z"


def test_redirects_are_answers_not_followed_even_to_a_metadata_address(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    receiver.answers["/hook"] = (302, {"Location": "http://169.254.169.254/latest/meta-data"},
                                 b"")
    job = receiver.job()
    job["action"]["retryPolicy"] = {"retryType": "none"}
    collection.call("PUT", f"{JOBS}/moved", job)
    clock.advance(timedelta(seconds=10))
    driver.step()
    assert [r.path for r in receiver.requests] == ["/hook"]
    [entry] = collection.call("GET", f"{JOBS}/moved/history").get_json()
    assert entry["status"] == "failed" and "'302 Found'" in entry["message"]


def test_a_target_answering_broken_http_fails_the_attempt_at_once_saying_why(
    collection: Tenant, driver: NodeDriver, clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def answer_with_a_negative_chunk_size() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            held.append(conn)  # kept open: only the broken answer could end the call
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n")

    threading.Thread(target=answer_with_a_negative_chunk_size, daemon=True).start()
    job = Receiver(listener.getsockname()[1]).job()
    job["action"]["retryPolicy"] = {"retryType": "none"}
    collection.call("PUT", f"{JOBS}/broken", job)
    clock.advance(timedelta(seconds=10))
    try:
        assert driver.step() == 1
    finally:
        listener.close()
        for conn in held:
            conn.close()
    [entry] = collection.call("GET", f"{JOBS}/broken/history").get_json()
    assert entry["status"] == "failed"
    assert entry["message"] == ("Http Action - Request to host '127.0.0.1' failed: the answer "
                                "is not valid HTTP/1.1: Invalid character in chunk size")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_private_addresses_are_refused_by_default_even_by_host_name(
    make_driver: MakeDriver, collection: Tenant, receiver: Receiver, clock: FrozenClock
) -> None:
    guarded = make_driver(allow_private=False)
    for name, host in (("by-address", "127.0.0.1"), ("by-name", "localhost")):
        job = receiver.job()
        job["action"]["request"]["uri"] = receiver.url("/hook", host=host)
        job["action"]["retryPolicy"] = {"retryType": "none"}
        collection.call("PUT", f"{JOBS}/{name}", job)
    clock.advance(timedelta(seconds=10))
    assert guarded.step() == 2
    assert receiver.requests == []
    for name in ("by-address", "by-name"):
        [entry] = collection.call("GET", f"{JOBS}/{name}/history").get_json()
        assert entry["status"] == "failed"
        assert "allow_private_networks" in entry["message"]
