"""Input that once reached a 500, or was stored although it could never run: each now gets a
4xx naming the problem, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.settings import Settings
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, http_job, new_tenant

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"


def refused(response: Any, status: int, *words: str) -> None:
    """The answer has `status` and its message names every word."""
    assert response.status_code == status, response.data
    text = response.get_data(as_text=True)
    for word in words:
        assert word in text, text


def assert_no_job(collection: Tenant, job_id: str) -> None:
    """Nothing was stored under the id."""
    assert collection.call("GET", f"{JOBS}/{job_id}").status_code == 404


@pytest.mark.parametrize("body", [
    '{"startTime": "2026-03-02T00:00:00Z", "action": {"type": "http", "request": '
    '{"uri": "http://example.com/hook", "method": "POST", "body": "\\ud800"}}}',
    '{"startTime": "2026-03-02T00:00:00Z", "parameters": {"x": "a\\udc00b"}, "action": '
    '{"type": "http", "request": {"uri": "http://example.com/hook", "method": "GET"}}}',
])
def test_a_lone_surrogate_escape_is_refused(collection: Tenant, body: str) -> None:
    response = collection.call("PUT", f"{JOBS}/lone", body.encode(),
                               content_type="application/json")
    refused(response, 400, "surrogate")
    assert_no_job(collection, "lone")


def test_a_surrogate_pair_escape_is_a_character(collection: Tenant) -> None:
    body = ('{"startTime": "2026-03-02T00:00:00Z", "action": {"type": "http", "request": '
            '{"uri": "http://example.com/hook", "method": "POST", "body": "\\ud83d\\ude00"}}}')
    response = collection.call("PUT", f"{JOBS}/pair", body.encode(),
                               content_type="application/json")
    assert response.status_code == 201, response.data
    assert response.get_json()["action"]["request"]["body"] == "\U0001f600"


@pytest.mark.parametrize(("field", "value"), [
    ("body", "a\x00b"), ("uri", "http://example.com/a\x00b"),
])
def test_a_nul_character_in_a_string_is_refused(collection: Tenant, field: str,
                                                value: str) -> None:
    job = http_job()
    job["action"]["request"][field] = value
    refused(collection.call("PUT", f"{JOBS}/nul", job), 400, f"action.request.{field}")
    assert_no_job(collection, "nul")


def test_a_nul_character_in_a_path_segment_is_a_404(collection: Tenant) -> None:
    response = collection.call("GET", f"{JOBS}/a%00b")
    assert response.status_code in (400, 404), response.data


@pytest.mark.parametrize("header", ["Host", "content-length", "Transfer-Encoding"])
def test_request_headers_the_service_sets_itself_are_refused(collection: Tenant,
                                                             header: str) -> None:
    job = http_job()
    job["action"]["request"]["headers"] = {header: "x"}
    refused(collection.call("PUT", f"{JOBS}/framing", job), 400, header)
    assert_no_job(collection, "framing")


@pytest.mark.parametrize("uri", ["http://example.com/a b", "http://example.com/\tb"])
def test_a_uri_with_whitespace_is_refused(collection: Tenant, uri: str) -> None:
    job = http_job()
    job["action"]["request"]["uri"] = uri
    refused(collection.call("PUT", f"{JOBS}/spaced", job), 400, "action.request.uri")
    assert_no_job(collection, "spaced")


def test_a_parameter_that_would_break_a_header_is_refused(collection: Tenant) -> None:
    job = http_job(parameters={"who": "a\r\nX-Injected: 1"})
    job["action"]["request"]["headers"] = {"x-who": "{{parameters.who}}"}
    refused(collection.call("PUT", f"{JOBS}/inject", job), 400, "parameters.who")
    assert_no_job(collection, "inject")


def test_a_run_parameter_that_would_break_a_header_is_refused(collection: Tenant) -> None:
    job = http_job(parameters={"who": "ops"})
    job["action"]["request"]["headers"] = {"x-who": "{{parameters.who}}"}
    assert collection.call("PUT", f"{JOBS}/header", job).status_code == 201
    response = collection.call("POST", f"{JOBS}/header/run",
                               {"parameters": {"who": "a\nb"}})
    refused(response, 400, "parameters.who")
    assert collection.call("GET", f"{JOBS}/header/executions").get_json() == []


def test_occurrences_past_the_year_9999_end_the_list(collection: Tenant) -> None:
    # The last one, 9999-12-31 23:00 in Los Angeles, would be in the year 10000 in UTC.
    job = http_job(recurrence={"frequency": "month", "interval": 12,
                               "timeZone": "America/Los_Angeles", "schedule": {
                                   "monthDays": [31], "hours": [23], "minutes": [0]}})
    job["startTime"] = "8999-12-01T12:00:00Z"
    response = collection.call("PUT", f"{JOBS}/far", job)
    assert response.status_code == 201, response.data
    listed = collection.call("GET", f"{JOBS}/far/occurrences?$skip=997&$top=10")
    assert listed.status_code == 200, listed.data
    assert listed.get_json() == [f"{year + 1}-01-01T07:00:00Z" for year in (9996, 9997, 9998)]


def test_a_skip_of_occurrences_beyond_the_cap_is_refused(collection: Tenant) -> None:
    assert collection.call("PUT", f"{JOBS}/often", http_job(
        recurrence={"frequency": "minute", "interval": 1})).status_code == 201
    refused(collection.call("GET", f"{JOBS}/often/occurrences?$skip=1000000000"), 400,
            "$skip")
    listed = collection.call("GET", f"{JOBS}/often/occurrences?$skip=10000&$top=1")
    assert listed.get_json() == ["2026-03-08T22:40:00Z"]


def test_an_upper_case_subscription_id_is_the_same_subscription(collection: Tenant) -> None:
    path = f"/{collection.subscription_id.upper()}{COLLECTION}/jobs"
    response = collection.client.open(path, method="GET")
    assert response.status_code == 200, response.data


def test_a_wrong_method_gets_405_with_allow(collection: Tenant) -> None:
    response = collection.call("PUT", f"{JOBS}/job1/history")
    assert response.status_code == 405
    assert "GET" in response.headers.get("Allow", "")


def test_a_request_that_finds_no_database_connection_gets_503_with_retry_after(
        settings: Settings, clock: FrozenClock) -> None:
    """A pool of one connection, held by someone else: the request waits its pool timeout,
    then gets ServerBusy, never a 500; once the connection is back it is served."""
    db = Database(settings.database_url, pool_size=1, max_overflow=0, pool_timeout=0.05)
    app = create_app(settings, clock, db=db, background=False)
    tenant = new_tenant(app, db, clock)
    held = [db.engine.connect()] + ([db.read_engine.connect()] if db.is_sqlite else [])
    try:
        response = tenant.call("GET", "/cloudservices")
        refused(response, 503, "ServerBusy", "try again")
        assert response.headers["Retry-After"] == "1"
    finally:
        for conn in held:
            conn.close()
    assert tenant.call("GET", "/cloudservices").status_code == 200
    db.dispose()


@pytest.mark.parametrize("name", ["%2E%2E", "%2E", ".hidden", "-x"])
def test_a_cloud_service_or_collection_name_not_starting_with_a_letter_or_digit_is_refused(
        tenant: Tenant, name: str) -> None:
    refused(tenant.call("PUT", f"/cloudservices/{name}", CLOUD_SERVICE_XML), 400,
            "starting with a letter or digit")
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    refused(tenant.call("PUT", f"/cloudservices/cs1/resources/scheduler/JobCollections/{name}",
                        collection_xml()), 400, "starting with a letter or digit")
    listed = tenant.call("GET", "/cloudservices").get_data(as_text=True)
    assert listed.count("<CloudService>") == 1


@pytest.mark.parametrize("job, field", [
    (http_job(colour="red"), "colour"),
    (http_job(action={"type": "http", "request": {"uri": "http://example.com/hook",
                                                  "method": "GET", "timeout": "PT1M"}}),
     "action.request.timeout"),
    (http_job(recurrence={"frequency": "hour", "every": 2}), "recurrence.every"),
    (http_job(recurrence={"frequency": "day", "schedule": {"hours": [1], "seconds": [0]}}),
     "recurrence.schedule.seconds"),
])
def test_a_member_the_job_document_does_not_define_is_refused_by_name(
        collection: Tenant, job: dict[str, Any], field: str) -> None:
    refused(collection.call("PUT", f"{JOBS}/extra", job), 400, field, "not a known field")
    assert_no_job(collection, "extra")
