"""The engine as a real process: fires a job over the network, stops cleanly, one per SQLite."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.conftest import BIN, ServerProcess
from tests.engine.conftest import Receiver, receiver  # noqa: F401 - the fixture

CLOUD_SERVICE = ('<CloudService xmlns="http://schemas.microsoft.com/windowsazure"><Label>l</Label>'
                 "<Description>d</Description><GeoRegion>West Europe</GeoRegion></CloudService>")
COLLECTION = ('<Resource xmlns="http://schemas.microsoft.com/windowsazure"><IntrinsicSettings>'
              "<Plan>Standard</Plan></IntrinsicSettings></Resource>")


def _wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_serve_fires_a_job_at_its_time_and_stops_cleanly(
    server_factory: Any, receiver: Receiver  # noqa: F811
) -> None:
    server: ServerProcess = server_factory(
        env={"SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true"})
    session = server.session()
    base = f"{server.base_url}/{server.subscription_id}/cloudservices/cs1"
    assert session.put(base, data=CLOUD_SERVICE).status_code == 202
    assert session.put(f"{base}/resources/scheduler/jobcollections/jc1",
                       data=COLLECTION).status_code == 202
    due = datetime.now(UTC) + timedelta(seconds=2)
    job = {"startTime": due.isoformat(), "action": {"type": "http", "request": {
        "uri": receiver.url("/fired"), "method": "POST", "body": "now"}}}
    created = session.put(f"{base}/resources/scheduler/~/jobcollections/jc1/jobs/soon",
                          json=job)
    assert created.status_code == 201, created.text
    assert _wait_for(lambda: receiver.requests, 15), "the job did not fire"
    fired_at = datetime.now(UTC)
    assert fired_at >= due
    assert fired_at - due < timedelta(seconds=5)
    [request] = receiver.requests
    assert request.body == b"now" and request.headers["x-ms-scheduler-jobid"] == "soon"
    assert server.stop() == 0


def test_a_second_engine_on_one_sqlite_home_waits(server_factory: Any) -> None:
    server: ServerProcess = server_factory(start=False)
    command = [str(BIN), "serve", "--home", str(server.home), "--role", "engine"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=server.env)
    assert first.stdout is not None
    assert "scheduler ready" in first.stdout.readline()
    second = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=server.env)
    try:
        assert second.stdout is not None
        assert "waiting" in second.stdout.readline()
        first.terminate()
        assert first.wait(30) == 0
        assert "scheduler ready" in second.stdout.readline()
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(30)
