"""Cloud services, job collections, name checks, plans and quotas, asynchronous operations."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from scheduler.app import OPERATION_HANDLERS
from scheduler.clock import FrozenClock
from scheduler.db.models import Job, JobCollection, Operation
from scheduler.db.session import Database
from scheduler.errors import status_of
from scheduler.services.operations import IN_PROGRESS, LEASE, OperationRunner, start_operation
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, http_job

COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"


def _status(tenant: Tenant, request_id: str) -> str:
    body = tenant.call("GET", f"/operations/{request_id}").get_data(as_text=True)
    match = re.search(r"<Status>(\w+)</Status>", body)
    assert match, body
    return match.group(1)


def test_create_cloud_service_is_asynchronous_and_then_listed(tenant: Tenant) -> None:
    response = tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    assert response.status_code == 202
    assert _status(tenant, response.headers["x-ms-request-id"]) == "Succeeded"
    listing = tenant.call("GET", "/cloudservices").get_data(as_text=True)
    assert "<Name>cs1</Name>" in listing and "<GeoRegion>West Europe</GeoRegion>" in listing
    one = tenant.call("GET", "/cloudservices/cs1").get_data(as_text=True)
    assert "<Label>cs</Label>" in one and "<Description>test</Description>" in one


def test_creating_an_existing_cloud_service_is_409(tenant: Tenant) -> None:
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    again = tenant.call("PUT", "/cloudservices/CS1", CLOUD_SERVICE_XML)
    assert again.status_code == 409
    assert b"ConflictError" in again.data


def test_operation_ids_poll_with_or_without_dashes(tenant: Tenant) -> None:
    response = tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    request_id = response.headers["x-ms-request-id"]
    dashed = f"{request_id[:8]}-{request_id[8:12]}-{request_id[12:16]}-{request_id[16:20]}-" \
             f"{request_id[20:]}"
    body = tenant.call("GET", f"/operations/{dashed}").get_data(as_text=True)
    assert f"<ID>{dashed}</ID>" in body
    assert "<HttpStatusCode>200</HttpStatusCode>" in body


def test_synchronous_job_calls_can_be_polled_too(collection: Tenant) -> None:
    response = collection.call("PUT", f"{JOBS}/job1", http_job())
    assert _status(collection, response.headers["x-ms-request-id"]) == "Succeeded"


def test_collection_lifecycle_and_name_check(tenant: Tenant) -> None:
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    check = "/cloudservices/cs1/resources/scheduler/JobCollections/" \
            "?op=checknameavailability&resourceName=jc1"
    assert "<Result>true</Result>" in tenant.call("POST", check).get_data(as_text=True)
    created = tenant.call("PUT", COLLECTION, collection_xml(
        "free", "<Quota><MaxJobCount>3</MaxJobCount></Quota>"))
    assert created.status_code == 202
    assert "<Result>false</Result>" in tenant.call("GET", check).get_data(as_text=True)
    body = tenant.call("GET", "/cloudservices/cs1/resources/scheduler/~/JobCollections/jc1"
                       "?api-version=2014-04-01").get_data(as_text=True)
    assert "<Plan>Free</Plan>" in body and "<MaxJobCount>3</MaxJobCount>" in body
    assert "<Frequency>Hour</Frequency>" in body and "<Result>Succeeded</Result>" in body
    listed = tenant.call("GET", "/cloudservices/cs1").get_data(as_text=True)
    assert "<Resources><Resource><CloudServiceSettings>" in listed


def test_premium_is_accepted_as_p10premium(tenant: Tenant) -> None:
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    tenant.call("PUT", COLLECTION, collection_xml("Premium"))
    body = tenant.call("GET", COLLECTION).get_data(as_text=True)
    assert "<Plan>P10Premium</Plan>" in body


def test_plan_job_count_quota_gives_409_naming_the_limit(tenant: Tenant) -> None:
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    tenant.call("PUT", COLLECTION, collection_xml("Free"))
    for index in range(5):
        assert tenant.call("PUT", f"{JOBS}/job{index}", http_job()).status_code == 201
    sixth = tenant.call("PUT", f"{JOBS}/job5", http_job())
    assert sixth.status_code == 409
    error = sixth.get_json()["error"]
    assert error["code"] == "ConflictError" and "at most 5 jobs" in error["message"]
    assert tenant.call("PUT", f"{JOBS}/job4", http_job()).status_code == 200


def _jobs_at_most(db: Database) -> int:
    with db.snapshot() as session:
        return int(session.scalar(select(JobCollection.jobs_at_most)) or 0)


def test_deleted_jobs_make_room_again_under_the_quota(tenant: Tenant, db: Database) -> None:
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    tenant.call("PUT", COLLECTION, collection_xml("Free"))
    for index in range(5):
        assert tenant.call("PUT", f"{JOBS}/job{index}", http_job()).status_code == 201
    assert _jobs_at_most(db) == 5
    for index in range(3):
        assert tenant.call("DELETE", f"{JOBS}/job{index}").status_code == 200
    assert _jobs_at_most(db) == 5  # a delete lowers no bound
    for index in range(5, 8):  # each counts the jobs, then sets the bound to the count
        assert tenant.call("PUT", f"{JOBS}/job{index}", http_job()).status_code == 201
        assert _jobs_at_most(db) == index - 2
    refused = tenant.call("PUT", f"{JOBS}/job8", http_job())
    assert refused.status_code == 409 and "at most 5 jobs" in refused.get_data(as_text=True)
    assert _jobs_at_most(db) == 5
    with db.snapshot() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 5


def test_replacing_and_deleting_all_jobs_keep_the_quota(tenant: Tenant, db: Database) -> None:
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    tenant.call("PUT", COLLECTION, collection_xml("Free"))
    for index in range(5):
        assert tenant.call("PUT", f"{JOBS}/job{index}", http_job()).status_code == 201
    for index in range(5):  # a replace is not a create: it counts nothing
        assert tenant.call("PUT", f"{JOBS}/JOB{index}", http_job()).status_code == 200
    assert _jobs_at_most(db) == 5
    assert tenant.call("DELETE", JOBS).status_code == 200
    for index in range(5):
        assert tenant.call("PUT", f"{JOBS}/new{index}", http_job()).status_code == 201
    assert tenant.call("PUT", f"{JOBS}/new5", http_job()).status_code == 409


def test_recurrence_quota_gives_409(tenant: Tenant) -> None:
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    tenant.call("PUT", COLLECTION, collection_xml("Free"))
    too_often = tenant.call("PUT", f"{JOBS}/job1", http_job(
        recurrence={"frequency": "minute", "interval": 30}))
    assert too_often.status_code == 409
    assert "once every 1 hour" in too_often.get_json()["error"]["message"]
    schedule = tenant.call("PUT", f"{JOBS}/job1", http_job(recurrence={
        "frequency": "day", "schedule": {"hours": [1], "minutes": [0, 15]}}))
    assert schedule.status_code == 409
    hourly = tenant.call("PUT", f"{JOBS}/job1", http_job(recurrence={"frequency": "hour"}))
    assert hourly.status_code == 201


def test_collection_quota_lowers_the_plan(tenant: Tenant) -> None:
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    tenant.call("PUT", COLLECTION, collection_xml("Standard", (
        "<Quota><MaxJobCount>1</MaxJobCount><MaxRecurrence><Frequency>Hour</Frequency>"
        "<Interval>2</Interval></MaxRecurrence></Quota>")))
    hourly = tenant.call("PUT", f"{JOBS}/job1", http_job(recurrence={"frequency": "hour"}))
    assert hourly.status_code == 409
    assert tenant.call("PUT", f"{JOBS}/job1", http_job()).status_code == 201
    assert tenant.call("PUT", f"{JOBS}/job2", http_job()).status_code == 409


def test_a_quota_number_larger_than_the_database_holds_is_a_400(tenant: Tenant) -> None:
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    refused = tenant.call("PUT", COLLECTION, collection_xml("Standard", (
        "<Quota><MaxJobCount>99999999999</MaxJobCount></Quota>")))
    assert refused.status_code == 400, refused.data
    assert b"Quota.MaxJobCount must be from 1 to 2147483647" in refused.data
    assert tenant.call("GET", COLLECTION).status_code == 404


def test_free_plan_refuses_outbound_authentication(tenant: Tenant) -> None:
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    tenant.call("PUT", COLLECTION, collection_xml("Free"))
    job = http_job()
    job["action"]["request"]["authentication"] = {"type": "Basic", "username": "u",
                                                  "password": "p"}
    response = tenant.call("PUT", f"{JOBS}/job1", job)
    assert response.status_code == 409
    assert "Free plan" in response.get_json()["error"]["message"]


def test_downgrade_that_breaks_existing_jobs_is_409(collection: Tenant) -> None:
    for index in range(6):
        collection.call("PUT", f"{JOBS}/job{index}", http_job())
    downgrade = collection.call("PUT", COLLECTION, collection_xml("Free"))
    assert downgrade.status_code == 409
    body = collection.call("GET", COLLECTION).get_data(as_text=True)
    assert "<Plan>Standard</Plan>" in body


def test_deleting_a_collection_removes_its_jobs_and_history(
    collection: Tenant, db: Database
) -> None:
    for index in range(3):
        collection.call("PUT", f"{JOBS}/job{index}", http_job())
    response = collection.call("DELETE", COLLECTION)
    assert response.status_code == 202
    assert _status(collection, response.headers["x-ms-request-id"]) == "Succeeded"
    assert collection.call("GET", f"{JOBS}/job0").status_code == 404
    with db.snapshot() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_deleting_a_cloud_service_removes_everything_in_it(
    collection: Tenant, db: Database
) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    response = collection.call("DELETE", "/cloudservices/cs1")
    assert response.status_code == 202
    assert collection.call("GET", "/cloudservices/cs1").status_code == 404
    with db.snapshot() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_operation_left_in_progress_by_a_dead_node_is_finished_by_another(
    collection: Tenant, db: Database, clock: FrozenClock
) -> None:
    from scheduler.services.collections import begin_delete_collection

    collection.call("PUT", f"{JOBS}/job1", http_job())
    with db.transaction() as session:
        collection_id = begin_delete_collection(session, collection.subscription_id, "cs1",
                                                "jc1")
        start_operation(session, "ab" * 16, collection.subscription_id, "collection.delete",
                        {"collection_id": collection_id}, clock.now(), owner="dead-node")
    runner = OperationRunner(db, clock, "survivor", OPERATION_HANDLERS, status_of)
    assert runner.take_over_abandoned() == 0, "the dead node's lease still holds"
    assert _status(collection, "ab" * 16) == IN_PROGRESS
    clock.advance(LEASE + timedelta(seconds=1))
    assert runner.take_over_abandoned() == 1
    assert _status(collection, "ab" * 16) == "Succeeded"
    with db.snapshot() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        operation = session.get(Operation, "ab" * 16)
        assert operation is not None and operation.http_status == 200
