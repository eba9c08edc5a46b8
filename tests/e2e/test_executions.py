"""Executions through a running service: run now, cancel a call in flight, survive a kill.

The target is a raw loopback server that can hold a call open, so a test sees the moment
the engine closes the connection of a canceled attempt. Tests that neither stop nor
reconfigure the server share one, each in a subscription of its own.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.support import ServerProcess, as_new_subscription, create_collection, wait_for

ENV = {"SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true"}


@dataclass
class HoldingTarget:
    """Answers 200 at once, except on paths under `/hold`, which it never answers: it
    waits for the caller to close the connection, and notes when it did."""

    port: int = 0
    paths: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # by path
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        """A URL on this target."""
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, listener: socket.socket) -> None:
        """Accept connections until the listener closes."""
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        """Read requests on one connection and answer or hold them."""
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1].decode()
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                with self.lock:
                    self.paths.append(path)
                    self.bodies.append(body)
                if path.startswith("/hold"):
                    while conn.recv(65536):
                        pass
                    with self.lock:
                        self.closed.append(path)
                    return
                status, answer = self.answers.get(path, (200, b"ok"))
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s"
                             % (status, len(answer), answer))


@pytest.fixture(scope="module")
def shared(shared_server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A server for the module that may call loopback targets."""
    return shared_server_factory(ENV)


@pytest.fixture
def served(shared: ServerProcess, tmp_path: Path) -> ServerProcess:
    """The module's server, as a subscription of the test's own sees it."""
    return as_new_subscription(shared, tmp_path)


@pytest.fixture
def target() -> Iterator[HoldingTarget]:
    """A running holding target."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    state = HoldingTarget(listener.getsockname()[1])
    threading.Thread(target=state.serve, args=(listener,), daemon=True).start()
    yield state
    listener.close()


def http_job(target: HoldingTarget, path: str, **extra: Any) -> dict[str, Any]:
    """A job that calls the target, not due for a day."""
    job: dict[str, Any] = {
        "startTime": "2099-01-01T00:00:00Z",
        "action": {"type": "http", "request": {"uri": target.url(path), "method": "POST"},
                   "retryPolicy": {"retryType": "fixed", "retryInterval": "PT1S",
                                   "retryCount": 3}}}
    job.update(extra)
    return job


def execution(session: requests.Session, url: str) -> tuple[dict[str, Any], str]:
    """An execution's document and ETag."""
    response = session.get(url)
    assert response.status_code == 200, response.text
    return response.json(), response.headers["ETag"]


def run_and_cancel_in_flight(api: ServerProcess, target: HoldingTarget) -> None:
    """Run a job that the target holds, cancel it while its call is in flight, and see the
    connection closed and the execution canceled, with no retry."""
    session, jobs = create_collection(api, "Standard")
    assert session.put(f"{jobs}/held", json=http_job(target, "/hold/1")).status_code == 201
    started = session.post(f"{jobs}/held/run", json={"parameters": {"n": 1}})
    assert started.status_code == 202, started.text
    url = started.headers["Location"]
    assert wait_for(lambda: "/hold/1" in target.paths, 30), target.paths
    document, etag = execution(session, url)
    assert document["status"] == "running" and document["node"]
    assert session.patch(url, json={"status": "canceled"},
                         headers={"If-Match": started.headers["ETag"]}).status_code == 412
    canceled = session.patch(url, json={"status": "canceled"}, headers={"If-Match": etag})
    assert canceled.status_code == 204, canceled.text
    assert wait_for(lambda: "/hold/1" in target.closed, 30), "the call was not abandoned"
    document, _ = execution(session, url)
    assert document["status"] == "canceled" and "nextAttemptTime" not in document
    assert session.patch(url, json={"status": "canceled"}).status_code == 409
    assert target.paths.count("/hold/1") == 1


def test_a_canceled_call_in_flight_is_abandoned(served: ServerProcess,
                                                target: HoldingTarget) -> None:
    run_and_cancel_in_flight(served, target)


def test_a_canceled_call_is_abandoned_by_an_engine_in_another_process_on_postgresql(
    server_factory: Any, target: HoldingTarget, postgres_schema: tuple[str, str]
) -> None:
    _schema, url = postgres_schema
    env = {**ENV, "SCHEDULER_DATABASE_URL": url}
    api: ServerProcess = server_factory(env=env, role="api")
    server_factory(home=api.home, env=env, role="engine")
    run_and_cancel_in_flight(api, target)


def test_a_paused_execution_survives_a_kill_and_resumes_on_request(
    server_factory: Any, target: HoldingTarget
) -> None:
    server: ServerProcess = server_factory(env=ENV)
    session, jobs = create_collection(server, "Standard")
    steps = [{"name": "prepare", "action": {"type": "http", "request": {
                 "uri": target.url("/prepare"), "method": "POST"}}},
             {"name": "deploy", "manual": True, "action": {"type": "http", "request": {
                 "uri": target.url("/deploy"), "method": "POST"}}}]
    job = {"startTime": "2099-01-01T00:00:00Z", "action": {"type": "sequence", "steps": steps}}
    assert session.put(f"{jobs}/release", json=job).status_code == 201
    inline = f"{jobs.rsplit('/', 1)[0]}/executions"
    inline_run = session.post(inline, json={"action": {"type": "sequence", "steps": [
        {"name": "approve", "manual": True, "action": {"type": "http", "request": {
            "uri": target.url("/inline"), "method": "GET"}}}]}})
    assert inline_run.status_code == 202, inline_run.text
    started = session.post(f"{jobs}/release/run")
    url = started.headers["Location"]
    assert wait_for(lambda: execution(session, url)[0]["status"] == "paused", 30)

    server.kill()
    server.start()
    session = server.session()
    document, etag = execution(session, url)
    assert document["status"] == "paused"
    assert [s["status"] for s in document["steps"]] == ["completed", "waiting"]
    assert execution(session, inline_run.headers["Location"])[0]["status"] == "paused"
    resumed = session.post(f"{url}/resume", headers={"If-Match": etag})
    assert resumed.status_code == 202, resumed.text
    assert session.post(inline_run.headers["Location"] + "/resume").status_code == 202
    assert wait_for(lambda: execution(session, url)[0]["status"] == "completed", 30)
    assert wait_for(lambda: execution(session, inline_run.headers["Location"])[0]["status"]
                    == "completed", 30)
    assert target.paths.count("/prepare") == 1
    assert target.paths.count("/deploy") == 1 and target.paths.count("/inline") == 1


def test_run_now_reaches_the_target_without_waiting_for_a_pass(
    server_factory: Any, target: HoldingTarget
) -> None:
    # The engine sleeps up to ten minutes between passes here: only the wake-up that the
    # run sends gets the call out within the deadline below.
    server: ServerProcess = server_factory(env={**ENV,
                                                "SCHEDULER_ENGINE_MAX_SLEEP_SECONDS": "600"})
    session, jobs = create_collection(server, "Standard")
    assert session.put(f"{jobs}/now", json=http_job(target, "/now")).status_code == 201
    assert session.post(f"{jobs}/now/run").status_code == 202
    assert wait_for(lambda: "/now" in target.paths, 120)


def test_a_sequence_passes_outputs_on_pauses_on_failure_and_resumes(
    served: ServerProcess, target: HoldingTarget
) -> None:
    target.answers["/login"] = (200, b'{"token": "t-42"}')
    target.answers["/deploy/t-42"] = (503, b"busy")
    session, jobs = create_collection(served, "Standard")

    def call(path: str, body: str | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"uri": target.url(path), "method": "POST"}
        if body is not None:
            request["body"] = body
        return {"type": "http", "request": request}

    job = {"startTime": "2099-01-01T00:00:00Z", "parameters": {"app": "shop"},
           "action": {"type": "sequence", "steps": [
               {"name": "login", "action": call("/login", "{{parameters.app}}")},
               {"name": "deploy", "pauseOnFailure": True,
                "retryPolicy": {"retryType": "fixed", "retryInterval": "PT1S",
                                "retryCount": 1},
                "action": call("/deploy/{{steps.login.output.json.token}}")},
               {"name": "report", "action": call(
                   "/report", "{{steps.deploy.output.statusCode}} {{steps.deploy.output.body}}")},
           ]}}
    assert session.put(f"{jobs}/release", json=job).status_code == 201
    started = session.post(f"{jobs}/release/run", json={"parameters": {"app": "cart"}})
    url = started.headers["Location"]
    assert wait_for(lambda: execution(session, url)[0]["status"] == "paused", 60)
    document, etag = execution(session, url)
    assert [(s["name"], s["status"], s["tries"]) for s in document["steps"]] == [
        ("login", "completed", 1), ("deploy", "paused", 2)]
    assert document["steps"][0]["input"]["body"] == "cart"
    paused = session.get(f"{jobs}/release/executions", params={"$filter": "status eq 'paused'"})
    assert [e["id"] for e in paused.json()] == [document["id"]]

    target.answers["/deploy/t-42"] = (200, b"deployed")
    assert session.post(f"{url}/resume", headers={"If-Match": etag}).status_code == 202
    assert wait_for(lambda: execution(session, url)[0]["status"] == "completed", 60)
    document, _ = execution(session, url)
    assert [s["status"] for s in document["steps"]] == ["completed"] * 3
    assert target.paths == ["/login", "/deploy/t-42", "/deploy/t-42", "/deploy/t-42",
                            "/report"]
    assert target.bodies[-1] == b"200 deployed"
    assert document["outputParameters"]["statusCode"] == 200
