"""Results that come back later, through real processes: a target answers 202 and posts the
result to its callback URL over TLS with no client certificate; the execution waits for it
across a killed and restarted engine, and completes when it comes, or fails at its deadline.
On PostgreSQL, with a real loopback target."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.e2e.support import ServerProcess, create_collection, wait_for
from tests.engine.harness import Receiver

ENV = {"SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true"}
A_TOKEN = "A" * 43
AN_EXECUTION = "0" * 32


@pytest.fixture
def accepting(start_receiver: Callable[..., Receiver]) -> Receiver:
    """A target that answers 202 to `/accept`, keeping the callback URLs it is sent."""
    receiver = start_receiver()
    receiver.answers["/accept"] = (202, {}, b"accepted")
    return receiver


@pytest.fixture
def on_postgres(server_factory: Any, postgres_schema: tuple[str, str]) -> ServerProcess:
    """A server (API and engine) on a PostgreSQL schema of its own."""
    server: ServerProcess = server_factory(
        env={**ENV, "SCHEDULER_DATABASE_URL": postgres_schema[1]})
    return server


def without_certificate(server: ServerProcess) -> requests.Session:
    """A client that trusts the server and presents no client certificate."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(server.info["caCert"])
    return session


def post_result(server: ServerProcess, url: str, body: Any) -> requests.Response:
    """Post a result to a callback URL's path on the server, with no client certificate."""
    return without_certificate(server).post(server.base_url + urlsplit(url).path, json=body,
                                            timeout=30)


def start_waiting_job(server: ServerProcess, receiver: Receiver, timeout: str
                      ) -> tuple[requests.Session, str]:
    """A one-shot callback job due in 2 s; the session and the job's URL, once its call was
    accepted and its execution waits."""
    session, jobs = create_collection(server, "Standard")
    start = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    job = {"startTime": start.isoformat(),
           "action": {"type": "http",
                      "request": {"uri": receiver.url("/accept"), "method": "POST",
                                  "headers": {"Content-Type": "application/json"},
                                  "body": '{"callback": "{{execution.callbackUrl}}"}'},
                      "completion": {"mode": "callback", "timeout": timeout},
                      "retryPolicy": {"retryType": "none"}}}
    assert session.put(f"{jobs}/report", json=job).status_code == 201
    assert wait_for(lambda: waiting(session, f"{jobs}/report"), 60), "no call accepted"
    return session, f"{jobs}/report"


def executions_of(session: requests.Session, job: str) -> list[dict[str, Any]]:
    """A job's executions, as the API shows them."""
    found: list[dict[str, Any]] = session.get(f"{job}/executions").json()
    return found


def waiting(session: requests.Session, job: str) -> bool:
    """Whether the job's one execution waits for its callback."""
    runs = executions_of(session, job)
    return len(runs) == 1 and "callbackDeadline" in runs[0]


def ended(session: requests.Session, job: str, status: str) -> bool:
    """Whether the job's one execution ended as `status`."""
    return [run["status"] for run in executions_of(session, job)] == [status]


def test_a_callback_after_the_engine_was_killed_completes_the_execution(
    on_postgres: ServerProcess, accepting: Receiver,
) -> None:
    session, job = start_waiting_job(on_postgres, accepting, "PT10M")
    on_postgres.kill()
    on_postgres.start()
    [request] = accepting.requests
    url = json.loads(request.body)["callback"]
    posted = post_result(on_postgres, url, {"status": "completed", "output": {"rows": 7}})
    assert posted.status_code == 202, posted.text
    assert wait_for(lambda: ended(session, job, "completed"), 60), executions_of(session, job)
    [run] = executions_of(session, job)
    assert run["outputParameters"] == {"status": "completed", "output": {"rows": 7}}
    assert len(accepting.requests) == 1, "the call is not made again"
    assert post_result(on_postgres, url, {"status": "completed"}).status_code == 404


def test_an_execution_whose_callback_never_comes_fails_after_a_restart(
    on_postgres: ServerProcess, accepting: Receiver,
) -> None:
    session, job = start_waiting_job(on_postgres, accepting, "PT6S")
    on_postgres.kill()
    on_postgres.start()
    assert wait_for(lambda: ended(session, job, "failed"), 60), executions_of(session, job)
    [entry] = session.get(f"{job}/history").json()
    assert entry["message"] == "Callback - the target did not post its result within PT6S"


def test_a_callback_url_needs_no_client_certificate_and_answers_a_bad_post_with_4xx(
    shared_server: ServerProcess,
) -> None:
    url = f"/callbacks/{AN_EXECUTION}/{A_TOKEN}"
    unknown = post_result(shared_server, url, {"status": "completed"})
    assert unknown.status_code == 404, "not 403: no certificate is asked for"
    assert unknown.json()["error"]["message"] == \
        "No execution waits for a callback at this URL."
    assert post_result(shared_server, "/callbacks/x/y", {"status": "completed"}) \
        .status_code == 404
    for body, field in (({"status": "done"}, "status"), ({}, "status"),
                        ({"status": "failed", "message": 5}, "message"),
                        ({"status": "failed", "extra": 1}, "extra")):
        refused = post_result(shared_server, url, body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["message"].startswith(f"{field}:")
    huge = post_result(shared_server, url, {"status": "completed", "output": "x" * 70_000})
    assert huge.status_code == 413
    as_text = without_certificate(shared_server).post(
        shared_server.base_url + url, data="status=completed",
        headers={"Content-Type": "text/plain"}, timeout=30)
    assert as_text.status_code == 415
