"""A job collection's `<State>`: suspended and started again through its ASM document."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from scheduler.clock import FrozenClock
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, http_job

COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"
PASS_THROUGH = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"


def state_of(tenant: Tenant, path: str = COLLECTION) -> str:
    """The `<State>` GET shows for a collection."""
    body = tenant.call("GET", path).get_data(as_text=True)
    found = re.search(r"<State>(\w+)</State>", body)
    assert found, body
    return found.group(1)


def put_state(tenant: Tenant, state: str | None, path: str = COLLECTION) -> None:
    """Put the Standard collection in a state (None: a document without `<State>`)."""
    response = tenant.call("PUT", path, collection_xml(state=state))
    assert response.status_code == 202, response.data
    status = tenant.call("GET", f"/operations/{response.headers['x-ms-request-id']}")
    assert "<Status>Succeeded</Status>" in status.get_data(as_text=True)


def test_a_collection_created_suspended_is_shown_suspended(tenant: Tenant) -> None:
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    put_state(tenant, "Suspended")
    assert state_of(tenant) == "Suspended"
    assert state_of(tenant, PASS_THROUGH) == "Suspended"
    listed = tenant.call("GET", "/cloudservices/cs1").get_data(as_text=True)
    assert "<State>Suspended</State>" in listed


@pytest.mark.parametrize(("given", "shown"), [("suspended", "Suspended"),
                                              ("SUSPENDED", "Suspended"),
                                              ("started", "Started")])
def test_a_state_is_read_in_any_case_and_shown_as_azure_spells_it(
    collection: Tenant, given: str, shown: str
) -> None:
    put_state(collection, given)
    assert state_of(collection) == shown


@pytest.mark.parametrize("state", ["Paused", "Stopped", "Disabled", "1"])
def test_an_unknown_state_is_400_naming_the_element_and_changes_nothing(
    collection: Tenant, state: str
) -> None:
    before = collection.call("GET", COLLECTION).headers["ETag"]
    response = collection.call("PUT", COLLECTION, collection_xml("Free", state=state))
    assert response.status_code == 400
    message = response.get_data(as_text=True)
    assert "&lt;State&gt;" in message and "Started, Suspended" in message
    after = collection.call("GET", COLLECTION)
    assert after.headers["ETag"] == before
    assert "<Plan>Standard</Plan>" in after.get_data(as_text=True)
    assert state_of(collection) == "Started"
    refused = collection.call("PUT", COLLECTION.replace("jc1", "jc2"),
                              collection_xml(state=state))
    assert refused.status_code == 400
    assert collection.call("GET", COLLECTION.replace("jc1", "jc2")).status_code == 404


def test_an_update_without_state_starts_the_collection_as_the_whole_document_says(
    collection: Tenant
) -> None:
    put_state(collection, "Suspended")
    put_state(collection, "Suspended")  # an update that says it again keeps it suspended
    assert state_of(collection) == "Suspended"
    put_state(collection, None)
    assert state_of(collection) == "Started"


def test_a_suspended_collection_refuses_runs_by_hand_until_started_again(
    collection: Tenant
) -> None:
    assert collection.call("PUT", f"{JOBS}/job1", http_job()).status_code == 201
    put_state(collection, "Suspended")
    run = collection.call("POST", f"{JOBS}/job1/run")
    assert run.status_code == 409 and "suspended" in run.get_json()["error"]["message"]
    inline = collection.call("POST", f"{PASS_THROUGH}/executions",
                             {"action": http_job()["action"]})
    assert inline.status_code == 409
    assert collection.call("GET", f"{JOBS}/job1/executions").get_json() == []
    put_state(collection, "Started")
    assert collection.call("POST", f"{JOBS}/job1/run").status_code == 202


def test_starting_again_moves_next_fire_times_past_what_was_missed_and_keeps_job_states(
    collection: Tenant, clock: FrozenClock
) -> None:
    minutely = {"recurrence": {"frequency": "minute", "interval": 1},
                "startTime": "2026-03-01T12:01:00Z"}
    collection.call("PUT", f"{JOBS}/on", http_job(**minutely))
    collection.call("PUT", f"{JOBS}/off", http_job(**minutely, state="disabled"))
    collection.call("PUT", f"{JOBS}/later", http_job(
        recurrence={"frequency": "day", "interval": 1}, startTime="2026-03-05T00:00:00Z"))
    put_state(collection, "Suspended")
    clock.advance(timedelta(minutes=10, seconds=30))  # 12:10:30
    put_state(collection, "Started")
    on = collection.call("GET", f"{JOBS}/on").get_json()
    assert on["state"] == "enabled"
    assert on["status"]["nextExecutionTime"] == "2026-03-01T12:11:00Z"
    off = collection.call("GET", f"{JOBS}/off").get_json()
    assert off["state"] == "disabled"
    later = collection.call("GET", f"{JOBS}/later").get_json()
    assert later["status"]["nextExecutionTime"] == "2026-03-05T00:00:00Z"
