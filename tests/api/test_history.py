"""Job history says what ran: each entry names its execution, and a cancel made through the
API leaves one `canceled` entry naming the certificate that made it. The engine stays off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from scheduler.clock import FrozenClock
from scheduler.db.models import HistoryEntry, Job
from scheduler.db.session import Database
from scheduler.engine.store import EngineStore
from tests.support import JOBS, START, Tenant, http_job

EXECUTIONS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"


def history(tenant: Tenant, job_id: str, query: str = "") -> list[dict[str, Any]]:
    """The job's history, newest first."""
    response = tenant.call("GET", f"{JOBS}/{job_id}/history{query}")
    assert response.status_code == 200, response.data
    entries: list[dict[str, Any]] = response.get_json()
    return entries


def canceled_by(tenant: Tenant) -> str:
    """The message of a cancel made with the tenant's certificate (its subject is CN=first)."""
    return f"Canceled by certificate {tenant.certificate.thumbprint} (subject CN=first)."


def history_count(db: Database) -> int:
    """How many history entries are stored."""
    with db.snapshot() as session:
        return int(session.scalar(select(func.count()).select_from(HistoryEntry)) or 0)


def test_a_cancel_through_the_api_leaves_one_entry_naming_the_certificate(
        collection: Tenant, db: Database, clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    execution_id = collection.call("POST", f"{JOBS}/job1/run").get_json()["id"]
    clock.advance(timedelta(seconds=3))
    response = collection.call("PATCH", f"{JOBS}/job1/executions/{execution_id}",
                               {"status": "canceled"})
    assert response.status_code == 204, response.data
    [entry] = history(collection, "job1")
    assert entry == {
        "jobId": "job1", "timestamp": "2026-03-01T12:00:03Z",
        "startTime": "2026-03-01T12:00:03Z", "endTime": "2026-03-01T12:00:03Z",
        "expectedExecutionTime": "2026-03-01T12:00:00Z", "state": "enabled",
        "status": "canceled", "actionName": "MainAction", "message": canceled_by(collection),
        "retryCount": 0, "repeatCount": 0, "executionId": execution_id,
    }
    execution = collection.call("GET", f"{EXECUTIONS}/{execution_id}").get_json()
    assert execution["status"] == "canceled" and execution["message"] == canceled_by(collection)
    again = collection.call("PATCH", f"{EXECUTIONS}/{execution_id}", {"status": "canceled"})
    assert again.status_code == 409
    assert history_count(db) == 1, "a cancel refused writes no entry"


def test_an_execution_already_closed_is_not_canceled_again_nor_recorded_twice(
        collection: Tenant, db: Database, clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    execution_id = collection.call("POST", f"{JOBS}/job1/run").get_json()["id"]
    collection.call("PATCH", f"{EXECUTIONS}/{execution_id}", {"status": "canceled"})
    # An engine that found the job stopped and cancels what it would have run, after the
    # request: the execution is closed already, so nothing changes.
    with db.transaction() as session:
        EngineStore.cancel_executions(session, [execution_id], clock.now())
    [entry] = history(collection, "job1")
    assert entry["message"] == canceled_by(collection)
    execution = collection.call("GET", f"{EXECUTIONS}/{execution_id}").get_json()
    assert execution["message"] == canceled_by(collection)


def test_history_is_filtered_by_status_canceled(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    ids = [collection.call("POST", f"{JOBS}/job1/run").get_json()["id"] for _ in range(2)]
    collection.call("PATCH", f"{EXECUTIONS}/{ids[1]}", {"status": "canceled"})
    canceled = history(collection, "job1", "?$filter=status eq 'Canceled'")
    assert [entry["executionId"] for entry in canceled] == [ids[1]]
    assert history(collection, "job1", "?$filter=status eq 'completed'") == []
    refused = collection.call("GET", f"{JOBS}/job1/history?$filter=status eq 'stopped'")
    assert refused.status_code == 400
    assert "completed, failed, postponed, missed, canceled" in \
        refused.get_json()["error"]["message"]


def test_a_canceled_inline_run_names_the_certificate_and_writes_no_history(
        collection: Tenant, db: Database) -> None:
    inline = {"action": {"type": "http", "request": {"uri": "http://example.com/x",
                                                     "method": "GET"}}}
    execution_id = collection.call("POST", EXECUTIONS, inline).get_json()["id"]
    assert collection.call("PATCH", f"{EXECUTIONS}/{execution_id}",
                           {"status": "canceled"}).status_code == 204
    execution = collection.call("GET", f"{EXECUTIONS}/{execution_id}").get_json()
    assert execution["message"] == canceled_by(collection)
    assert history_count(db) == 0


def test_entries_that_do_not_know_what_ran_leave_those_keys_out(
        collection: Tenant, db: Database) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    with db.transaction() as session:
        job = session.scalar(select(Job))
        assert job is not None
        for execution_id, step_index, step_name in ((None, None, None),
                                                    ("a" * 32, None, None),
                                                    ("b" * 32, 0, "login")):
            session.add(HistoryEntry(
                job_pk=job.id, timestamp=START, start_time=START, end_time=START,
                expected_execution_time=START, state="enabled", status="completed",
                action_name="MainAction", message="ok", retry_count=0, repeat_count=0,
                execution_id=execution_id, step_index=step_index, step_name=step_name))
    step, plain, old = history(collection, "job1")
    assert (step["executionId"], step["stepIndex"], step["stepName"]) == ("b" * 32, 0, "login")
    assert plain["executionId"] == "a" * 32
    assert "stepIndex" not in plain and "stepName" not in plain
    assert not {"executionId", "stepIndex", "stepName"} & set(old)
