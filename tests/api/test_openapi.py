"""openapi.yaml: it documents every route the app serves, and fuzzing every route from it
(a fixed number of examples, derandomized, on both databases) never makes the service answer
5xx or answer anything the document does not describe."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
import yaml
from flask import Flask
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core import NotSet

from scheduler.api.auth import PEER_CERT_ENVIRON
from scheduler.security import pki
from scheduler.services.leases import Heartbeats
from scheduler.settings import BrokerSettings, Settings
from tests.support import JOBS, Tenant, collection_xml, http_job

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}

# Flask's names for path variables, and what openapi.yaml calls them. A name missing here is
# camel-cased (`execution_id` -> `executionId`).
PATH_VARIABLES = {
    "sub": "subscriptionId",
    "cs": "cloudServiceId",
    "jc": "jobCollectionId",
    "job_id": "jobId",
    "thumbprint": "thumbprint",
    "operation_id": "requestId",
    "rg": "resourceGroupName",
    "tenant": "tenant",
}
_FLASK_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
_TEMPLATE_VARIABLE = re.compile(r"\{([^{}]+)\}")

KNOWN_JOB = "known-job"
# What every answer must agree with openapi.yaml on: a documented status, its content type, and
# a body that matches the schema documented for that status.
SCHEMA_CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
                 checks.content_type_conformance, checks.response_schema_conformance]
# Per operation and generation mode: 40 in the full suite (hypothesis' default of 100 examples
# per property), 10 in the fast lane (its profile's 25); raise it for a deeper run:
# FUZZ_EXAMPLES=1000 pytest ...
EXAMPLES_PER_OPERATION = int(os.environ.get(
    "FUZZ_EXAMPLES", 2 * hypothesis_settings.default.max_examples // 5))


# --- fixtures --------------------------------------------------------------------------------

BROKER = "main"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The usual test settings, plus a broker, so that amqp and redis jobs can be valid."""
    return replace(settings, brokers={BROKER: BrokerSettings(url="amqp://127.0.0.1:5672/")})


class _Collect(logging.Handler):
    """Keeps the error records the app logs, for the report of a failing call."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def app_errors() -> Iterator[_Collect]:
    """The errors the app logs while the test runs (the unhandled ones come with tracebacks)."""
    handler = _Collect()
    logger = logging.getLogger("scheduler")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


# --- helpers ---------------------------------------------------------------------------------

def load_document() -> dict[str, Any]:
    """openapi.yaml as data."""
    with OPENAPI_PATH.open(encoding="utf-8") as file:
        document: dict[str, Any] = yaml.safe_load(file)
    return document


@functools.cache
def fuzzed_schema() -> schemathesis.BaseSchema:
    """openapi.yaml as schemathesis reads it, parsed once for every fuzzed operation (the
    tests only read it, as schemathesis' own pytest integration shares one)."""
    return schemathesis.openapi.from_path(OPENAPI_PATH)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def openapi_template(rule: str) -> str:
    """A Flask rule as an OpenAPI path template: `<sub>` becomes `{subscriptionId}`, and so on."""
    return _FLASK_VARIABLE.sub(
        lambda match: "{" + PATH_VARIABLES.get(match.group(1), _camel(match.group(1))) + "}", rule
    )


def app_routes(app: Flask) -> set[tuple[str, str]]:
    """(path template, METHOD) of every route the app serves, but static files and the
    dashboard's pages (HTML for browsers, described in docs/dashboard.md)."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("ui."):
            continue
        for method in (rule.methods or set()) - IGNORED_METHODS:
            routes.add((openapi_template(rule.rule), method.upper()))
    return routes


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(path template, METHOD) of every operation in openapi.yaml."""
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS and method.upper() not in IGNORED_METHODS
    }


# --- the document ----------------------------------------------------------------------------

def test_document_is_valid_openapi_3_1() -> None:
    document = load_document()
    assert re.fullmatch(r"3\.1\.\d+", str(document["openapi"])), document["openapi"]
    # Checks the whole document against the OpenAPI 3.1 meta-schema.
    schemathesis.openapi.from_dict(document).validate()
    schemes = document["components"]["securitySchemes"]
    assert any(scheme["type"] == "mutualTLS" for scheme in schemes.values())
    assert document["security"], "every operation needs the client certificate"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_route_is_documented_and_every_documented_route_exists(app: Flask) -> None:
    served = app_routes(app)
    documented = documented_routes(load_document())
    assert served, "the app registers no routes"
    undocumented = sorted(served - documented)
    unknown = sorted(documented - served)
    assert not undocumented, f"routes missing from openapi.yaml: {undocumented}"
    assert not unknown, f"openapi.yaml documents routes the app does not serve: {unknown}"


def _declared_parameters(item: dict[str, Any], operation: dict[str, Any],
                         components: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
        if "$ref" in parameter:
            parameter = components[parameter["$ref"].rsplit("/", 1)[-1]]
        found.append(parameter)
    return found


def test_every_operation_declares_exactly_its_path_parameters() -> None:
    document = load_document()
    components = document["components"]["parameters"]
    for path, item in document["paths"].items():
        in_template = _TEMPLATE_VARIABLE.findall(path)
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            parameters = _declared_parameters(item, operation, components)
            declared = [p["name"] for p in parameters if p["in"] == "path"]
            assert sorted(declared) == sorted(in_template), (method, path)
            assert all(p["required"] for p in parameters if p["in"] == "path"), (method, path)


def test_every_response_carries_the_request_id_header() -> None:
    document = load_document()
    responses = document["components"]["responses"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[-1]]
                assert "x-ms-request-id" in response.get("headers", {}), (method, path, status)


def _json_schema_validator(document: dict[str, Any], name: str) -> jsonschema_rs.Validator:
    """A validator for one component schema, references resolved inside the document."""
    text = json.dumps(document["components"]["schemas"]).replace("#/components/schemas/",
                                                                  "#/$defs/")
    return jsonschema_rs.Draft202012Validator(
        {"$defs": json.loads(text), "$ref": f"#/$defs/{name}"}, validate_formats=True
    )


SIGNING_SECRET = "whsec_" + "c2VjcmV0" * 4  # 24 bytes
GOOD_JOBS = [
    http_job(),
    http_job(recurrence={"frequency": "week", "interval": 1,
                         "schedule": {"weekDays": ["monday"], "hours": [9], "minutes": [0]}},
             state="disabled", parameters={"name": "x"}),
    {"action": {"type": "storageQueue",
                "queueMessage": {"storageAccount": "acct1", "queueName": "jobs",
                                 "sasToken": "sv=1&sig=x", "message": "hi"},
                "retryPolicy": {"retryType": "exponential", "retryInterval": "PT30S",
                                "retryCount": 3, "maxRetryInterval": "PT5M"},
                "errorAction": {"type": "http", "request": {"uri": "https://example.com",
                                                            "method": "GET"}}}},
    {"action": {"type": "http", "request": {
        "uri": "https://example.com", "method": "POST", "authentication": {
            "type": "Signature", "secret": SIGNING_SECRET, "previousSecret": SIGNING_SECRET}}}},
    {"action": {"type": "sequence", "steps": [
        {"name": "first", "action": {"type": "http",
                                     "request": {"uri": "https://example.com/a",
                                                 "method": "POST"}}},
        {"name": "second", "manual": True, "timeout": "PT10S",
         "action": {"type": "http", "request": {"uri": "https://example.com/b",
                                                "method": "GET"}}},
    ]}},
]
BAD_JOBS = [
    {},
    *({"action": {"type": "http", "request": {"uri": "http://example.com", "method": "GET",
                                              "authentication": authentication}}}
      for authentication in ({"type": "Signature", "secret": "c2VjcmV0c2VjcmV0c2VjcmV0"},
                             {"type": "Signature", "secret": "whsec_c2VjcmV0"},
                             {"type": "Signature", "previousSecret": SIGNING_SECRET})),
    http_job(unknown=1),
    http_job(state="completed"),
    {"action": {"type": "http"}},
    {"action": {"type": "storageQueue", "request": {"uri": "http://x", "method": "GET"}}},
    http_job(recurrence={"frequency": "fortnight"}),
    http_job(recurrence={"frequency": "day", "schedule": {"hours": [24]}}),
    *({"action": {"type": "http", "request": {"uri": "http://example.com", "method": "GET",
                                              "headers": {"X-A": value}}}}
      for value in ("a\r\nX-Injected: 1", "line\nbreak", "caf\u00e9", "nul\u0000")),
]


def test_job_document_schema_accepts_real_jobs_and_rejects_broken_ones() -> None:
    document = load_document()
    job = _json_schema_validator(document, "JobDocument")
    for item in GOOD_JOBS:
        errors = [error.message for error in job.iter_errors(item)]
        assert not errors, (item, errors)
    for item in BAD_JOBS:
        assert not job.is_valid(item), item
    # Every JSON example in the document is valid against its schema.
    for path, path_item in document["paths"].items():
        for method, operation in path_item.items():
            if method not in HTTP_METHODS:
                continue
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if media and "example" in media:
                name = media["schema"]["$ref"].rsplit("/", 1)[-1]
                assert _json_schema_validator(document, name).is_valid(media["example"]), (
                    method, path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_service_agrees_with_the_job_document_schema(collection: Tenant) -> None:
    for index, item in enumerate(GOOD_JOBS):
        response = collection.call("PUT", f"{JOBS}/good-{index}", item)
        assert response.status_code == 201, (item, response.data)
    for index, item in enumerate(BAD_JOBS):
        response = collection.call("PUT", f"{JOBS}/bad-{index}", item)
        assert response.status_code == 400, (item, response.data)


# --- fuzzing the job routes ------------------------------------------------------------------

def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def contract_violations(status: int, headers: Mapping[str, Any], body: bytes) -> list[str]:
    """What is wrong with an answer whatever the request was: a 5xx, no `x-ms-request-id`,
    or a JSON body that is not JSON (Python writes `Infinity` and `NaN`, which JSON lacks)."""
    problems = []
    if status >= 500:
        problems.append(f"status {status}")
    names = {name.lower(): value for name, value in headers.items()}
    if "x-ms-request-id" not in names:
        problems.append("no x-ms-request-id header")
    content_type = names.get("content-type", "")
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if "json" in content_type and body:
        try:
            json.loads(body, parse_constant=_reject_constant)
        except ValueError as exc:
            problems.append(f"the body is not JSON: {exc}")
    return problems


def _describe(value: Any) -> str:
    if isinstance(value, NotSet):
        return "(none)"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _report(case: schemathesis.Case[Any], problems: list[str], status: int, body: bytes,
            records: list[logging.LogRecord]) -> str:
    tracebacks = [logging.Formatter().format(record) for record in records if record.exc_info]
    return "\n".join([
        f"{case.method} {case.formatted_path} answered {status}: {'; '.join(problems)}",
        f"query: {case.query!r}",
        f"headers: {case.headers!r}",
        f"body ({case.media_type}): {_describe(case.body)}",
        f"response: {body[:2000]!r}",
        "reproduce with: " + case.as_curl_command(),
        *tracebacks,
    ])


FIXED_PATH_PARAMETERS = {"subscriptionId", "cloudServiceId", "resourceGroupName",
                         "jobCollectionId"}


def _fuzz_cases() -> list[tuple[str, schemathesis.GenerationMode]]:
    """(`METHOD path`, generation mode) for every documented operation: positive for all,
    negative for those with something the client chooses that can break the schema (a body,
    a query parameter, a constrained path parameter)."""
    document = load_document()
    cases = []
    for path, method in sorted(documented_routes(document)):
        cases.append((f"{method} {path}", schemathesis.GenerationMode.POSITIVE))
        if _negatable(document, path, method):
            cases.append((f"{method} {path}", schemathesis.GenerationMode.NEGATIVE))
    return cases


def _negatable(document: dict[str, Any], path: str, method: str) -> bool:
    item = document["paths"][path]
    operation = item[method.lower()]
    if "requestBody" in operation:
        return True
    for parameter in item.get("parameters", []) + operation.get("parameters", []):
        if "$ref" in parameter:
            parameter = document["components"]["parameters"][parameter["$ref"].rsplit("/")[-1]]
        if parameter["in"] != "path":
            return True
        # An empty segment, the only string below minLength 1, is no path at all.
        if parameter["name"] not in FIXED_PATH_PARAMETERS and \
                set(parameter.get("schema", {})) - {"type", "minLength"}:
            return True
    return False


ARM_PREFIX = "/subscriptions/{subscriptionId}"
ARM_COLLECTION = (ARM_PREFIX + "/resourceGroups/{resourceGroupName}/providers/Microsoft.Scheduler"
                  "/jobCollections/{jobCollectionId}")
# The collection the fixture makes, as the ASM API's XML paths name it.
KNOWN_COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"


def _short_route(route: str) -> str:
    return route.replace("/{subscriptionId}/cloudservices/{cloudServiceId}/resources/scheduler/~"
                         "/jobcollections/{jobCollectionId}", "").replace(ARM_COLLECTION, "ARM")


def _seed(tenant: Tenant) -> str:
    """A job the `{jobId}` routes can find, so that fuzzing reaches real data, not only 404s;
    returns the id of the call that put it, an operation the `{requestId}` routes can find."""
    response = tenant.call("PUT", f"{JOBS}/{KNOWN_JOB}", http_job())
    assert response.status_code in (200, 201), response.data
    return str(response.headers["x-ms-request-id"])


def _seed_history(tenant: Tenant) -> None:
    """A history entry of the known job (a run of it, canceled), so that the history routes
    answer an entry, not only an empty list."""
    run = tenant.call("POST", f"{JOBS}/{KNOWN_JOB}/run")
    assert run.status_code == 202, run.data
    execution = f"{JOBS}/{KNOWN_JOB}/executions/{run.get_json()['id']}"
    canceled = tenant.call("PATCH", execution, {"status": "canceled"})
    assert canceled.status_code == 204, canceled.data


def _restore_collection(tenant: Tenant) -> None:
    """Make the collection again once a fuzzed call deleted it, so that the calls after that
    one reach a collection too, not only 404s."""
    if tenant.call("GET", KNOWN_COLLECTION).status_code == 404:
        response = tenant.call("PUT", KNOWN_COLLECTION, collection_xml())
        assert response.status_code == 202, response.data


def _fit_collection(body: Any, name: str) -> None:
    """Make a generated Resource Manager collection name the collection of the path, as the
    service requires of a document that names one."""
    if isinstance(body, dict) and isinstance(body.get("name"), str):
        body["name"] = name


def _fit(body: Any, job_id: str | None) -> None:
    """Make a generated job more likely to pass the checks the schema cannot state: its `id`
    is the one in the path, and its brokers are configured."""
    if isinstance(body, dict):
        if job_id is not None and isinstance(body.get("id"), str):
            body["id"] = job_id
        for key, value in body.items():
            if key == "broker" and isinstance(value, str):
                body[key] = BROKER
            else:
                _fit(value, None)
    elif isinstance(body, list):
        for item in body:
            _fit(item, None)


@pytest.mark.parametrize(("route", "mode"), _fuzz_cases(),
                         ids=lambda value: getattr(value, "value", None) or _short_route(value))
def test_fuzzed_requests_get_answers_that_match_the_document(
    app: Flask, collection: Tenant, app_errors: _Collect, route: str,
    mode: schemathesis.GenerationMode,
) -> None:
    method, path = route.split(" ", 1)
    operation = fuzzed_schema()[path][method]
    fixed = {"subscriptionId": collection.subscription_id, "cloudServiceId": "cs1",
             "resourceGroupName": "cs1", "jobCollectionId": "jc1"}
    assert set(fixed) == FIXED_PATH_PARAMETERS
    environ = {PEER_CERT_ENVIRON: pki.der_bytes(collection.certificate.certificate)}
    has_job_id = "{jobId}" in path
    has_request_id = "{requestId}" in path
    deletes_collection = (method, path) == ("DELETE", ARM_COLLECTION)
    positive = mode is schemathesis.GenerationMode.POSITIVE
    known_request_id = _seed(collection)
    if path.endswith("/history"):
        _seed_history(collection)
    rt = app.extensions["scheduler"]
    with rt.db.transaction() as session:  # an engine is up, so /readyz answers 200
        Heartbeats().beat(session, "engine-under-test", rt.clock.now())

    @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                         derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed),
           known=st.booleans())
    def fuzz(case: schemathesis.Case[Any], known: bool) -> None:
        if deletes_collection:
            _restore_collection(collection)
        if has_job_id and known:
            case.path_parameters["jobId"] = KNOWN_JOB
            if collection.call("GET", f"{JOBS}/{KNOWN_JOB}").status_code == 404:
                _seed(collection)
        if has_request_id and known:
            case.path_parameters["requestId"] = known_request_id
        if positive:
            _fit(case.body, case.path_parameters.get("jobId"))
            if path.startswith(ARM_COLLECTION):
                _fit_collection(case.body, fixed["jobCollectionId"])
        app_errors.records.clear()
        response = case.call(app=app, environ_base=environ)
        problems = contract_violations(response.status_code, response.headers, response.content)
        try:
            case.validate_response(response, checks=SCHEMA_CHECKS)
        except (AssertionError, BaseExceptionGroup) as failure:  # one failure, or several
            problems.append(f"the answer does not match openapi.yaml: {failure}")
        assert not problems, _report(case, problems, response.status_code, response.content,
                                     app_errors.records)

    fuzz()


# --- inputs random generation rarely reaches -------------------------------------------------

def _with_retry_interval(interval: str) -> dict[str, Any]:
    return http_job(action={"type": "http",
                            "request": {"uri": "http://example.com/hook", "method": "GET"},
                            "retryPolicy": {"retryType": "fixed", "retryInterval": interval}})


def _with_uri(uri: str) -> dict[str, Any]:
    return http_job(action={"type": "http", "request": {"uri": uri, "method": "GET"}})


_ACTION = '"action":{"type":"http","request":{"uri":"http://example.com/hook","method":"GET"}}'

# Job documents the schema allows (or that are one step outside it) at the edges of what the
# parser handles: each must get an answer below 500, with a JSON body that is JSON.
BOUNDARY_JOBS: dict[str, dict[str, Any] | str] = {
    "start-year-1-east-of-utc": http_job(startTime="0001-01-01T00:00:00+01:00"),
    "start-year-9999-west-of-utc": http_job(startTime="9999-12-31T23:59:59-01:00"),
    "end-year-9999-west-of-utc": http_job(
        recurrence={"frequency": "hour", "endTime": "9999-12-31T23:59:59-05:00"}),
    "end-year-9999-utc": http_job(
        recurrence={"frequency": "hour", "endTime": "9999-12-31T23:59:59Z"}),
    "time-zone-naming-a-folder": http_job(
        recurrence={"frequency": "hour", "timeZone": "Europe"}),
    "time-zone-path": http_job(recurrence={"frequency": "hour", "timeZone": "../../etc/passwd"}),
    "retry-interval-too-many-weeks": _with_retry_interval("P99999999999999999999W"),
    "retry-interval-timespan-too-many-days": _with_retry_interval("999999999999999999.00:00:00"),
    "uri-unclosed-ipv6": _with_uri("http://[::1/"),
    "uri-bracketed-non-ip": _with_uri("http://[zz]/"),
    "count-beyond-64-bits": http_job(recurrence={"frequency": "hour", "count": 2**70}),
    "parameter-overflowing-to-infinity": f'{{{_ACTION},"parameters":{{"a":1e999}}}}',
}


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("name", list(BOUNDARY_JOBS))
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_boundary_job_documents_never_get_a_server_error(
    collection: Tenant, app_errors: _Collect, name: str, method: str
) -> None:
    _seed(collection)
    document = BOUNDARY_JOBS[name]
    path = f"{JOBS}/{KNOWN_JOB if method == 'PATCH' else 'boundary'}?api-version=2014-04-01"
    if isinstance(document, str):
        response = collection.client.open(collection.url(path), method=method, data=document,
                                          content_type="application/json")
    else:
        response = collection.call(method, path, document)
    problems = contract_violations(response.status_code, dict(response.headers), response.data)
    tracebacks = [logging.Formatter().format(r) for r in app_errors.records if r.exc_info]
    assert not problems, "\n".join([
        f"{method} {path} answered {response.status_code}: {'; '.join(problems)}",
        f"body: {document if isinstance(document, str) else json.dumps(document)}",
        f"response: {response.data[:2000]!r}",
        *tracebacks,
    ])



# --- who calls Resource Manager --------------------------------------------------------------

ARM_LIST = "/subscriptions/{subscriptionId}/providers/Microsoft.Scheduler/jobCollections"


@pytest.mark.parametrize(("headers", "code"), [
    ({}, "AuthenticationFailed"),
    ({"Authorization": "Bearer not-a-token-the-service-issued"}, "AuthenticationFailed"),
])
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_resource_manager_call_nobody_is_known_by_gets_the_documented_401(
    app: Flask, tenant: Tenant, headers: dict[str, str], code: str,
) -> None:
    case = fuzzed_schema()[ARM_LIST]["GET"].Case(
        path_parameters={"subscriptionId": tenant.subscription_id},
        query={"api-version": "2016-03-01"}, headers=headers)
    response = case.call(app=app)  # no client certificate
    case.validate_response(response, checks=SCHEMA_CHECKS)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    # Lower-case names, each with its values.
    assert response.headers["www-authenticate"][0].startswith("Bearer ")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_resource_manager_call_of_another_subscription_gets_the_documented_403(
    app: Flask, tenant: Tenant, other_tenant: Tenant,
) -> None:
    case = fuzzed_schema()[ARM_LIST]["GET"].Case(
        path_parameters={"subscriptionId": other_tenant.subscription_id},
        query={"api-version": "2016-03-01"})
    environ = {PEER_CERT_ENVIRON: pki.der_bytes(tenant.certificate.certificate)}
    response = case.call(app=app, environ_base=environ)
    case.validate_response(response, checks=SCHEMA_CHECKS)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "AuthorizationFailed"


# --- answers the document describes and the service does not give yet -----------------------

ARM_JOB_COLLECTION = "/resourceGroups/cs1/providers/Microsoft.Scheduler/jobCollections/jc1"
ARM_VERSION = "api-version=2016-03-01"


def _arm_call(tenant: Tenant, method: str, path: str, body: Any = None) -> Any:
    """A Resource Manager call under the tenant's subscription, with its certificate."""
    url = f"/subscriptions/{tenant.subscription_id}{path}?{ARM_VERSION}"
    return tenant.client.open(url, method=method, json=body)


def test_a_quota_larger_than_the_database_holds_gets_no_server_error(collection: Tenant) -> None:
    response = _arm_call(collection, "PUT", ARM_JOB_COLLECTION,
                         {"properties": {"quota": {"maxJobCount": 2**63}}})
    assert not contract_violations(response.status_code, response.headers, response.data)
    assert response.status_code == 400
    assert response.get_json()["error"]["message"].startswith("properties.quota.maxJobCount")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_whose_time_to_live_is_not_a_duration_reads_through_resource_manager(
    collection: Tenant,
) -> None:
    job = {"action": {"type": "serviceBusQueue", "serviceBusQueueMessage": {
        "namespace": "shop-bus", "queueName": "orders", "message": "m",
        "authentication": {"sasKeyName": "send", "sasKey": "key"},
        # .NET's TimeSpan.MaxValue, Service Bus's own default time to live.
        "brokeredMessageProperties": {"timeToLive": "10675199.02:48:05.4775807"}}}}
    assert collection.call("PUT", f"{JOBS}/long-lived", job).status_code == 201
    response = _arm_call(collection, "GET", f"{ARM_JOB_COLLECTION}/jobs/long-lived")
    assert not contract_violations(response.status_code, response.headers, response.data)
    message = response.get_json()["properties"]["action"]["serviceBusQueueMessage"]
    assert message["brokeredMessageProperties"]["timeToLive"] == "10675199.02:48:05.4775807"
