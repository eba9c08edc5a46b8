"""An execution's page over runs the engine really made: Run again, the request as curl with
its secrets redacted, and a sequence's steps with their input and output."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from tests.engine.harness import MakeDriver, NodeDriver, Receiver
from tests.support import JOBS, Tenant
from tests.ui.markup import HTTPS, Element, collection_ui, page, parse

CsrfOf = Callable[[FlaskClient, str], str]
PASSWORD = "hunter2-never-shown"


def run_now(collection: Tenant, job_id: str) -> str:
    """Run a job now through the API; the id of its execution."""
    response = collection.call("POST", f"{JOBS}/{job_id}/run")
    assert response.status_code == 202, response.data
    execution_id: str = response.get_json()["id"]
    return execution_id


def execution_path(collection: Tenant, job_id: str, execution_id: str) -> str:
    """The dashboard's page of a job's execution."""
    return collection_ui(collection.subscription_id,
                         f"/jobs/{job_id}/executions/{execution_id}")


def status_of(execution: Element) -> str:
    """The status an execution's page says."""
    return execution.one(id="execution-status").text


def test_run_again_starts_a_new_execution_of_the_job_with_the_same_parameters(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        csrf_of: CsrfOf) -> None:
    job = receiver.job("/again", startTime="2099-01-01T00:00:00Z")
    assert collection.call("PUT", f"{JOBS}/again", job).status_code == 201
    first = run_now(collection, "again")
    driver.step()
    path = execution_path(collection, "again", first)
    form = page(signed_in, path).one("form", where=lambda form: form.text == "Run again")
    assert form.attrs["action"] == f"{path}/again"
    response = signed_in.post(form.attrs["action"], base_url=HTTPS,
                              data={"csrf": csrf_of(signed_in, path)})
    assert response.status_code == 303
    second = response.headers["Location"].rsplit("/", 1)[1]
    assert second != first
    assert response.headers["Location"].endswith(execution_path(collection, "again", second))
    driver.step()
    assert status_of(page(signed_in, execution_path(collection, "again", second))) \
        == "completed"
    assert [request.body for request in receiver.requests] == [b"hello world"] * 2
    assert [request.header("x-ms-execution-tag") for request in receiver.requests] == [
        first, second]
    history = collection.call("GET", f"{JOBS}/again/history").get_json()
    assert sorted(entry["executionId"] for entry in history) == sorted([first, second])


def test_copy_as_curl_redacts_the_basic_password(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver,
        driver: NodeDriver) -> None:
    job = receiver.job("/basic", startTime="2099-01-01T00:00:00Z")
    job["action"]["request"]["authentication"] = {
        "type": "basic", "username": "ops", "password": PASSWORD}
    assert collection.call("PUT", f"{JOBS}/basic", job).status_code == 201
    execution_id = run_now(collection, "basic")
    driver.step()
    [sent] = receiver.requests
    credentials = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
    assert sent.header("authorization") == f"Basic {credentials}", "the real call had it"
    response = signed_in.get(execution_path(collection, "basic", execution_id),
                             base_url=HTTPS)
    html = response.get_data(as_text=True)
    assert PASSWORD not in html and credentials not in html
    execution = parse(html)
    copy = execution.one("button", data_copy="curl-text")
    assert copy.text == "Copy as curl"
    # As it was sent: its placeholders filled with the execution's values.
    assert sent.header("x-run") == execution_id and sent.body == b"hello world"
    assert execution.one("pre", id="curl-text").text == (
        f"curl -X POST {receiver.url('/basic')} -H 'Content-Type: text/plain' "
        f"-H 'X-Run: {execution_id}' -H 'Authorization: Basic <redacted> (user ops)' "
        "--data-raw 'hello world'")


def sequence_step(name: str, receiver: Receiver, path: str, body: str) -> dict[str, Any]:
    """A step POSTing `body` to the receiver's `path`, without retries."""
    return {"name": name, "retryPolicy": {"retryType": "none"},
            "action": {"type": "http", "request": {"uri": receiver.url(path),
                                                   "method": "POST", "body": body}}}


def test_a_sequence_s_page_shows_each_step_with_its_input_and_output(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver,
        driver: NodeDriver) -> None:
    receiver.answers["/token"] = (200, {"Content-Type": "application/json"},
                                  b'{"token": "abc"}')
    receiver.answers["/use/abc"] = (202, {}, b"queued")
    job = {"startTime": "2099-01-01T00:00:00Z", "action": {"type": "sequence", "steps": [
        sequence_step("login", receiver, "/token", "who am i"),
        sequence_step("use", receiver, "/use/{{steps.login.output.json.token}}", "go")]}}
    assert collection.call("PUT", f"{JOBS}/seq", job).status_code == 201
    execution_id = run_now(collection, "seq")
    driver.step()
    driver.step()
    execution = page(signed_in, execution_path(collection, "seq", execution_id))
    assert status_of(execution) == "completed"
    rows = execution.section("steps").rows()
    assert [row[:4] for row in rows] == [["0", "login", "completed", "1"],
                                         ["1", "use", "completed", "1"]]
    document = collection.call(
        "GET", f"{JOBS}/seq/executions/{execution_id}").get_json()
    for row, step in zip(rows, document["steps"], strict=True):
        assert (json.loads(row[4]), json.loads(row[5])) == (step["input"], step["output"])
    login, use = (json.loads(row[4]) for row in rows)
    assert (login["uri"], login["body"]) == (receiver.url("/token"), "who am i")
    assert (use["uri"], use["body"]) == (receiver.url("/use/abc"), "go")
    login_answer, use_answer = (json.loads(row[5]) for row in rows)
    assert (login_answer["statusCode"], login_answer["body"]) == (200, '{"token": "abc"}')
    assert (use_answer["statusCode"], use_answer["body"]) == (202, "queued")


def test_a_page_says_until_when_an_execution_waits_for_its_target_s_callback(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver,
        make_driver: MakeDriver) -> None:
    receiver.answers["/accept"] = (202, {}, b"accepted")
    job = receiver.job("/accept", startTime="2099-01-01T00:00:00Z")
    job["action"]["request"]["body"] = "{{execution.callbackUrl}}"
    job["action"]["completion"] = {"mode": "callback", "timeout": "PT1H"}
    assert collection.call("PUT", f"{JOBS}/report", job).status_code == 201
    execution_id = run_now(collection, "report")
    make_driver(public_url="https://scheduler.example.test").step()
    path = execution_path(collection, "report", execution_id)
    assert status_of(page(signed_in, path)) == "running"
    html = signed_in.get(path, base_url=HTTPS).get_data(as_text=True)
    assert "waits for it until 2026-03-01 13:00:00" in html
    token = receiver.requests[0].body.decode().rsplit("/", 1)[1]
    assert token not in html
    assert f"/callbacks/{execution_id}/&lt;redacted&gt;" in html
