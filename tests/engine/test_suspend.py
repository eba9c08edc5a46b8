"""A suspended job collection fires nothing, and replays nothing when it is started again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from scheduler.clock import FrozenClock
from scheduler.db.models import Execution, Job
from scheduler.db.session import Database
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant, collection_xml

COLLECTIONS = "/cloudservices/cs1/resources/scheduler/jobcollections"
OTHER_JOBS = JOBS.replace("/jc1/", "/jc2/")
EXPECTED = "x-ms-scheduler-expected-execution-time"


def minutely(receiver: Receiver, path: str, **extra: Any) -> dict[str, Any]:
    """A job that calls `path` every minute from 12:01:00."""
    return receiver.job(path, startTime="2026-03-01T12:01:00Z",
                        recurrence={"frequency": "minute", "interval": 1}, **extra)


def put_state(tenant: Tenant, state: str) -> None:
    """Put jc1 in a state."""
    response = tenant.call("PUT", f"{COLLECTIONS}/jc1", collection_xml(state=state))
    assert response.status_code == 202, response.data


def calls_to(receiver: Receiver, path: str) -> list[str]:
    """The expected execution time of every call made to `path`."""
    return [request.header(EXPECTED) for request in receiver.requests if request.path == path]


def test_a_suspended_collection_fires_nothing_and_replays_nothing_when_started_again(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    assert collection.call("PUT", f"{COLLECTIONS}/jc2", collection_xml()).status_code == 202
    collection.call("PUT", f"{JOBS}/paused", minutely(receiver, "/paused"))
    collection.call("PUT", f"{JOBS}/off", minutely(receiver, "/off", state="disabled"))
    collection.call("PUT", f"{JOBS}/broken", minutely(receiver, "/broken"))
    collection.call("PUT", f"{OTHER_JOBS}/going", minutely(receiver, "/going"))
    with db.transaction() as session:  # as the engine leaves a job it could not run
        session.execute(update(Job).where(Job.job_id == "broken").values(state="faulted"))
    put_state(collection, "Suspended")
    for _ in range(5):  # 12:01 to 12:05
        clock.advance(timedelta(minutes=1))
        driver.step()
    assert calls_to(receiver, "/going") == [f"2026-03-01T12:0{m}:00Z" for m in range(1, 6)]
    assert calls_to(receiver, "/paused") == []

    clock.advance(timedelta(seconds=30))  # 12:05:30
    put_state(collection, "Started")
    driver.step()
    assert calls_to(receiver, "/paused") == [], "nothing missed while suspended is replayed"
    clock.advance(timedelta(seconds=30))  # 12:06:00
    driver.step()
    assert calls_to(receiver, "/paused") == ["2026-03-01T12:06:00Z"]
    assert calls_to(receiver, "/going")[-1] == "2026-03-01T12:06:00Z"
    assert calls_to(receiver, "/off") == [] and calls_to(receiver, "/broken") == []
    assert collection.call("GET", f"{JOBS}/off").get_json()["state"] == "disabled"
    assert collection.call("GET", f"{JOBS}/broken").get_json()["state"] == "faulted"
    with db.snapshot() as session:  # no occurrence of the suspension recorded as missed
        paused = session.scalar(select(Job.id).where(Job.job_id == "paused"))
        statuses = list(session.scalars(select(Execution.status)
                                        .where(Execution.job_pk == paused)))
    assert statuses == ["completed"]


def test_a_retry_waiting_when_its_collection_is_suspended_is_canceled_not_run(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    receiver.answers["/flaky"] = (503, {}, b"down")
    job = receiver.job("/flaky")
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT30S",
                                    "retryCount": 2}
    collection.call("PUT", f"{JOBS}/flaky", job)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    put_state(collection, "Suspended")
    clock.advance(timedelta(seconds=30))
    assert driver.step() == 0
    put_state(collection, "Started")
    clock.advance(timedelta(minutes=5))
    assert driver.step() == 0
    assert len(receiver.requests) == 1
    with db.snapshot() as session:
        [execution] = session.scalars(select(Execution))
    assert execution.status == "canceled" and "suspended" in (execution.message or "")


def test_a_call_readied_ahead_of_its_time_is_dropped_when_its_collection_is_suspended(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    collection.call("PUT", f"{JOBS}/soon", receiver.job())  # due at 12:00:10
    clock.advance(timedelta(seconds=9, milliseconds=950))  # within the lookahead
    driver.run_pass()
    assert driver.held_calls() == (1, 0)
    put_state(collection, "Suspended")
    driver.run_pass()
    assert driver.held_calls() == (0, 0)
    clock.advance(timedelta(milliseconds=50))
    driver.run_timers()
    driver.settle()
    assert receiver.requests == []
