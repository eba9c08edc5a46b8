"""Executions through the API: run now, watch, cancel, resume, sequences, inline runs.

The API runs in process with a fake clock, and an engine driven by hand makes the calls
to a real HTTP receiver on loopback.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.clock import FrozenClock
from scheduler.db.executions import new_execution_id
from scheduler.db.models import Execution
from scheduler.db.session import Database
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant, collection_xml

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"
EXECUTIONS = f"{COLLECTION}/executions"


def call_job(receiver: Receiver, path: str = "/hook", **extra: Any) -> dict[str, Any]:
    """A job that calls the receiver, due in a day (so only run-now fires it)."""
    job: dict[str, Any] = {
        "startTime": "2026-03-02T12:00:00Z",
        "action": {"type": "http", "request": {"uri": receiver.url(path), "method": "POST",
                                               "body": "hello"}},
    }
    job.update(extra)
    return job


def count_executions(db: Database) -> int:
    """How many executions are stored."""
    with db.snapshot() as session:
        return int(session.scalar(select(func.count()).select_from(Execution)) or 0)


def assert_refused(response: Any, expected: str, db: Database) -> None:
    """A 400 whose message names `expected`, and no execution stored."""
    assert response.status_code == 400
    assert expected in response.get_json()["error"]["message"]
    assert count_executions(db) == 0


def run(collection: Tenant, job_id: str, body: Any = None, **kwargs: Any) -> Any:
    """POST .../jobs/{job_id}/run."""
    return collection.call("POST", f"{JOBS}/{job_id}/run", body, **kwargs)


# --- run now -------------------------------------------------------------------------------

def test_execution_ids_are_version_7_uuids_in_the_order_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_execution_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert all(uuid.UUID(hex=execution_id).version == 7 for execution_id in ids)
    assert all(uuid.UUID(hex=execution_id).variant == uuid.RFC_4122 for execution_id in ids)
    made_at = [int(execution_id[:12], 16) for execution_id in ids]
    assert made_at == sorted(made_at) and before <= made_at[0] and made_at[-1] <= after
    assert len(set(ids)) == len(ids)


def test_run_now_substitutes_parameters_and_leaves_the_schedule_alone(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    job = call_job(receiver, "/hook/{{parameters.region}}",
                   parameters={"region": "eu", "who": "nobody"})
    job["action"]["request"]["headers"] = {"x-run": "{{execution.id}}"}
    job["action"]["request"]["body"] = "{{parameters.who}} at {{execution.scheduledTime}}"
    job["recurrence"] = {"frequency": "day"}
    before = collection.call("PUT", f"{JOBS}/nightly", job).get_json()["status"]

    response = run(collection, "nightly", {"parameters": {"who": "ops"}})
    assert response.status_code == 202, response.data
    execution = response.get_json()
    assert len(response.headers["x-ms-request-id"]) == 32
    assert response.headers["Location"].endswith(f"{JOBS}/nightly/executions/{execution['id']}")
    assert execution["status"] == "pending" and execution["trigger"] == "manual"
    assert execution["parameters"] == {"region": "eu", "who": "ops"}
    pending_etag = response.headers["ETag"]

    assert driver.step() == 1
    (received,) = receiver.requests
    assert received.path == "/hook/eu"
    assert received.header("x-run") == execution["id"]
    assert received.header("x-ms-execution-tag") == execution["id"]
    assert received.body == f"ops at {execution['scheduledTime']}".encode()

    location = response.headers["Location"].split(collection.subscription_id, 1)[1]
    done = collection.call("GET", location)
    assert done.status_code == 200
    document = done.get_json()
    assert document["status"] == "completed" and document["node"] == "node-a"
    assert document["attempts"] == 1
    assert document["outputParameters"]["statusCode"] == 200
    assert document["outputParameters"]["body"] == "ok"
    assert done.headers["ETag"] != pending_etag
    after = collection.call("GET", f"{JOBS}/nightly").get_json()["status"]
    assert after["nextExecutionTime"] == before["nextExecutionTime"]
    assert after["executionCount"] == before["executionCount"] == 0


def test_run_now_without_a_body_uses_the_job_defaults(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    collection.call("PUT", f"{JOBS}/j", call_job(receiver, "/{{parameters.p}}",
                                                 parameters={"p": "default"}))
    assert run(collection, "j").status_code == 202
    assert driver.step() == 1
    assert [r.path for r in receiver.requests] == ["/default"]


@pytest.mark.parametrize(("body", "expected"), [
    ({"parameters": {"bad name": 1}}, "parameters.bad name"),
    ({"parameters": {"p": {"nested": 1}}}, "parameters.p"),
    ({"parameters": []}, "parameters"),
    ({"other": 1}, "other"),
    ([1], "JSON object"),
])
def test_run_now_refuses_bad_parameters_and_stores_nothing(
    collection: Tenant, receiver: Receiver, db: Database, body: Any, expected: str
) -> None:
    collection.call("PUT", f"{JOBS}/j", call_job(receiver))
    assert_refused(run(collection, "j", body), expected, db)


def test_run_now_of_a_missing_or_disabled_job_is_refused(
    collection: Tenant, receiver: Receiver, db: Database
) -> None:
    assert run(collection, "nope").status_code == 404
    collection.call("PUT", f"{JOBS}/off", call_job(receiver, state="disabled"))
    response = run(collection, "off")
    assert response.status_code == 409
    assert "disabled" in response.get_json()["error"]["message"]
    assert count_executions(db) == 0


# --- reading -------------------------------------------------------------------------------

def test_executions_are_listed_newest_first_filtered_and_paged(
    collection: Tenant, receiver: Receiver, driver: NodeDriver, clock: FrozenClock
) -> None:
    collection.call("PUT", f"{JOBS}/j", call_job(receiver))
    ids = []
    for _ in range(3):
        ids.append(run(collection, "j").get_json()["id"])
        clock.advance(timedelta(seconds=1))
    driver.step()
    ids.append(run(collection, "j").get_json()["id"])  # still pending
    listed = collection.call("GET", f"{JOBS}/j/executions").get_json()
    assert [e["id"] for e in listed] == ids[::-1]
    pending = collection.call("GET", f"{JOBS}/j/executions?$filter=status eq 'pending'")
    assert [e["id"] for e in pending.get_json()] == [ids[3]]
    page = collection.call("GET", f"{JOBS}/j/executions?$top=2&$skip=1").get_json()
    assert [e["id"] for e in page] == [ids[2], ids[1]]
    in_collection = collection.call("GET", EXECUTIONS).get_json()
    assert [e["id"] for e in in_collection] == ids[::-1]
    assert {e["jobId"] for e in in_collection} == {"j"}
    bad = collection.call("GET", f"{JOBS}/j/executions?$filter=status eq 'lost'")
    assert bad.status_code == 400 and "status must be one of" in bad.get_json()["error"]["message"]
    assert collection.call("GET", f"{JOBS}/j/executions/{'0' * 32}").status_code == 404


# --- cancel --------------------------------------------------------------------------------

def test_a_pending_execution_canceled_with_its_etag_never_runs(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    collection.call("PUT", f"{JOBS}/j", call_job(receiver))
    started = run(collection, "j")
    path = f"{JOBS}/j/executions/{started.get_json()['id']}"
    stale = collection.call("PATCH", path, {"status": "canceled"},
                            headers={"If-Match": '"not-it"'})
    assert stale.status_code == 412
    canceled = collection.call("PATCH", path, {"status": "canceled"},
                               headers={"If-Match": started.headers["ETag"]})
    assert canceled.status_code == 204, canceled.data
    assert canceled.headers["ETag"] != started.headers["ETag"]
    assert driver.step() == 0
    assert receiver.requests == []
    document = collection.call("GET", path).get_json()
    assert document["status"] == "canceled"
    assert document["message"] == (
        f"Canceled by certificate {collection.certificate.thumbprint} (subject CN=first).")
    again = collection.call("PATCH", path, {"status": "canceled"})
    assert again.status_code == 409


def test_cancel_accepts_merge_and_a_method_override_and_refuses_other_changes(
    collection: Tenant, receiver: Receiver
) -> None:
    collection.call("PUT", f"{JOBS}/j", call_job(receiver))
    first = run(collection, "j").get_json()["id"]
    second = run(collection, "j").get_json()["id"]
    refused = collection.call("PATCH", f"{EXECUTIONS}/{first}", {"status": "running"})
    assert refused.status_code == 400
    assert "status" in refused.get_json()["error"]["message"]
    assert collection.call("MERGE", f"{EXECUTIONS}/{first}",
                           {"status": "canceled"}).status_code == 204
    assert collection.call("POST", f"{JOBS}/j/executions/{second}", {"status": "Canceled"},
                           headers={"X-HTTP-Method": "MERGE"}).status_code == 204


def test_a_retry_of_a_canceled_execution_does_not_run(
    collection: Tenant, receiver: Receiver, driver: NodeDriver, clock: FrozenClock
) -> None:
    receiver.answers["/hook"] = (500, {}, b"down")
    job = call_job(receiver)
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT10S",
                                    "retryCount": 3}
    collection.call("PUT", f"{JOBS}/j", job)
    execution_id = run(collection, "j").get_json()["id"]
    assert driver.step() == 1
    assert collection.call("PATCH", f"{EXECUTIONS}/{execution_id}",
                           {"status": "canceled"}).status_code == 204
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 0
    assert len(receiver.requests) == 1


# --- sequences -----------------------------------------------------------------------------

def sequence_job(receiver: Receiver, *steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A job running steps in order, due in a day."""
    job: dict[str, Any] = {"startTime": "2026-03-02T12:00:00Z",
                           "action": {"type": "sequence", "steps": list(steps)}}
    job.update(extra)
    return job


def step(name: str, receiver: Receiver, path: str, body: str | None = None,
         **extra: Any) -> dict[str, Any]:
    """One step calling the receiver, with no retries unless told."""
    request: dict[str, Any] = {"uri": receiver.url(path), "method": "POST"}
    if body is not None:
        request["body"] = body
    entry: dict[str, Any] = {"name": name, "action": {"type": "http", "request": request},
                             "retryPolicy": {"retryType": "none"}}
    entry.update(extra)
    return entry


def test_steps_run_in_order_and_later_steps_use_earlier_outputs(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    receiver.answers["/token"] = (200, {"Content-Type": "application/json"},
                                  b'{"token": "abc", "items": [{"id": 7}]}')
    job = sequence_job(receiver, step("login", receiver, "/token"),
                       step("use", receiver, "/use/{{steps.login.output.json.token}}",
                            "{{steps.login.output.statusCode}} "
                            "{{steps.login.output.json.items.0.id}}"))
    assert collection.call("PUT", f"{JOBS}/seq", job).status_code == 201
    execution_id = run(collection, "seq").get_json()["id"]
    assert driver.step() == 1  # the first step
    assert driver.step() == 1  # the second, handed over at once
    assert [r.path for r in receiver.requests] == ["/token", "/use/abc"]
    assert receiver.requests[1].body == b"200 7"
    document = collection.call("GET", f"{EXECUTIONS}/{execution_id}").get_json()
    assert document["status"] == "completed" and document["attempts"] == 2
    login, use = document["steps"]
    assert (login["name"], login["status"], login["tries"]) == ("login", "completed", 1)
    assert login["output"]["statusCode"] == 200
    assert use["input"]["uri"] == receiver.url("/use/abc")
    assert use["input"]["body"] == "200 7"
    assert use["startTime"] and use["endTime"]
    assert document["outputParameters"]["statusCode"] == 200


def test_a_failed_step_that_pauses_is_retried_on_resume(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    receiver.answers["/flaky"] = (503, {}, b"not yet")
    job = sequence_job(receiver, step("one", receiver, "/one"),
                       step("two", receiver, "/flaky", pauseOnFailure=True),
                       step("three", receiver, "/three"))
    collection.call("PUT", f"{JOBS}/seq", job)
    started = run(collection, "seq")
    execution_id = started.get_json()["id"]
    path = f"{JOBS}/seq/executions/{execution_id}"
    etags = [started.headers["ETag"]]
    driver.step()
    etags.append(collection.call("GET", path).headers["ETag"])  # pending, on step two
    driver.step()
    etags.append(collection.call("GET", path).headers["ETag"])  # paused
    paused = collection.call("GET", path).get_json()
    assert paused["status"] == "paused"
    assert [s["status"] for s in paused["steps"]] == ["completed", "paused"]
    assert driver.step() == 0  # nothing runs while it is paused
    receiver.answers["/flaky"] = (200, {}, b"ready")
    assert collection.call("POST", f"{path}/resume",
                           headers={"If-Match": etags[0]}).status_code == 412
    resumed = collection.call("POST", f"{path}/resume", headers={"If-Match": etags[-1]})
    assert resumed.status_code == 202 and resumed.get_json()["status"] == "pending"
    etags.append(resumed.headers["ETag"])
    driver.step()
    driver.step()
    etags.append(collection.call("GET", path).headers["ETag"])  # completed
    assert len(set(etags)) == len(etags), "every change of status changes the ETag"
    done = collection.call("GET", path).get_json()
    assert done["status"] == "completed"
    assert [(s["name"], s["status"], s["tries"]) for s in done["steps"]] == [
        ("one", "completed", 1), ("two", "completed", 2), ("three", "completed", 1)]
    assert [r.path for r in receiver.requests] == ["/one", "/flaky", "/flaky", "/three"]
    assert collection.call("POST", f"{path}/resume").status_code == 409


def test_a_manual_step_waits_for_resume_and_a_cancel_ends_it(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    job = sequence_job(receiver, step("prepare", receiver, "/prepare"),
                       step("approve", receiver, "/go", manual=True))
    collection.call("PUT", f"{JOBS}/seq", job)
    first = run(collection, "seq").get_json()["id"]
    second = run(collection, "seq").get_json()["id"]
    assert driver.step() == 2
    for execution_id in (first, second):
        document = collection.call("GET", f"{EXECUTIONS}/{execution_id}").get_json()
        assert document["status"] == "paused"
        assert document["steps"][1] == {"name": "approve", "status": "waiting", "tries": 0}
    assert collection.call("POST", f"{EXECUTIONS}/{first}/resume").status_code == 202
    assert collection.call("PATCH", f"{EXECUTIONS}/{second}",
                           {"status": "canceled"}).status_code == 204
    assert driver.step() == 1
    assert [r.path for r in receiver.requests] == ["/prepare", "/prepare", "/go"]
    assert collection.call("GET", f"{EXECUTIONS}/{first}").get_json()["status"] == "completed"


def test_a_sequence_whose_first_step_is_manual_waits_before_anything_runs(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    job = sequence_job(receiver, step("approve", receiver, "/go", manual=True))
    collection.call("PUT", f"{JOBS}/seq", job)
    started = run(collection, "seq").get_json()
    assert started["status"] == "paused"
    assert driver.step() == 0
    collection.call("POST", f"{EXECUTIONS}/{started['id']}/resume")
    assert driver.step() == 1
    assert [r.path for r in receiver.requests] == ["/go"]


def test_a_step_gives_up_at_its_own_timeout(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    receiver.holds["/slow"] = released = threading.Event()
    job = sequence_job(receiver, step("slow", receiver, "/slow", timeout="PT0.5S"))
    collection.call("PUT", f"{JOBS}/seq", job)
    execution_id = run(collection, "seq").get_json()["id"]
    try:
        driver.step()  # the step's own deadline ends the attempt, not the target
    finally:
        released.set()
    document = collection.call("GET", f"{EXECUTIONS}/{execution_id}").get_json()
    assert document["status"] == "failed"
    assert "no answer within 0.5 s" in document["steps"][0]["message"]


@pytest.mark.parametrize(("steps", "expected"), [
    ([], "action.steps: must have at least one step"),
    ([{"name": "a"}], "action.steps.0.action: is required"),
    ([{"name": "a b", "action": {"type": "http", "request": {
        "uri": "http://x.example", "method": "GET"}}}], "action.steps.0.name"),
    ([{"name": "a", "timeout": "PT0S", "action": {"type": "http", "request": {
        "uri": "http://x.example", "method": "GET"}}}], "action.steps.0.timeout"),
    ([{"name": "a", "action": {"type": "sequence", "steps": []}}], "action.steps.0.action"),
])
def test_bad_sequences_are_refused_naming_the_field(
    collection: Tenant, steps: list[Any], expected: str
) -> None:
    job = {"action": {"type": "sequence", "steps": steps}}
    response = collection.call("PUT", f"{JOBS}/bad", job)
    assert response.status_code == 400
    assert expected in response.get_json()["error"]["message"]


# --- inline runs ---------------------------------------------------------------------------

def test_an_inline_definition_runs_once_without_a_job(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    body = {"action": {"type": "http", "request": {
        "uri": receiver.url("/inline/{{parameters.n}}"), "method": "PUT",
        "authentication": {"type": "Basic", "username": "u", "password": "secret"}}},
        "parameters": {"n": 5}}
    response = collection.call("POST", EXECUTIONS, body)
    assert response.status_code == 202, response.data
    execution = response.get_json()
    assert execution["jobId"] is None and execution["parameters"] == {"n": 5}
    assert response.headers["Location"].endswith(f"{EXECUTIONS}/{execution['id']}")
    assert "secret" not in response.get_data(as_text=True)
    assert driver.step() == 1
    (received,) = receiver.requests
    assert received.path == "/inline/5" and received.header("Authorization").startswith("Basic")
    document = collection.call("GET", f"{EXECUTIONS}/{execution['id']}").get_json()
    assert document["status"] == "completed"
    assert [e["id"] for e in collection.call("GET", EXECUTIONS).get_json()] == [execution["id"]]
    assert collection.call("GET", f"{JOBS}").get_json() == []


def test_an_inline_sequence_pauses_and_resumes_like_a_job_s(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    body = {"action": {"type": "sequence", "steps": [
        step("a", receiver, "/a"), step("b", receiver, "/b", manual=True)]}}
    execution_id = collection.call("POST", EXECUTIONS, body).get_json()["id"]
    driver.step()
    assert collection.call("GET", f"{EXECUTIONS}/{execution_id}").get_json()["status"] == \
        "paused"
    collection.call("POST", f"{EXECUTIONS}/{execution_id}/resume")
    driver.step()
    assert [r.path for r in receiver.requests] == ["/a", "/b"]


def test_open_inline_runs_count_against_the_quota_like_jobs(
    tenant: Tenant, receiver: Receiver, driver: NodeDriver, db: Database
) -> None:
    assert tenant.call("PUT", "/cloudservices/cs1", (
        '<CloudService xmlns="http://schemas.microsoft.com/windowsazure"><Label>cs</Label>'
        "<Description>d</Description><GeoRegion>West Europe</GeoRegion></CloudService>"
    )).status_code == 202
    quota = "<Quota><MaxJobCount>2</MaxJobCount></Quota>"
    assert tenant.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                       collection_xml("Standard", quota)).status_code == 202
    assert tenant.call("PUT", f"{JOBS}/one", call_job(receiver)).status_code == 201
    inline = {"action": {"type": "http", "request": {"uri": receiver.url("/x"),
                                                     "method": "GET"}}}
    assert tenant.call("POST", EXECUTIONS, inline).status_code == 202
    full = tenant.call("POST", EXECUTIONS, inline)
    assert full.status_code == 409 and "quota" in full.get_json()["error"]["message"]
    assert tenant.call("PUT", f"{JOBS}/two", call_job(receiver)).status_code == 409
    driver.step()  # the open run ends: its place is free again
    assert tenant.call("PUT", f"{JOBS}/two", call_job(receiver)).status_code == 201
    assert count_executions(db) == 1


@pytest.mark.parametrize(("body", "expected"), [
    ({"action": {"type": "http"}}, "action.request: is required"),
    ({"action": {"type": "http", "request": {"uri": "ftp://x", "method": "GET"}}},
     "action.request.uri"),
    ({"startTime": "2026-03-02T00:00:00Z", "action": {}}, "startTime: is not a known field"),
    ({"parameters": {"a": 1}}, "action: is required"),
])
def test_bad_inline_definitions_are_refused_and_nothing_is_stored(
    collection: Tenant, db: Database, body: Any, expected: str
) -> None:
    assert_refused(collection.call("POST", EXECUTIONS, body), expected, db)


def test_executions_of_another_tenant_are_not_found(
    collection: Tenant, other_tenant: Tenant, receiver: Receiver
) -> None:
    collection.call("PUT", f"{JOBS}/j", call_job(receiver))
    execution_id = run(collection, "j").get_json()["id"]
    for method, path, body in (("GET", f"{EXECUTIONS}/{execution_id}", None),
                               ("PATCH", f"{EXECUTIONS}/{execution_id}",
                                {"status": "canceled"}),
                               ("POST", f"{EXECUTIONS}/{execution_id}/resume", None)):
        response = other_tenant.call(method, path, body)
        assert response.status_code == 404, (method, path)
    assert json.loads(collection.call("GET", f"{EXECUTIONS}/{execution_id}").data)["status"] \
        == "pending"


def test_a_scheduled_occurrence_of_a_sequence_waiting_for_approval_starts_paused(
    collection: Tenant, receiver: Receiver, driver: NodeDriver, clock: FrozenClock
) -> None:
    job = sequence_job(receiver, step("approve", receiver, "/go", manual=True),
                       startTime=(clock.now() + timedelta(seconds=5)).isoformat())
    collection.call("PUT", f"{JOBS}/seq", job)
    clock.advance(timedelta(seconds=5))
    assert driver.step() == 0
    (waiting,) = collection.call("GET", f"{JOBS}/seq/executions").get_json()
    assert (waiting["trigger"], waiting["status"]) == ("schedule", "paused")
    assert waiting["steps"] == [{"name": "approve", "status": "waiting", "tries": 0}]
    assert receiver.requests == []
    collection.call("POST", f"{JOBS}/seq/executions/{waiting['id']}/resume")
    assert driver.step() == 1
    assert [r.path for r in receiver.requests] == ["/go"]
    assert collection.call("GET", f"{JOBS}/seq").get_json()["state"] == "completed"


def test_a_step_that_fails_for_good_ends_the_sequence_with_its_error_action(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    receiver.answers["/broken"] = (500, {}, b"no")
    job = sequence_job(receiver, step("one", receiver, "/one"),
                       step("two", receiver, "/broken"), step("three", receiver, "/three"))
    job["action"]["errorAction"] = {"type": "http", "request": {
        "uri": receiver.url("/alarm"), "method": "POST"}, "retryPolicy": {"retryType": "none"}}
    collection.call("PUT", f"{JOBS}/seq", job)
    execution_id = run(collection, "seq").get_json()["id"]
    for _ in range(3):
        driver.step()
    document = collection.call("GET", f"{EXECUTIONS}/{execution_id}").get_json()
    assert document["status"] == "failed" and document["actionName"] == "ErrorAction"
    assert document["currentStep"] == 1
    assert [s["status"] for s in document["steps"]] == ["completed", "failed"]
    assert [r.path for r in receiver.requests] == ["/one", "/broken", "/alarm"]
    history = collection.call("GET", f"{JOBS}/seq/history").get_json()
    assert [h["actionName"] for h in history] == ["ErrorAction", "MainAction", "MainAction"]
