"""Firing: HTTP calls with Azure's headers, retries, error actions, counters, missed runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from scheduler.clock import FrozenClock
from scheduler.db.models import Execution, HistoryEntry, Job, JobCollection
from scheduler.db.session import Database
from scheduler.engine.timers import READIED_CHECK_EVERY, FiringLoop, ManualTimers
from scheduler.services.cloudservices import DELETING
from tests.conftest import JOBS, Tenant
from tests.engine.conftest import EngineDriver, Receiver, make_engine


def job_to(receiver: Receiver, path: str = "/hook", **extra: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "startTime": "2026-03-01T12:00:10Z",
        "action": {"type": "http", "request": {
            "uri": receiver.url(path), "method": "POST",
            "headers": {"Content-Type": "text/plain", "X-Run": "{{execution.id}}"},
            "body": "hello {{parameters.who}}"}},
        "parameters": {"who": "world"},
    }
    job.update(extra)
    return job


def test_one_shot_job_fires_once_at_its_start_time_with_azure_headers(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    assert collection.call("PUT", f"{JOBS}/once", job_to(receiver)).status_code == 201
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
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    receiver.answers["/hook"] = (503, {"Retry-After": "1"}, b"x" * 5000)
    job = job_to(receiver)
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
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    created = collection.call("PUT", f"{JOBS}/thrice", job_to(
        receiver, recurrence={"frequency": "minute", "interval": 1, "count": 3}))
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
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    collection.call("PUT", f"{JOBS}/off", job_to(receiver, state="disabled"))
    collection.call("PUT", f"{JOBS}/on", job_to(receiver))
    collection.call("PATCH", JOBS, {"state": "disabled"})
    clock.advance(timedelta(minutes=1))
    assert driver.step() == 0
    assert receiver.requests == []


def test_jobs_of_a_collection_being_deleted_neither_fire_nor_keep_the_node_awake(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/due", job_to(receiver))
    with db.transaction() as session:  # its deletion begun, not yet carried out
        session.execute(update(JobCollection).values(lifecycle=DELETING))
    clock.advance(timedelta(minutes=1))
    assert driver.step() == 0
    assert driver.engine.next_wakeup() is None
    assert receiver.requests == []


def test_a_retry_of_a_job_disabled_meanwhile_is_canceled_not_run(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    receiver.answers["/hook"] = (503, {}, b"down")
    job = job_to(receiver)
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


@pytest.mark.parametrize(("stop", "left"), [
    (("PATCH", f"{JOBS}/soon", {"state": "disabled"}), ["canceled"]),
    (("DELETE", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1", None), []),
])
def test_a_call_readied_ahead_of_its_time_is_dropped_when_its_job_stops(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database, stop: tuple[str, str, Any], left: list[str],
) -> None:
    collection.call("PUT", f"{JOBS}/soon", job_to(receiver))  # due at 12:00:10
    clock.advance(timedelta(seconds=9, milliseconds=950))  # within the lookahead

    timers = ManualTimers(clock)

    async def ready_stop_and_pass_the_instant() -> tuple[set[str], set[str], int, int]:
        loop = FiringLoop(driver.engine, asyncio.Event(), timers)
        await loop.beat()
        await loop.make_and_claim(clock.now())
        readied = set(loop.waiting)
        assert collection.call(*stop).status_code in (200, 202)
        await loop.make_and_claim(clock.now())
        still = set(loop.waiting)
        clock.advance(timedelta(milliseconds=50))  # the readied call's instant
        ran = timers.run_due()
        return readied, still, ran, len(loop.inflight)

    readied, still, ran, inflight = driver.loop.run_until_complete(
        ready_stop_and_pass_the_instant())
    assert len(readied) == 1 and still == set()
    assert ran == 1 and inflight == 0, "the instant's timer ran and launched nothing"
    assert receiver.requests == []
    with db.snapshot() as session:  # a deleted collection's executions went with it
        assert [e.status for e in session.scalars(select(Execution))] == left


def test_a_call_readied_ahead_of_its_time_goes_out_as_its_job_was_changed_meanwhile(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/soon", job_to(receiver))  # due at 12:00:10
    clock.advance(timedelta(seconds=9, milliseconds=950))  # within the lookahead
    changed = job_to(receiver, "/changed", parameters={"who": "there"})

    async def ready_change_and_pass_the_instant() -> tuple[set[str], set[str]]:
        timers = ManualTimers(clock)
        loop = FiringLoop(driver.engine, asyncio.Event(), timers)
        await loop.beat()
        await loop.make_and_claim(clock.now())
        readied = set(loop.waiting)
        assert collection.call("PUT", f"{JOBS}/soon", changed).status_code == 200
        await loop.make_and_claim(clock.now())
        still = set(loop.waiting)
        clock.advance(timedelta(milliseconds=50))
        assert timers.run_due() == 1  # the readied call's instant
        await asyncio.wait(loop.inflight)
        return readied, still

    readied, still = driver.loop.run_until_complete(ready_change_and_pass_the_instant())
    assert len(readied) == 1 and still == readied
    [request] = receiver.requests
    assert request.path == "/changed" and request.body == b"hello there"
    assert request.headers["x-ms-execution-tag"] == next(iter(readied))
    with db.snapshot() as session:
        [execution] = session.scalars(select(Execution))
    assert execution.id == next(iter(readied)) and execution.status == "running"


def test_readied_calls_of_one_job_from_two_versions_are_all_brought_to_the_newest(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    every_minute = {"frequency": "minute", "interval": 1}
    collection.call("PUT", f"{JOBS}/often", job_to(receiver, recurrence=every_minute))
    engine = driver.engine
    # Long enough to hold two occurrences: 12:00:10 and 12:01:10.
    engine.options = replace(engine.options, lookahead=timedelta(minutes=2))
    horizon = clock.now() + engine.options.lookahead

    async def ready_from_two_versions_then_refresh() -> tuple[int, set[str], set[str]]:
        loop = FiringLoop(engine, asyncio.Event(), ManualTimers(clock))
        loop.start(engine.tick(clock.now(), horizon, 1).claimed)
        assert collection.call("PUT", f"{JOBS}/often", job_to(
            receiver, "/changed", recurrence=every_minute)).status_code == 200
        # Readied after the change, before any pass looked at the first one again.
        while len(loop.waiting) < 2:
            loop.start(engine.tick(clock.now(), horizon, 1).claimed)
        before = {r.execution.version.etag for r in loop.waiting.values()}
        await loop.refresh_readied(clock.now())
        after = {r.execution.version.etag for r in loop.waiting.values()}
        return len(loop.waiting), before, after

    readied, before, after = driver.loop.run_until_complete(
        ready_from_two_versions_then_refresh())
    current = collection.call("GET", f"{JOBS}/often").headers["ETag"].strip('"')
    assert readied == 2 and len(before) == 2 and after == {current}


@pytest.mark.parametrize("then", ["announced", "a while later", "at once, unannounced"])
def test_ticks_in_one_pass_check_readied_calls_when_a_change_is_announced_or_now_and_then(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database, then: str,
) -> None:
    for number in range(3):  # due at 12:00:10, one tick's batch each
        collection.call("PUT", f"{JOBS}/soon{number}", job_to(receiver))
    clock.advance(timedelta(seconds=9))  # within the lookahead
    engine = driver.engine
    engine.options = replace(engine.options, batch=1)
    loop = FiringLoop(engine, asyncio.Event(), ManualTimers(clock))
    tick, ticks = engine.tick, 0
    stopped = ""

    def tick_then_stop_the_first_job(*args: Any) -> Any:
        """Tick; once the first call is readied, disable its job."""
        nonlocal ticks, stopped
        made = tick(*args)
        ticks += 1
        if made.claimed and not stopped:
            stopped = made.claimed[0].execution_id
            job_id = collection_job_id(db, made.claimed[0].job_pk)
            response = collection.call("PATCH", f"{JOBS}/{job_id}", {"state": "disabled"})
            assert response.status_code == 200
            if then == "announced":  # what the listener does with the API's signal
                driver.loop.call_soon_threadsafe(loop.wake.set)
            elif then == "a while later":
                clock.advance(READIED_CHECK_EVERY)
        return made

    engine.tick = tick_then_stop_the_first_job  # type: ignore[method-assign]

    async def one_pass_then_another() -> tuple[set[str], set[str]]:
        await loop.beat()
        await loop.make_and_claim(clock.now())
        after_the_ticks = set(loop.waiting)
        await loop.make_and_claim(clock.now())  # a pass checks them all first
        return after_the_ticks, set(loop.waiting)

    after_the_ticks, after_the_next_pass = driver.loop.run_until_complete(
        one_pass_then_another())
    assert ticks >= 3 and stopped
    assert (stopped in after_the_ticks) is (then == "at once, unannounced")
    assert len(after_the_next_pass) == 2 and stopped not in after_the_next_pass
    assert receiver.requests == []


@pytest.mark.parametrize("more_due", [False, True])
def test_a_pass_amid_calls_in_flight_records_a_full_batch_only_when_more_is_due(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database, more_due: bool,
) -> None:
    receiver.holds["/slow"] = released = threading.Event()
    collection.call("PUT", f"{JOBS}/slow", job_to(receiver, "/slow"))
    for number in range(2):
        collection.call("PUT", f"{JOBS}/quick{number}", job_to(receiver))
    clock.advance(timedelta(seconds=10))  # all three due
    engine = driver.engine
    engine.options = replace(engine.options, batch=2)
    loop = FiringLoop(engine, asyncio.Event(), ManualTimers(clock))

    async def two_back_one_out_then_a_pass() -> int:
        await loop.beat()
        await loop.make_and_claim(clock.now())
        while len(loop.finished) < 2:  # the quick ones come back
            await asyncio.wait(list(loop.inflight), return_when=asyncio.FIRST_COMPLETED)
        loop.more_due = more_due  # as the last pass found
        await loop.record_finished()
        unrecorded = len(loop.finished)
        released.set()
        await asyncio.wait(list(loop.inflight))
        await loop.record_finished()  # nothing in flight: all of it
        return unrecorded

    try:
        unrecorded = driver.loop.run_until_complete(two_back_one_out_then_a_pass())
    finally:
        released.set()
    # A full batch (2) waits while a call is out, unless more jobs are due at once.
    assert unrecorded == (0 if more_due else 2)
    with db.snapshot() as session:
        assert len(session.scalars(select(HistoryEntry)).all()) == 3


def collection_job_id(db: Database, job_pk: int | None) -> str:
    """The id a job has in its collection."""
    with db.snapshot() as session:
        job = session.get(Job, job_pk)
        assert job is not None
        return job.job_id


def test_after_downtime_a_job_fires_once_and_records_the_rest_as_missed(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/minutely", job_to(
        receiver, recurrence={"frequency": "minute", "interval": 1}))
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
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    receiver.answers["/hook"] = (302, {"Location": "http://169.254.169.254/latest/meta-data"},
                                 b"")
    job = job_to(receiver)
    job["action"]["retryPolicy"] = {"retryType": "none"}
    collection.call("PUT", f"{JOBS}/moved", job)
    clock.advance(timedelta(seconds=10))
    driver.step()
    assert [r.path for r in receiver.requests] == ["/hook"]
    [entry] = collection.call("GET", f"{JOBS}/moved/history").get_json()
    assert entry["status"] == "failed" and "'302 Found'" in entry["message"]


def test_a_target_answering_broken_http_fails_the_attempt_at_once_saying_why(
    collection: Tenant, driver: EngineDriver, clock: FrozenClock,
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
    job = job_to(Receiver(listener.getsockname()[1]))
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
    app: Flask, db: Database, collection: Tenant, receiver: Receiver, clock: FrozenClock
) -> None:
    guarded = make_engine(app, db, clock, allow_private=False)
    for name, host in (("by-address", "127.0.0.1"), ("by-name", "localhost")):
        job = job_to(receiver)
        job["action"]["request"]["uri"] = receiver.url("/hook", host=host)
        job["action"]["retryPolicy"] = {"retryType": "none"}
        collection.call("PUT", f"{JOBS}/{name}", job)
    clock.advance(timedelta(seconds=10))
    assert guarded.step() == 2
    guarded.close()
    assert receiver.requests == []
    for name in ("by-address", "by-name"):
        [entry] = collection.call("GET", f"{JOBS}/{name}/history").get_json()
        assert entry["status"] == "failed"
        assert "allow_private_networks" in entry["message"]
