"""A served home as an operator watches it: one Prometheus scrape for the API workers and the
engine, and log lines in JSON that carry request, job and execution ids."""

from __future__ import annotations

import json
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from tests.e2e.support import BIN, ServerProcess, create_collection, free_port, wait_for
from tests.engine.harness import Receiver

JOB_ROUTE = "/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>/jobs/<job_id>"


def scrape(port: int) -> str:
    """The metrics page, over plain HTTP."""
    session = requests.Session()
    session.trust_env = False
    response = session.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def json_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """The server's log lines that are JSON objects."""
    found = []
    for line in list(server.output):
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict):
            found.append(document)
    return found


def job_to(url: str, due: datetime) -> dict[str, Any]:
    """A one-shot HTTP job."""
    return {"startTime": due.isoformat(), "action": {"type": "http", "request": {
        "uri": url, "method": "POST", "body": "now"}}}


def test_one_scrape_shows_the_api_and_the_engine_and_the_log_is_json(
    server_factory: Any, receiver: Receiver
) -> None:
    metrics_port = free_port()
    server: ServerProcess = server_factory(
        env={"SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
             "SCHEDULER_METRICS_PORT": str(metrics_port)},
        args=["--log-format", "json"])
    session, jobs = create_collection(server, "Standard")
    receiver.answers["/down"] = (500, {}, b"broken")
    due = datetime.now(UTC) + timedelta(seconds=1)
    created = session.put(f"{jobs}/fine", json=job_to(receiver.url("/fine"), due))
    assert created.status_code == 201, created.text
    assert session.put(f"{jobs}/failing", json=job_to(receiver.url("/down"), due)
                       ).status_code == 201
    assert wait_for(lambda: len(receiver.requests) == 2, 30), "the jobs did not fire"

    def attempts_counted() -> bool:
        page = scrape(metrics_port)
        return 'scheduler_engine_attempts_total{action_type="http",outcome="failed"} 1.0' \
            in page and \
            'scheduler_engine_attempts_total{action_type="http",outcome="succeeded"} 1.0' \
            in page
    assert wait_for(attempts_counted, 30), scrape(metrics_port)
    page = scrape(metrics_port)
    assert f'scheduler_api_requests_total{{method="PUT",route="{JOB_ROUTE}",status="201"}} ' \
        "2.0" in page
    assert f'scheduler_api_request_seconds_count{{method="PUT",route="{JOB_ROUTE}"}} 2.0' \
        in page
    assert "scheduler_engine_lateness_seconds_count 2.0" in page
    assert "scheduler_engine_tick_seconds_count" in page
    assert "scheduler_engine_lease_takeovers_total 0.0" in page

    def logged() -> bool:
        lines = json_lines(server)
        return any(line.get("request_id") == created.headers["x-ms-request-id"]
                   for line in lines) and \
            any(line.get("job_id") == "failing" for line in lines)
    assert wait_for(logged, 30), "".join(server.output[-20:])
    lines = json_lines(server)
    [access] = [line for line in lines
                if line.get("request_id") == created.headers["x-ms-request-id"]]
    assert access["logger"] == "scheduler.access" and access["status"] == 201
    assert access["route"] == JOB_ROUTE and access["subscription"] == server.subscription_id
    assert access["duration_ms"] > 0
    [failed] = [line for line in lines if line.get("job_id") == "failing"]
    assert failed["message"].startswith("attempt failed")
    [down] = [request for request in receiver.requests if request.path == "/down"]
    assert failed["execution_id"] == down.header("x-ms-execution-tag")
    assert server.stop() == 0


def test_a_metrics_port_in_use_is_named_and_nothing_is_served(server_factory: Any) -> None:
    server: ServerProcess = server_factory(start=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(BIN), "serve", "--home", str(server.home), "--port", str(server.port)],
            capture_output=True, text=True, timeout=60,
            env={**server.env, "SCHEDULER_METRICS_PORT": str(port)})
    assert result.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
