"""Placeholders checked at the door: where one may stand, what it may name, and when its
value must be known; a refused job or run stores nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import JOBS, Tenant

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"


def http_job(uri: str = "https://example.com/hook", **request: Any) -> dict[str, Any]:
    """A daily job calling `uri`, far in the future."""
    return {"startTime": "2030-01-01T00:00:00Z", "recurrence": {"frequency": "day"},
            "action": {"type": "http", "request": {"uri": uri, "method": "POST", **request}}}


def assert_refused(collection: Tenant, response: Any, *expected: str) -> None:
    """A 400 whose message names each of `expected`, and no job stored."""
    assert response.status_code == 400, response.data
    message = response.get_json()["error"]["message"]
    for part in expected:
        assert part in message
    assert collection.call("GET", JOBS).get_json() == []


@pytest.mark.parametrize("uri", [
    "https://{{parameters.host}}/x",
    "https://example.com:{{parameters.port}}/x",
    "https://{{parameters.user}}@example.com/x",
    "{{parameters.scheme}}://example.com/x",
    "https://api.{{parameters.zone}}.example.com/x",
])
def test_a_placeholder_in_the_scheme_host_or_port_is_refused(
    collection: Tenant, uri: str
) -> None:
    job = http_job(uri)
    job["parameters"] = {"host": "a", "port": 1, "user": "u", "scheme": "https", "zone": "z"}
    assert_refused(collection, collection.call("PUT", f"{JOBS}/j", job),
                   "action.request.uri", "scheme, host or port")


@pytest.mark.parametrize(("placeholder", "expected"), [
    ("{{params.x}}", "no known namespace"),
    ("{{execution.startTime}}", "execution.id"),
    ("{{parameters.a.b}}", "does not name a parameter"),
    ("{{steps.login.output.body}}", "names no step"),
])
def test_a_placeholder_that_names_nothing_is_refused(
    collection: Tenant, placeholder: str, expected: str
) -> None:
    job = http_job(body=f"x {placeholder}")
    job["parameters"] = {"x": 1}
    job["state"] = "disabled"  # even a job that gets its values at run
    assert_refused(collection, collection.call("PUT", f"{JOBS}/j", job),
                   "action.request.body", placeholder, expected)


def test_an_enabled_job_must_give_every_parameter_it_names(collection: Tenant) -> None:
    job = http_job("https://example.com/{{parameters.region}}",
                   headers={"x-team": "{{parameters.team}}"})
    job["parameters"] = {"team": "ops"}
    assert_refused(collection, collection.call("PUT", f"{JOBS}/j", job),
                   "action.request.uri", "{{parameters.region}}")
    job["parameters"]["region"] = "eu"
    assert collection.call("PUT", f"{JOBS}/j", job).status_code == 201


def test_a_disabled_job_needs_its_values_once_it_is_enabled(collection: Tenant) -> None:
    job = http_job("https://example.com/{{parameters.region}}")
    job["state"] = "disabled"
    assert collection.call("PUT", f"{JOBS}/j", job).status_code == 201
    enabling = collection.call("PATCH", f"{JOBS}/j", {"state": "enabled"})
    assert enabling.status_code == 400
    assert "{{parameters.region}}" in enabling.get_json()["error"]["message"]
    assert collection.call("GET", f"{JOBS}/j").get_json()["state"] == "disabled"
    enabling = collection.call("PATCH", f"{JOBS}/j",
                               {"state": "enabled", "parameters": {"region": "eu"}})
    assert enabling.status_code == 200, enabling.data
    started = collection.call("POST", f"{JOBS}/j/run", {"parameters": {"region": "us"}})
    assert started.status_code == 202, started.data
    assert started.get_json()["parameters"] == {"region": "us"}


def test_an_inline_run_must_give_every_parameter_it_names(collection: Tenant) -> None:
    body = {"action": http_job("https://example.com/{{parameters.n}}")["action"]}
    response = collection.call("POST", f"{COLLECTION}/executions", body)
    assert response.status_code == 400
    assert "{{parameters.n}}" in response.get_json()["error"]["message"]
    assert collection.call("GET", f"{COLLECTION}/executions").get_json() == []


def test_a_step_may_read_only_the_steps_before_it(collection: Tenant) -> None:
    def step(name: str, uri: str) -> dict[str, Any]:
        return {"name": name, "action": http_job(uri)["action"]}

    job = http_job()
    job["action"] = {"type": "sequence", "steps": [
        step("first", "https://example.com/{{steps.second.output.body}}"),
        step("second", "https://example.com/b")]}
    assert_refused(collection, collection.call("PUT", f"{JOBS}/j", job),
                   "action.steps.0.action.request.uri", "names no step")
    job["action"]["steps"].reverse()
    job["action"]["steps"][1]["action"]["request"]["uri"] = \
        "https://example.com/{{steps.second.output.json.token}}"
    assert collection.call("PUT", f"{JOBS}/j", job).status_code == 201


def test_header_values_that_a_header_cannot_carry_are_refused_at_run(
    collection: Tenant
) -> None:
    job = http_job(headers={"x-who": "{{parameters.who}}"})
    job["parameters"] = {"who": "ops"}
    assert collection.call("PUT", f"{JOBS}/j", job).status_code == 201
    for value in ("a\r\nx-admin: 1", "caf\u00e9"):
        refused = collection.call("POST", f"{JOBS}/j/run", {"parameters": {"who": value}})
        assert refused.status_code == 400
        assert "parameters.who" in refused.get_json()["error"]["message"]
    assert collection.call("GET", f"{JOBS}/j/executions").get_json() == []


def test_queue_messages_follow_the_same_rules(collection: Tenant) -> None:
    job = http_job()
    job["action"] = {"type": "storageQueue", "queueMessage": {
        "storageAccount": "acct", "queueName": "orders", "sasToken": "sig",
        "message": "order {{parameters.id}}"}}
    assert_refused(collection, collection.call("PUT", f"{JOBS}/j", job),
                   "action.queueMessage.message", "{{parameters.id}}")
    job["parameters"] = {"id": 7}
    assert collection.call("PUT", f"{JOBS}/j", job).status_code == 201


def test_a_header_given_twice_in_different_cases_is_refused(collection: Tenant) -> None:
    """Which `Content-Type` decides how the body's placeholders are escaped?"""
    job = http_job(headers={"Content-Type": "application/json",
                            "content-type": "text/plain"}, body='{"a": 1}')
    assert_refused(collection, collection.call("PUT", f"{JOBS}/j", job),
                   "action.request.headers.content-type", "twice")
