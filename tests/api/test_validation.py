"""Bad input: a clear 4xx naming the problem, and nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.db.models import Job
from scheduler.db.session import Database
from tests.support import JOBS, Tenant, http_job


def _job_count(db: Database) -> int:
    with db.snapshot() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def _with(path: str, value: Any) -> dict[str, Any]:
    job = http_job()
    node = job
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return job


INVALID_JOBS = [
    ("action.type", _with("action.type", "carrierPigeon")),
    ("action.request.method", _with("action.request.method", "BREW")),
    ("action.request.uri", _with("action.request.uri", "ftp://example.com/")),
    ("action.request.uri", _with("action.request.uri", 42)),
    ("recurrence.frequency", _with("recurrence", {"frequency": "fortnight"})),
    ("recurrence.interval", _with("recurrence", {"frequency": "hour", "interval": "2"})),
    ("recurrence.interval", _with("recurrence", {"frequency": "hour", "interval": 0})),
    ("recurrence.count", _with("recurrence", {"frequency": "hour", "count": True})),
    ("recurrence.schedule.weekDays",
     _with("recurrence", {"frequency": "day", "schedule": {"weekDays": ["monday"]}})),
    ("recurrence.schedule.weekDays",
     _with("recurrence", {"frequency": "week", "schedule": {"weekDays": ["funday"]}})),
    ("recurrence.schedule.monthDays",
     _with("recurrence", {"frequency": "week", "schedule": {"monthDays": [1]}})),
    ("recurrence.schedule.hours",
     _with("recurrence", {"frequency": "day", "schedule": {"hours": [24]}})),
    ("recurrence.schedule.minutes",
     _with("recurrence", {"frequency": "hour", "schedule": {"minutes": [60]}})),
    ("recurrence.schedule.monthlyOccurrences.occurrence",
     _with("recurrence", {"frequency": "month", "schedule": {
         "monthlyOccurrences": [{"day": "friday", "occurrence": 6}]}})),
    ("recurrence.endTime",
     _with("recurrence", {"frequency": "hour", "endTime": "2020-01-01T00:00:00Z"})),
    ("recurrence.timeZone", _with("recurrence", {"frequency": "hour", "timeZone": "Mars/Base"})),
    ("startTime", _with("startTime", "yesterday")),
    ("state", _with("state", "completed")),
    ("state", _with("state", "sleeping")),
    ("action.retryPolicy.retryType", _with("action.retryPolicy", {"retryType": "sometimes"})),
    ("action.retryPolicy.retryCount",
     _with("action.retryPolicy", {"retryType": "fixed", "retryCount": 99})),
    ("action.retryPolicy.retryInterval",
     _with("action.retryPolicy", {"retryType": "fixed", "retryInterval": "soon"})),
    ("action.request.headers", _with("action.request.headers",
                                     {f"h{i}": "v" for i in range(51)})),
    ("action.request.body", _with("action.request.body", "x" * 8193)),
    ("action.request.authentication.type",
     _with("action.request.authentication", {"type": "Kerberos"})),
    ("action.request.authentication.password",
     _with("action.request.authentication", {"type": "Basic", "username": "u"})),
    ("action.request.authentication.pfx",
     _with("action.request.authentication", {"type": "ClientCertificate", "pfx": "bm9wZQ=="})),
    ("action.queueMessage",
     {"action": {"type": "storageQueue"}}),
    ("action.amqpMessage.broker", {"action": {"type": "amqp", "amqpMessage": {
        "broker": "nowhere", "routingKey": "k", "message": "m"}}}),
    ("colour", _with("colour", "blue")),
    ("id", _with("id", "another-job")),
]


@pytest.mark.parametrize(("field", "document"), INVALID_JOBS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(INVALID_JOBS)])
def test_invalid_job_gets_400_naming_the_field_and_is_not_stored(
    collection: Tenant, db: Database, field: str, document: dict[str, Any]
) -> None:
    response = collection.call("PUT", f"{JOBS}/job1", document)
    assert response.status_code == 400, response.data
    error = response.get_json()["error"]
    assert error["code"] == "BadRequest"
    assert field in error["message"]
    assert _job_count(db) == 0


@pytest.mark.parametrize("body", [b"{", b"[1, 2", b"not json", b"{\"a\": NaN}", b"",
                                  b"[" * 5000 + b"]" * 5000, b"\xff\xfe"])
def test_malformed_json_gets_400(collection: Tenant, db: Database, body: bytes) -> None:
    response = collection.call("PUT", f"{JOBS}/job1", data=body,
                               content_type="application/json")
    assert response.status_code == 400
    assert _job_count(db) == 0


def test_a_job_over_16_kb_gets_400(collection: Tenant, db: Database) -> None:
    job = http_job(parameters={f"p{i}": "x" * 200 for i in range(90)})
    response = collection.call("PUT", f"{JOBS}/job1", job)
    assert response.status_code == 400
    assert "bytes" in response.get_json()["error"]["message"]


def test_a_body_over_the_server_limit_gets_413(collection: Tenant) -> None:
    response = collection.call("PUT", "/cloudservices/big", "<CloudService>" + "x" * 2_000_000)
    assert response.status_code == 413
    assert b"RequestEntityTooLarge" in response.data


def test_patch_with_an_invalid_merge_result_changes_nothing(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    response = collection.call("PATCH", f"{JOBS}/job1", {"action": {"type": "nope"}})
    assert response.status_code == 400
    assert collection.call("GET", f"{JOBS}/job1").get_json()["action"]["type"] == "http"


@pytest.mark.parametrize("query", ["$top=1001", "$top=0", "$top=-1", "$top=abc",
                                   "$top=99999999999999999999", "$skip=-3",
                                   "$filter=state eq 'sleeping'", "$filter=colour eq 'red'",
                                   "api-version=1999-01-01"])
def test_bad_query_parameters_get_400(collection: Tenant, query: str) -> None:
    response = collection.call("GET", f"{JOBS}?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "MissingOrInvalidRequiredQueryParameter"


def test_invalid_job_id_gets_400(collection: Tenant) -> None:
    response = collection.call("PUT", f"{JOBS}/-bad!id", http_job())
    assert response.status_code == 400


# Namespaced as Azure's documents are, so that each case is refused for its own fault.
AZURE = ' xmlns="http://schemas.microsoft.com/windowsazure"'


@pytest.mark.parametrize("body", [
    f"<CloudService{AZURE}><Label>x</Label>",
    "not xml at all",
    '<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
    f"<CloudService{AZURE}><Label>&lol2;</Label><GeoRegion>x</GeoRegion></CloudService>",
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
    f"<CloudService{AZURE}><Label>&ext;</Label><GeoRegion>x</GeoRegion></CloudService>",
    f"<Wrong{AZURE}><Label>x</Label></Wrong>",
    f"<CloudService{AZURE}><Description>no label</Description></CloudService>",
])
def test_malformed_or_dangerous_xml_gets_400_and_stores_nothing(
    tenant: Tenant, body: str
) -> None:
    response = tenant.call("PUT", "/cloudservices/cs1", body)
    assert response.status_code == 400, response.data
    assert b"<Code>" in response.data
    assert tenant.call("GET", "/cloudservices/cs1").status_code == 404


def test_unknown_routes_and_methods_get_clear_errors(tenant: Tenant) -> None:
    missing = tenant.call("GET", "/nothing/here")
    assert missing.status_code == 404
    assert b"ResourceNotFound" in missing.data
    wrong_method = tenant.call("POST", "/cloudservices/cs1")
    assert wrong_method.status_code == 405
    assert b"InvalidHttpVerb" in wrong_method.data


def test_unknown_plan_and_bad_quota_get_400(tenant: Tenant) -> None:
    from tests.support import CLOUD_SERVICE_XML, collection_xml

    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    path = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"
    plan = tenant.call("PUT", path, collection_xml("Platinum"))
    assert plan.status_code == 400 and b"Plan" in plan.data
    quota = tenant.call("PUT", path, collection_xml(
        quota="<Quota><MaxJobCount>many</MaxJobCount></Quota>"))
    assert quota.status_code == 400 and b"MaxJobCount" in quota.data
    assert tenant.call("GET", path).status_code == 404


def test_errors_are_json_on_job_routes(collection: Tenant) -> None:
    response = collection.call("GET", f"{JOBS}/missing")
    assert response.content_type.startswith("application/json")
    assert json.loads(response.data)["error"]["code"] == "ResourceNotFound"


@pytest.mark.parametrize("job_id", ["abc%0A", "abc%0D", "j%C3%A9b", "x" * 101])
def test_job_ids_are_plain_ascii_without_trailing_newlines(collection: Tenant,
                                                           job_id: str) -> None:
    assert collection.call("PUT", f"{JOBS}/{job_id}", http_job()).status_code == 400


@pytest.mark.parametrize(("path", "value"), [
    ("action.retryPolicy", {"retryType": "fixed", "retryInterval": "PT1M\n"}),
    ("action.retryPolicy", {"retryType": "fixed", "retryInterval": "PT\u0663S"}),
    ("action.request.headers", {"X-Snow": "\u2603"}),
    ("action.request.headers", {"X-Split": "a\r\nInjected: yes"}),
    ("parameters", {"big": 1e999}),
])
def test_values_that_cannot_travel_are_refused(collection: Tenant, path: str,
                                               value: object) -> None:
    response = collection.call("PUT", f"{JOBS}/job1", _with(path, value))
    assert response.status_code == 400, response.data
