"""Input that once reached a 500, or was stored although it could never run: each now gets a
4xx naming the problem, and nothing is stored."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from scheduler.api.access import KNOWN_METHODS, OTHER, UNMATCHED
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
                                                  "method": "GET", "deadline": "PT1M"}}),
     "action.request.deadline"),
    (http_job(recurrence={"frequency": "hour", "every": 2}), "recurrence.every"),
    (http_job(recurrence={"frequency": "day", "schedule": {"hours": [1], "seconds": [0]}}),
     "recurrence.schedule.seconds"),
])
def test_a_member_the_job_document_does_not_define_is_refused_by_name(
        collection: Tenant, job: dict[str, Any], field: str) -> None:
    refused(collection.call("PUT", f"{JOBS}/extra", job), 400, field, "not a known field")
    assert_no_job(collection, "extra")


# --- sizes once placeholders are filled ----------------------------------------------------

def job_with(headers: dict[str, str] | None = None, body: str = "hi",
             uri: str = "http://example.com/hook", **extra: Any) -> dict[str, Any]:
    """An enabled HTTP job with this request, far in the future."""
    return {"startTime": "2030-01-01T00:00:00Z", "action": {"type": "http", "request": {
        "uri": uri, "method": "POST", "headers": headers or {"Content-Type": "text/plain"},
        "body": body}}, **extra}


def test_a_run_whose_parameters_would_overflow_the_filled_body_is_refused(
        collection: Tenant) -> None:
    """20 placeholders of one 4,000-character value: 80,000 characters, over 64 KB."""
    job = job_with(body="{{parameters.blob}}" * 20, parameters={"blob": "x"})
    assert collection.call("PUT", f"{JOBS}/blob", job).status_code == 201
    response = collection.call("POST", f"{JOBS}/blob/run", {"parameters": {"blob": "y" * 4000}})
    refused(response, 400, "action.request.body", "80000 characters", "65536")
    assert collection.call("GET", f"{JOBS}/blob/executions").get_json() == []
    just_fits = collection.call("POST", f"{JOBS}/blob/run",
                                {"parameters": {"blob": "y" * 3200}})
    assert just_fits.status_code == 202, just_fits.data


@pytest.mark.parametrize(("job", "field", "limit"), [
    (job_with(headers={"X-Token": "{{parameters.token}}" * 5},
              parameters={"token": "t" * 1000}), "action.request.headers.X-Token", "4096"),
    (job_with(uri="http://example.com/find?q={{parameters.q}}&again={{parameters.q}}",
              parameters={"q": "/" * 1500}), "action.request.uri", "8192"),
    (job_with(headers={"Content-Type": "application/json"},
              body='["{{parameters.line}}"' + ', "{{parameters.line}}"' * 20 + "]",
              parameters={"line": "\x01" * 600}), "action.request.body", "65536"),
])
def test_a_job_whose_own_parameters_would_overflow_a_filled_text_is_refused(
        collection: Tenant, job: dict[str, Any], field: str, limit: str) -> None:
    """Escaping counts: a `/` is three characters in a URI, a control character six in JSON."""
    refused(collection.call("PUT", f"{JOBS}/big", job), 400, field, limit)
    assert_no_job(collection, "big")


def test_a_run_s_parameters_are_bounded_in_total(collection: Tenant) -> None:
    assert collection.call("PUT", f"{JOBS}/small", job_with()).status_code == 201
    response = collection.call("POST", f"{JOBS}/small/run", {"parameters": {
        "a": "x" * 4100, "b": "x" * 4100}})
    refused(response, 400, "parameters", "8192")
    assert collection.call("GET", f"{JOBS}/small/executions").get_json() == []


# --- metric labels -------------------------------------------------------------------------

def request_labels(app: Flask) -> list[dict[str, str]]:
    """The labels of every sample of the request counter."""
    registry = app.extensions["scheduler.metrics"].registry
    return [sample.labels for family in registry.collect()
            if family.name == "scheduler_api_requests" for sample in family.samples
            if sample.name == "scheduler_api_requests_total"]


def test_made_up_methods_and_paths_add_no_label_values(app: Flask, tenant: Tenant) -> None:
    stranger = app.test_client()  # no client certificate, as in the run that found it
    for index in range(30):
        stranger.open(f"/{tenant.subscription_id}/cloudservices", method=f"BREW{index}")
        stranger.open(f"/scan/{index}", method=f"X{index}")
    routes = {rule.rule for rule in app.url_map.iter_rules()} | {UNMATCHED}
    labels = request_labels(app)
    assert {found["method"] for found in labels} <= KNOWN_METHODS | {OTHER}
    assert {found["route"] for found in labels} <= routes
    other = [found for found in labels if found["method"] == OTHER]
    assert len(other) <= 3, other  # a route or unmatched, by status
    registry = app.extensions["scheduler.metrics"].registry
    assert sum(registry.get_sample_value("scheduler_api_requests_total", found) or 0
               for found in other) == 60


# --- NUL characters ------------------------------------------------------------------------

# Every query parameter the API reads.
QUERY_PARAMETERS = ("op", "resourceName", "resourcename", "$filter", "$top", "$skip",
                    "api-version")


def routes(app: Flask) -> list[tuple[str, str]]:
    """Every route's pattern with each method it answers (but HEAD and OPTIONS)."""
    return [(method, rule.rule) for rule in app.url_map.iter_rules()
            if rule.endpoint != "static"
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})]


def path_of(pattern: str, values: dict[str, str]) -> str:
    """A route's pattern with `values` for its arguments."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda found: values[found.group(1)], pattern)


def test_a_nul_in_any_path_or_query_value_of_any_route_is_a_400(
        app: Flask, collection: Tenant) -> None:
    """On PostgreSQL a NUL in a value compared in SQL was a 500: every route refuses one in
    each of its path values and in each query parameter, before anything looks it up."""
    assert collection.call("PUT", f"{JOBS}/job1", http_job()).status_code == 201
    values = {"sub": collection.subscription_id, "cs": "cs1", "jc": "jc1", "job_id": "job1",
              "execution_id": "0" * 32, "thumbprint": "A" * 40, "operation_id": "0" * 32,
              "rg": "cs1", "tenant": collection.subscription_id, "calendar_name": "cal",
              "channel_name": "ch",
              "filename": "dashboard.css", "token": "t"}  # the dashboard's
    answers = {}
    for method, pattern in routes(app):
        for name in [name for name in values if f"<{name}>" in pattern]:
            sent = path_of(pattern, {**values, name: "a%00b"})
            answers[f"{method} {pattern} <{name}>"] = collection.client.open(
                sent, method=method).status_code
        for query in QUERY_PARAMETERS:
            sent = f"{path_of(pattern, values)}?op=checknameavailability&{query}=a%00b"
            answers[f"{method} {pattern} ?{query}"] = collection.client.open(
                sent, method=method).status_code
    assert len(answers) > 100
    assert {key: status for key, status in answers.items() if status != 400} == {}


def test_check_name_availability_with_a_nul_is_a_400_naming_the_parameter(
        collection: Tenant) -> None:
    response = collection.call(
        "GET", "/cloudservices/cs1/resources/scheduler/jobcollections"
               "?op=checknameavailability&resourceName=jc%001")
    refused(response, 400, "resourceName", "NUL")
