"""A job disabled until a time is enabled again by the engine at that time, once across nodes,
stamped and audited as the scheduler's change, and fires from then on without replaying or
recording what it skipped; through the production loop on the fake clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from scheduler.clock import FrozenClock
from scheduler.db.models import Execution, JobCollection
from scheduler.db.session import Database
from scheduler.services.cloudservices import DELETING
from tests.engine.harness import NodeDriver, Receiver, together
from tests.support import JOBS, Tenant, collection_xml

COLLECTIONS = "/cloudservices/cs1/resources/scheduler/jobcollections"
EXPECTED = "x-ms-scheduler-expected-execution-time"
# The fake clock starts at 12:00:00; the job waits until 12:25, between its occurrences.
UNTIL = "2026-03-01T12:25:00Z"
REENABLED = f"re-enabled: disabled until {UNTIL}"


def every_ten_minutes(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    """A job that calls the receiver every 10 minutes from 12:00:10, disabled until 12:25."""
    return receiver.job(recurrence={"frequency": "minute", "interval": 10},
                        state="disabled", disabledUntil=UNTIL, **extra)


def job(tenant: Tenant, job_id: str = "paused") -> dict[str, Any]:
    """The job as the API answers it."""
    response = tenant.call("GET", f"{JOBS}/{job_id}")
    assert response.status_code == 200, response.data
    document: dict[str, Any] = response.get_json()
    return document


def scheduler_changes(tenant: Tenant, job_id: str = "paused") -> list[dict[str, Any]]:
    """The job's audit entries made by the scheduler itself."""
    page = tenant.call("GET", f"{JOBS}/{job_id}/audit").get_json()
    return [change for change in page["value"] if change["actor"] == "scheduler"]


def step_to(driver: NodeDriver, clock: FrozenClock, moment: str) -> None:
    """Move the clock to a time of 2026-03-01 (`HH:MM:SS`) and step the node there."""
    target = clock.now().replace(hour=int(moment[:2]), minute=int(moment[3:5]),
                                 second=int(moment[6:8]))
    clock.advance(target - clock.now())
    driver.step()


def test_a_job_disabled_until_a_time_fires_nothing_before_it_and_from_it_on_skips_the_rest(
        collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
        db: Database) -> None:
    created = collection.call("PUT", f"{JOBS}/paused", every_ten_minutes(receiver))
    assert created.status_code == 201, created.data
    for moment in ("12:00:10", "12:10:10", "12:20:10", "12:24:59"):
        step_to(driver, clock, moment)
        assert receiver.requests == [] and job(collection)["state"] == "disabled"
    step_to(driver, clock, "12:25:00")
    enabled = job(collection)
    assert enabled["state"] == "enabled" and "disabledUntil" not in enabled
    assert (enabled["stateNote"], enabled["stateChangedBy"], enabled["stateChangedAt"]) == (
        REENABLED, "scheduler", UNTIL)
    assert enabled["status"]["nextExecutionTime"] == "2026-03-01T12:30:10Z"
    [change] = scheduler_changes(collection)
    assert (change["kind"], change["time"], change["detail"], change["note"]) == (
        "job.state", UNTIL, "state: disabled → enabled", REENABLED)
    step_to(driver, clock, "12:30:10")
    step_to(driver, clock, "12:40:10")
    assert [request.header(EXPECTED) for request in receiver.requests] == [
        "2026-03-01T12:30:10Z", "2026-03-01T12:40:10Z"]
    history = collection.call("GET", f"{JOBS}/paused/history").get_json()
    assert [entry["status"] for entry in history] == ["completed", "completed"]
    with db.snapshot() as session:
        assert session.scalar(select(func.count()).select_from(Execution)) == 2
    assert job(collection)["status"]["executionCount"] == 2


def test_the_node_wakes_for_the_time_and_a_pass_with_none_waiting_does_not_look(
        collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    tries: list[Any] = []
    enable = driver.node.enable_paused_jobs

    def counted(now: Any) -> int:
        tries.append(now)
        return enable(now)

    monkeypatch.setattr(driver.node, "enable_paused_jobs", counted)
    driver.step()  # nothing waits yet
    collection.call("PUT", f"{JOBS}/paused", every_ten_minutes(receiver))
    driver.step()  # its glance finds the time; nothing is due yet
    assert tries == []
    assert driver.node.glance().paused_time == clock.now().replace(minute=25)
    assert driver.node.next_wakeup() == clock.now().replace(minute=25)
    step_to(driver, clock, "12:25:00")
    assert tries == [clock.now()] and job(collection)["state"] == "enabled"
    assert driver.node.glance().paused_time is None
    step_to(driver, clock, "12:26:00")
    assert len(tries) == 1


def test_two_nodes_enable_the_job_once(
        collection: Tenant, driver: NodeDriver, other: NodeDriver, receiver: Receiver,
        clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/paused", every_ten_minutes(receiver))
    together(driver, other)
    clock.advance(timedelta(minutes=25))
    together(driver, other)
    together(driver, other)
    assert job(collection)["state"] == "enabled"
    assert len(scheduler_changes(collection)) == 1
    # Told to by hand as well, neither enables it again.
    assert driver.node.enable_paused_jobs(clock.now()) == 0
    assert other.node.enable_paused_jobs(clock.now()) == 0
    assert job(collection)["status"]["nextExecutionTime"] == "2026-03-01T12:30:10Z"


def test_a_job_of_a_suspended_collection_is_enabled_and_fires_once_it_is_started(
        collection: Tenant, driver: NodeDriver, receiver: Receiver,
        clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/paused", every_ten_minutes(receiver))
    suspended = collection.call("PUT", f"{COLLECTIONS}/jc1", collection_xml(state="Suspended"))
    assert suspended.status_code == 202, suspended.data
    driver.step()  # its glance finds the time
    step_to(driver, clock, "12:25:00")
    assert job(collection)["state"] == "enabled"
    step_to(driver, clock, "12:30:10")
    assert receiver.requests == []
    started = collection.call("PUT", f"{COLLECTIONS}/jc1", collection_xml(state="Started"))
    assert started.status_code == 202, started.data
    step_to(driver, clock, "12:40:10")
    assert [request.header(EXPECTED) for request in receiver.requests] == [
        "2026-03-01T12:40:10Z"]


def test_a_job_of_a_collection_being_deleted_is_left_alone_and_keeps_no_node_awake(
        collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
        db: Database) -> None:
    collection.call("PUT", f"{JOBS}/paused", every_ten_minutes(receiver))
    with db.transaction() as session:  # its deletion begun, not yet carried out
        session.execute(update(JobCollection).values(lifecycle=DELETING))
    step_to(driver, clock, "12:25:00")
    assert driver.node.next_wakeup() is None
    assert driver.node.enable_paused_jobs(clock.now()) == 0
    with db.transaction() as session:
        session.execute(update(JobCollection).values(lifecycle="created"))
    assert job(collection)["state"] == "disabled"


def test_a_failed_try_to_enable_is_logged_the_jobs_due_still_fire_and_it_is_made_again(
        collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    collection.call("PUT", f"{JOBS}/paused", every_ten_minutes(receiver))
    collection.call("PUT", f"{JOBS}/going", receiver.job(
        "/going", startTime="2026-03-01T12:25:00Z"))
    enable = driver.node.enable_paused_jobs

    def broken(now: Any) -> int:
        raise RuntimeError("no luck")

    driver.step()
    monkeypatch.setattr(driver.node, "enable_paused_jobs", broken)
    clock.advance(timedelta(minutes=25))
    delay = driver.run_pass()
    driver.settle()
    assert "could not enable the jobs disabled until now" in caplog.text
    assert [request.path for request in receiver.requests] == ["/going"]
    assert delay == driver.node.options.max_sleep, "no pass at once for the failed try"
    monkeypatch.setattr(driver.node, "enable_paused_jobs", enable)
    driver.step()
    assert job(collection)["state"] == "disabled", "tried again after the longest sleep"
    clock.advance(timedelta(seconds=driver.node.options.max_sleep))
    driver.step()
    assert job(collection)["state"] == "enabled"


def test_a_node_that_starts_after_the_time_enables_the_job_on_a_pass_made_at_once(
        collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
        db: Database) -> None:
    collection.call("PUT", f"{JOBS}/paused", every_ten_minutes(receiver))
    clock.advance(timedelta(minutes=30))  # 12:30:00, the node down until now
    assert driver.run_pass() == 0, "its glance finds the time passed: another pass at once"
    driver.step()
    enabled = job(collection)
    assert (enabled["state"], enabled["stateChangedAt"]) == ("enabled", "2026-03-01T12:30:00Z")
    assert enabled["stateNote"] == REENABLED
    assert enabled["status"]["nextExecutionTime"] == "2026-03-01T12:30:10Z"
    step_to(driver, clock, "12:30:10")
    assert [request.header(EXPECTED) for request in receiver.requests] == [
        "2026-03-01T12:30:10Z"]
    with db.snapshot() as session:  # nothing it skipped is recorded missed
        assert session.scalar(select(func.count()).select_from(Execution)) == 1
