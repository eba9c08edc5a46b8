"""Placeholders are data: what a target receives when values hold the characters of the
place they stand in, and what happens to a placeholder that has no value.

The API runs in process with a fake clock; an engine driven by hand makes the calls to a
real HTTP receiver on loopback.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs
from xml.etree import ElementTree

from sqlalchemy import update

from scheduler.db.models import Job
from scheduler.db.session import Database
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant

# Values that would change the meaning of the text they are pasted into as raw text.
HOSTILE = {
    "path": "../../admin?drop=1#",
    "query": "a&admin=1 #x",
    "quote": 'x", "admin": true, "y": "',
    "lines": "one\ntwo\\three",
    "flag": True,
    "nothing": None,
    "count": 5,
    "markup": "<admin/> & 'all'",
}


def hostile_job(receiver: Receiver, uri_path: str, body: str, content_type: str
                ) -> dict[str, Any]:
    """A job due at 12:00:10 with the hostile parameters as its defaults."""
    return receiver.job(uri_path, parameters=HOSTILE, action={"type": "http", "request": {
        "uri": receiver.url(uri_path), "method": "POST",
        "headers": {"Content-Type": content_type}, "body": body}})


def fire(driver: NodeDriver) -> None:
    """Move the clock past 12:00:10 and run the engine's step."""
    driver.clock.advance(timedelta(seconds=10))
    assert driver.step() == 1


def test_uri_values_are_percent_encoded_where_they_stand(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    job = hostile_job(receiver, "/items/{{parameters.path}}?q={{parameters.query}}&n="
                                "{{parameters.count}}", "", "text/plain")
    assert collection.call("PUT", f"{JOBS}/uri", job).status_code == 201
    fire(driver)
    [received] = receiver.requests
    path, _, query = received.path.partition("?")
    assert path == "/items/..%2F..%2Fadmin%3Fdrop%3D1%23"
    assert parse_qs(query) == {"q": ["a&admin=1 #x"], "n": ["5"]}


def test_a_json_body_gets_escaped_strings_and_values_as_json(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    body = ('{"name": "{{parameters.quote}}", "text": "said {{parameters.lines}}", '
            '"flag": {{parameters.flag}}, "nothing": {{parameters.nothing}}, '
            '"count": {{parameters.count}}, "whole": {{parameters.quote}}, '
            '"flagText": "{{parameters.flag}}", "run": "{{execution.id}}"}')
    job = hostile_job(receiver, "/json", body, "application/json; charset=utf-8")
    assert collection.call("PUT", f"{JOBS}/json", job).status_code == 201
    fire(driver)
    [received] = receiver.requests
    sent = json.loads(received.body)
    assert sent == {"name": HOSTILE["quote"], "text": "said one\ntwo\\three", "flag": True,
                    "nothing": None, "count": 5, "whole": HOSTILE["quote"],
                    "flagText": "true", "run": received.header("x-ms-execution-tag")}


def test_form_and_xml_bodies_are_escaped_as_their_content_type_says(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    form = hostile_job(receiver, "/form", "q={{parameters.query}}&flag={{parameters.flag}}",
                       "application/x-www-form-urlencoded")
    xml = hostile_job(receiver, "/xml", '<a note="{{parameters.markup}}">{{parameters.markup}}'
                                        "</a>", "application/xml")
    assert collection.call("PUT", f"{JOBS}/form", form).status_code == 201
    assert collection.call("PUT", f"{JOBS}/xml", xml).status_code == 201
    driver.clock.advance(timedelta(seconds=10))
    assert driver.step() == 2
    by_path = {received.path: received.body for received in receiver.requests}
    assert parse_qs(by_path["/form"].decode()) == {"q": ["a&admin=1 #x"], "flag": ["true"]}
    element = ElementTree.fromstring(by_path["/xml"])
    assert element.text == element.get("note") == HOSTILE["markup"]


def test_other_bodies_get_the_text_as_given(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    job = hostile_job(receiver, "/text", "{{parameters.quote}}|{{parameters.nothing}}",
                      "text/plain")
    assert collection.call("PUT", f"{JOBS}/text", job).status_code == 201
    fire(driver)
    assert receiver.requests[0].body == f"{HOSTILE['quote']}|null".encode()


def test_run_now_values_are_escaped_like_defaults(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    job = receiver.job("/run", startTime="2026-03-02T12:00:00Z", parameters={"who": "x"},
                       action={"type": "http", "request": {
                           "uri": receiver.url("/run/{{parameters.who}}"), "method": "POST",
                           "headers": {"Content-Type": "application/json"},
                           "body": '{"who": "{{parameters.who}}"}'}})
    assert collection.call("PUT", f"{JOBS}/later", job).status_code == 201
    started = collection.call("POST", f"{JOBS}/later/run",
                              {"parameters": {"who": 'a/"b"'}})
    assert started.status_code == 202, started.data
    assert driver.step() == 1
    [received] = receiver.requests
    assert received.path == "/run/a%2F%22b%22"
    assert json.loads(received.body) == {"who": 'a/"b"'}


def test_a_step_output_that_is_not_there_fails_the_attempt_naming_it(
    collection: Tenant, receiver: Receiver, driver: NodeDriver
) -> None:
    receiver.answers["/login"] = (200, {"Content-Type": "application/json"},
                                  b'{"token": "a/b"}')
    steps = [
        {"name": "login", "action": {"type": "http", "request": {
            "uri": receiver.url("/login"), "method": "POST"}}},
        {"name": "use", "action": {"type": "http", "request": {
            "uri": receiver.url("/use/{{steps.login.output.json.token}}"), "method": "POST"}}},
        {"name": "missing", "retryPolicy": {"retryType": "none"}, "action": {
            "type": "http", "request": {
            "uri": receiver.url("/x/{{steps.login.output.json.nope}}"), "method": "POST"}}},
    ]
    job = receiver.job(action={"type": "sequence", "steps": steps,
                               "retryPolicy": {"retryType": "none"}})
    assert collection.call("PUT", f"{JOBS}/steps", job).status_code == 201, job
    driver.clock.advance(timedelta(seconds=10))
    for _ in range(3):
        driver.step()
    assert [received.path for received in receiver.requests] == ["/login", "/use/a%2Fb"]
    [execution] = collection.call("GET", f"{JOBS}/steps/executions").get_json()
    assert execution["status"] == "failed"
    failed = collection.call("GET", f"{JOBS}/steps/history").get_json()[0]
    assert "{{steps.login.output.json.nope}}" in failed["message"]
    assert failed["status"] == "failed"


def test_a_stored_job_whose_placeholder_has_no_value_fails_without_sending(
    collection: Tenant, receiver: Receiver, driver: NodeDriver, db: Database
) -> None:
    """A job stored before the rule held, or changed behind the API's back: its attempt
    fails naming the placeholder, the other jobs due with it go out."""
    assert collection.call("PUT", f"{JOBS}/old", receiver.job("/old")).status_code == 201
    assert collection.call("PUT", f"{JOBS}/fine", receiver.job("/fine")).status_code == 201
    with db.transaction() as session:
        job = session.query(Job).filter_by(job_id="old").one()
        definition = json.loads(job.definition)
        definition["action"]["uri"] = receiver.url("/old/{{parameters.gone}}")
        session.execute(update(Job).where(Job.id == job.id)
                        .values(definition=json.dumps(definition), etag=str(uuid.uuid4())))
    driver.clock.advance(timedelta(seconds=10))
    assert driver.step() == 2
    assert [received.path for received in receiver.requests] == ["/fine"]
    [entry] = collection.call("GET", f"{JOBS}/old/history").get_json()
    assert entry["status"] == "failed"
    assert "{{parameters.gone}} has no value" in entry["message"]
    assert driver.sample("scheduler_engine_unrunnable_attempts_total",
                         reason="placeholder") == 1
