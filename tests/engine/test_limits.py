"""Texts filled when a call is made are bounded: a step output (known only once its step has
run) that would make the next step's body, a header value or the URI longer than its limit
fails that attempt with a message naming the limit, and nothing of it is sent or stored.

The API runs in process with a fake clock; an engine driven by hand makes the calls to a
real HTTP receiver on loopback.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant

EXECUTIONS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"
OUTPUT = "{{steps.fetch.output.body}}"
# What the first step answers: 2,000 characters, each written as three in a URI ("%2F").
ANSWER = b"/" * 2000


def sequence(receiver: Receiver, request: dict[str, Any]) -> dict[str, Any]:
    """A job, due in a day, whose second step sends `request` after the first fetched."""
    fetch = {"uri": receiver.url("/fetch"), "method": "GET"}
    steps = [{"name": name, "action": {"type": "http", "request": call},
              "retryPolicy": {"retryType": "none"}}
             for name, call in (("fetch", fetch), ("send", request))]
    return {"startTime": "2026-03-02T12:00:00Z",
            "action": {"type": "sequence", "steps": steps}}


def run_sequence(collection: Tenant, receiver: Receiver, driver: NodeDriver,
                 request: dict[str, Any], job_id: str = "seq") -> dict[str, Any]:
    """Store the job, run it now through both steps; its execution as the API shows it."""
    receiver.answers["/fetch"] = (200, {"Content-Type": "text/plain"}, ANSWER)
    job = sequence(receiver, request)
    assert collection.call("PUT", f"{JOBS}/{job_id}", job).status_code == 201
    started = collection.call("POST", f"{JOBS}/{job_id}/run")
    assert started.status_code == 202, started.data
    driver.step()
    driver.step()
    document = collection.call("GET", f"{EXECUTIONS}/{started.get_json()['id']}").get_json()
    return dict(document)


@pytest.mark.parametrize(("path", "fields", "limit"), [
    ("/send", {"headers": {"Content-Type": "text/plain"}, "body": OUTPUT * 40},
     "body or message would be longer than 65536 characters"),
    ("/send", {"headers": {"X-Echo": OUTPUT * 3}, "body": "hi"},
     "header value would be longer than 4096 characters"),
    (f"/send?a={OUTPUT}&b={OUTPUT}", {},
     "URI would be longer than 8192 characters"),
], ids=["body", "header", "uri"])
def test_a_step_output_that_overflows_the_next_call_fails_it_naming_the_limit(
    collection: Tenant, receiver: Receiver, driver: NodeDriver, path: str,
    fields: dict[str, Any], limit: str,
) -> None:
    request = {"uri": receiver.url(path), "method": "POST", **fields}
    document = run_sequence(collection, receiver, driver, request)
    assert [received.path for received in receiver.requests] == ["/fetch"]
    assert document["status"] == "failed"
    fetched, sent = document["steps"]
    assert fetched["status"] == "completed" and fetched["output"]["body"] == ANSWER.decode()
    assert sent["status"] == "failed"
    assert limit in sent["message"], sent["message"]
    assert not sent.get("input")  # nothing of the call is stored as sent
    assert driver.sample("scheduler_engine_unrunnable_attempts_total",
                         reason="placeholder") == 1


def test_the_limit_is_the_filled_length_itself(
    collection: Tenant, receiver: Receiver, driver: NodeDriver,
) -> None:
    """32 copies of the output make 64,000 characters, sent whole; 33 make 66,000, over
    65,536, and fail."""
    def request(copies: int) -> dict[str, Any]:
        return {"uri": receiver.url(f"/send/{copies}"), "method": "POST",
                "headers": {"Content-Type": "text/plain", "X-Echo": OUTPUT * 2},
                "body": OUTPUT * copies}

    fits = run_sequence(collection, receiver, driver, request(32), "fits")
    over = run_sequence(collection, receiver, driver, request(33), "over")
    assert (fits["status"], over["status"]) == ("completed", "failed")
    assert [received.path for received in receiver.requests] == [
        "/fetch", "/send/32", "/fetch"]
    sent = receiver.requests[1]
    assert sent.body == ANSWER * 32
    assert sent.header("X-Echo") == (ANSWER * 2).decode()
