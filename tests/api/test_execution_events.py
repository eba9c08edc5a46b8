"""GET .../executions/{id}/events: an execution's events, oldest first, only to its own
subscription and collection."""

from __future__ import annotations

from datetime import datetime

from scheduler.security import pki
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, http_job

COLLECTIONS = "/cloudservices/cs1/resources/scheduler/jobcollections"
EXECUTIONS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"


def started_run(collection: Tenant) -> str:
    """The id of a run of a job, started through the API (no engine runs it)."""
    assert collection.call("PUT", f"{JOBS}/job", http_job()).status_code == 201
    response = collection.call("POST", f"{JOBS}/job/run")
    assert response.status_code == 202, response.data
    execution_id: str = response.get_json()["id"]
    return execution_id


def test_a_run_s_events_say_who_made_it_when_in_the_api_s_spelling(collection: Tenant) -> None:
    execution_id = started_run(collection)
    response = collection.call("GET", f"{EXECUTIONS}/{execution_id}/events")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    [event] = response.get_json()["value"]
    assert set(event) == {"id", "time", "kind", "node", "attempt", "detail"}
    assert (event["kind"], event["node"], event["attempt"]) == ("scheduled", None, None)
    assert datetime.fromisoformat(event["time"]) is not None and event["time"].endswith("Z")
    assert event["detail"] == {
        "trigger": "manual", "scheduledTime": event["time"],
        "by": pki.name_of_der(pki.der_bytes(collection.certificate.certificate))}


def test_events_of_an_execution_id_in_capitals_are_found(collection: Tenant) -> None:
    execution_id = started_run(collection)
    response = collection.call("GET", f"{EXECUTIONS}/{execution_id.upper()}/events")
    assert response.status_code == 200 and len(response.get_json()["value"]) == 1


def test_events_of_an_unknown_execution_or_collection_are_404(collection: Tenant) -> None:
    started_run(collection)
    unknown = collection.call("GET", f"{EXECUTIONS}/{'0' * 32}/events")
    assert unknown.status_code == 404
    assert "does not exist" in unknown.get_json()["error"]["message"]
    other_collection = EXECUTIONS.replace("/jc1/", "/jc2/")
    assert collection.call("GET", f"{other_collection}/{'0' * 32}/events").status_code == 404


def test_events_of_another_collection_s_execution_are_404(collection: Tenant) -> None:
    execution_id = started_run(collection)
    assert collection.call("PUT", f"{COLLECTIONS}/jc2", collection_xml()).status_code == 202
    other_collection = EXECUTIONS.replace("/jc1/", "/jc2/")
    response = collection.call("GET", f"{other_collection}/{execution_id}/events")
    assert response.status_code == 404


def test_another_subscription_cannot_read_an_execution_s_events(
    collection: Tenant, other_tenant: Tenant,
) -> None:
    execution_id = started_run(collection)
    assert other_tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert other_tenant.call("PUT", f"{COLLECTIONS}/jc1", collection_xml()).status_code == 202
    own_path = other_tenant.call("GET", f"{EXECUTIONS}/{execution_id}/events")
    assert own_path.status_code == 404, "the same names in another subscription hold no such run"
    foreign = other_tenant.client.get(
        f"/{collection.subscription_id}{EXECUTIONS}/{execution_id}/events")
    assert foreign.status_code == 403
