"""Job history says what ran: every entry names its execution, a sequence's entries name
their step, and an execution canceled because its job or collection stopped leaves one
`canceled` entry saying why."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from scheduler.clock import FrozenClock
from scheduler.db.models import Execution, Job
from scheduler.db.session import Database
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant, collection_xml

COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"
EXECUTIONS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"
STEP_KEYS = {"stepIndex", "stepName"}


def history(collection: Tenant, job_id: str) -> list[dict[str, Any]]:
    """The job's history, oldest first."""
    entries: list[dict[str, Any]] = collection.call("GET", f"{JOBS}/{job_id}/history").get_json()
    return entries[::-1]


def executions_of(collection: Tenant, job_id: str) -> list[dict[str, Any]]:
    """The job's executions, oldest first."""
    found: list[dict[str, Any]] = collection.call(
        "GET", f"{JOBS}/{job_id}/executions").get_json()
    return found[::-1]


def retried(receiver: Receiver, path: str, **extra: Any) -> dict[str, Any]:
    """The receiver's job due at 12:00:10, retried once 30 s after a failure."""
    job = receiver.job(path, **extra)
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT30S",
                                    "retryCount": 1}
    return job


def step(name: str, receiver: Receiver, path: str, **extra: Any) -> dict[str, Any]:
    """One step calling the receiver, with no retries."""
    return {"name": name, "retryPolicy": {"retryType": "none"},
            "action": {"type": "http", "request": {"uri": receiver.url(path), "method": "POST"}},
            **extra}


def sequence_job(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A job running `steps` in order, due in a day (so only run-now fires it)."""
    return {"startTime": "2026-03-02T12:00:00Z",
            "action": {"type": "sequence", "steps": list(steps)}, **extra}


def canceled(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The canceled entries among these."""
    return [entry for entry in entries if entry["status"] == "canceled"]


# --- what ran ------------------------------------------------------------------------------

def test_each_attempt_s_entry_names_its_execution_and_no_step(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    receiver.answers["/flaky"] = (503, {}, b"not yet")
    collection.call("PUT", f"{JOBS}/flaky", retried(receiver, "/flaky"))
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    receiver.answers["/flaky"] = (200, {}, b"ok")
    clock.advance(timedelta(seconds=30))
    assert driver.step() == 1
    [execution] = executions_of(collection, "flaky")
    entries = history(collection, "flaky")
    assert [(e["status"], e["retryCount"]) for e in entries] == [("failed", 0), ("completed", 1)]
    assert {e["executionId"] for e in entries} == {execution["id"]} == set(receiver.tags())
    assert not any(STEP_KEYS & set(entry) for entry in entries)


def test_missed_occurrences_name_the_missed_executions(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    collection.call("PUT", f"{JOBS}/minutely", receiver.job(
        recurrence={"frequency": "minute", "interval": 1}))
    clock.advance(timedelta(minutes=3, seconds=10))
    assert driver.step() == 1
    made = {e["id"]: e["status"] for e in executions_of(collection, "minutely")}
    entries = history(collection, "minutely")
    assert sorted((made[e["executionId"]], e["status"]) for e in entries) == [
        ("completed", "completed"), ("missed", "missed"), ("missed", "missed"),
        ("missed", "missed")]
    assert len({e["executionId"] for e in entries}) == 4


def test_a_run_that_cannot_be_read_fails_with_an_entry_naming_it(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/broken", receiver.job(startTime="2026-03-02T12:00:00Z"))
    execution_id = collection.call("POST", f"{JOBS}/broken/run").get_json()["id"]
    with db.transaction() as session:  # a stored definition that no longer reads
        session.execute(update(Job).where(Job.job_id == "broken")
                        .values(definition='{"action": {"type": "http"}}'))
    assert driver.step() == 0
    [entry] = history(collection, "broken")
    assert (entry["status"], entry["executionId"]) == ("failed", execution_id)


def test_a_sequence_s_entries_name_each_step_and_its_error_action_s_none(
    collection: Tenant, driver: NodeDriver, receiver: Receiver,
) -> None:
    receiver.answers["/broken"] = (500, {}, b"no")
    job = sequence_job(step("login", receiver, "/login"), step("use", receiver, "/broken"))
    job["action"]["errorAction"] = {"type": "http", "request": {
        "uri": receiver.url("/alarm"), "method": "POST"}, "retryPolicy": {"retryType": "none"}}
    collection.call("PUT", f"{JOBS}/seq", job)
    execution_id = collection.call("POST", f"{JOBS}/seq/run").get_json()["id"]
    for _ in range(3):
        driver.step()
    assert [r.path for r in receiver.requests] == ["/login", "/broken", "/alarm"]
    execution = collection.call("GET", f"{EXECUTIONS}/{execution_id}").get_json()
    assert execution["currentStep"] == 1
    login, use, alarm = history(collection, "seq")
    assert {login["executionId"], use["executionId"], alarm["executionId"]} == {execution_id}
    assert (login["actionName"], login["stepIndex"], login["stepName"], login["status"]) == (
        "MainAction", 0, "login", "completed")
    assert (use["actionName"], use["stepIndex"], use["stepName"], use["status"]) == (
        "MainAction", 1, "use", "failed")
    assert alarm["actionName"] == "ErrorAction" and not STEP_KEYS & set(alarm)


def test_a_sequence_canceled_while_waiting_names_the_step_and_the_certificate(
    collection: Tenant, driver: NodeDriver, receiver: Receiver,
) -> None:
    job = sequence_job(step("prepare", receiver, "/prepare"),
                       step("approve", receiver, "/go", manual=True))
    collection.call("PUT", f"{JOBS}/seq", job)
    execution_id = collection.call("POST", f"{JOBS}/seq/run").get_json()["id"]
    assert driver.step() == 1
    assert collection.call("PATCH", f"{EXECUTIONS}/{execution_id}",
                           {"status": "canceled"}).status_code == 204
    prepared, stopped = history(collection, "seq")
    assert (prepared["stepName"], prepared["status"]) == ("prepare", "completed")
    assert (stopped["status"], stopped["stepIndex"], stopped["stepName"]) == (
        "canceled", 1, "approve")
    assert stopped["executionId"] == execution_id
    assert stopped["message"] == (
        f"Canceled by certificate {collection.certificate.thumbprint} (subject CN=first).")


# --- canceled because the job or its collection stopped -----------------------------------

def test_a_retry_canceled_because_its_job_was_disabled_leaves_one_entry_saying_so(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    receiver.answers["/flaky"] = (503, {}, b"down")
    collection.call("PUT", f"{JOBS}/flaky", retried(receiver, "/flaky"))
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert collection.call("PATCH", f"{JOBS}/flaky", {"state": "disabled"}).status_code == 200
    clock.advance(timedelta(seconds=30))  # the retry is due: the claim cancels it
    assert driver.step() == 0
    clock.advance(timedelta(minutes=5))
    driver.step()
    [execution] = executions_of(collection, "flaky")
    failed, stopped = history(collection, "flaky")
    assert failed["status"] == "failed"
    assert stopped == {
        "jobId": "flaky", "timestamp": "2026-03-01T12:00:40Z",
        "startTime": "2026-03-01T12:00:40Z", "endTime": "2026-03-01T12:00:40Z",
        "expectedExecutionTime": "2026-03-01T12:00:10Z", "state": "disabled",
        "status": "canceled", "actionName": "MainAction",
        "message": "Canceled because the job was disabled.", "retryCount": 1,
        "repeatCount": 0, "executionId": execution["id"],
    }
    assert execution["status"] == "canceled" and execution["message"] == stopped["message"]
    assert len(receiver.requests) == 1


def test_a_retry_canceled_because_its_collection_was_suspended_says_so(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    receiver.answers["/flaky"] = (503, {}, b"down")
    collection.call("PUT", f"{JOBS}/flaky", retried(receiver, "/flaky"))
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert collection.call("PUT", COLLECTION,
                           collection_xml(state="Suspended")).status_code == 202
    clock.advance(timedelta(seconds=30))
    assert driver.step() == 0
    [entry] = canceled(history(collection, "flaky"))
    assert entry["message"] == "Canceled because the job collection was suspended."
    assert entry["state"] == "enabled"


def test_a_readied_call_dropped_because_its_job_was_disabled_leaves_one_entry(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/soon", receiver.job())  # due at 12:00:10
    clock.advance(timedelta(seconds=9, milliseconds=950))  # within the lookahead
    driver.run_pass()
    assert driver.held_calls() == (1, 0)
    collection.call("PATCH", f"{JOBS}/soon", {"state": "disabled"})
    driver.run_pass()
    assert driver.held_calls() == (0, 0)
    clock.advance(timedelta(seconds=1))
    driver.step()
    assert receiver.requests == []
    [execution] = executions_of(collection, "soon")
    [entry] = history(collection, "soon")
    assert (entry["status"], entry["message"], entry["executionId"]) == (
        "canceled", "Canceled because the job was disabled.", execution["id"])
    with db.snapshot() as session:
        stored = session.scalar(select(Execution.status).where(Execution.id == execution["id"]))
    assert stored == "canceled"
