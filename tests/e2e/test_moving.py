"""Moving a running home to another database with the real binary: `scheduler export`, a new
home on PostgreSQL, `scheduler import`, `scheduler serve`, then back to SQLite. The legacy
Azure client and the command-line client keep working with the first home's certificate and
CA, a job's secret authenticates at its target, and nothing fires twice."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicemanagement import SchedulerManagementService

from tests.e2e.support import BIN, ServerProcess, create_collection, free_port, wait_for
from tests.engine.harness import Receiver

PASSPHRASE = "moving day"
AUTH = ("mover", "pa55-word")
SECONDS = 20  # the longest any condition below is waited for, on a busy machine


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """The test's servers, stopped when it ends."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def serve_new_home(home: Path, servers: list[ServerProcess], database_url: str | None = None,
                   importing: Path | None = None) -> ServerProcess:
    """`scheduler init` a home (on `database_url`, or SQLite), import a file into it if
    given, and serve it; jobs may fire every second and call loopback."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update({"SCHEDULER_SERVER_PORT": str(port),
                "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
                "SCHEDULER_PLANS_STANDARD_MAX_RECURRENCE": "PT1S"})
    init = [str(BIN), "init", "--home", str(home), "--json"]
    if database_url is not None:
        init += ["--database-url", database_url]
    made = subprocess.run(init, env=env, capture_output=True, text=True, check=True)
    if importing is not None:
        done = scheduler(env, "import", "--home", str(home), str(importing),
                         "--passphrase-file", str(passphrase_file(home.parent)))
        assert done.returncode == 0, done.stderr
    server = ServerProcess(home, json.loads(made.stdout), port, env)
    servers.append(server)
    server.start()
    return server


def scheduler(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `scheduler` binary."""
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def passphrase_file(directory: Path) -> Path:
    """The passphrase file the test exports and imports with."""
    path = directory / "passphrase.txt"
    path.write_text(PASSPHRASE + "\n")
    return path


def export(server: ServerProcess, name: str) -> Path:
    """Export a stopped server's home, with its history, into a file."""
    done = scheduler(server.env, "export", "--home", str(server.home), "--history",
                     "--passphrase-file", str(passphrase_file(server.home.parent)))
    assert done.returncode == 0, done.stderr
    path = server.home.parent / name
    path.write_text(done.stdout)
    return path


def jobs_of(receiver: Receiver) -> dict[str, dict[str, Any]]:
    """A one-shot job due in a second, a job every second whose calls say their scheduled
    time, and one every second that authenticates with Basic credentials."""
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()

    def call(path: str) -> dict[str, Any]:
        return {"type": "http", "request": {"uri": receiver.url(path), "method": "POST",
                                            "body": "{{execution.scheduledTime}}"}}
    authenticated = call("/auth")
    authenticated["request"]["authentication"] = {"type": "Basic", "username": AUTH[0],
                                                  "password": AUTH[1]}
    every_second = {"frequency": "second", "interval": 1}
    return {"once": {"startTime": soon, "action": call("/once")},
            "tick": {"startTime": soon, "action": call("/tick"), "recurrence": every_second},
            "auth": {"startTime": soon, "action": authenticated,
                     "recurrence": every_second}}


def calls(receiver: Receiver, path: str) -> list[str]:
    """The scheduled times the receiver was called with on `path`, in order."""
    return [request.body.decode() for request in receiver.requests if request.path == path]


def legacy_client(server: ServerProcess, first: ServerProcess,
                  monkeypatch: pytest.MonkeyPatch) -> SchedulerManagementService:
    """The legacy Azure client pointed at `server` with the first home's admin certificate,
    trusting the first home's CA."""
    ca = str(first.info["caCert"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    monkeypatch.setenv("SSL_CERT_FILE", ca)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return SchedulerManagementService(subscription_id=first.subscription_id,
                                      cert_file=str(first.info["clientCert"]),
                                      host=f"127.0.0.1:{server.port}")


def cli_jobs(server: ServerProcess, first: ServerProcess) -> list[str]:
    """The job ids the command-line client lists on `server`, given the first home's
    certificate, CA and subscription."""
    done = scheduler(server.env, "jobs", "list", "--url", server.base_url,
                     "--cert", str(first.info["clientCert"]), "--ca", str(first.info["caCert"]),
                     "--subscription", first.subscription_id, "--cloud-service", "cs1",
                     "--collection", "jc1", "--output", "json")
    assert done.returncode == 0, done.stderr
    return sorted(job["id"] for job in json.loads(done.stdout))


def test_a_home_moves_to_postgresql_and_back_and_nothing_fires_twice(
        tmp_path: Path, servers: list[ServerProcess], receiver: Receiver,
        postgres_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    first = serve_new_home(tmp_path / "first", servers)
    session, jobs_url = create_collection(first, "Standard")
    for job_id, job in jobs_of(receiver).items():
        assert session.put(f"{jobs_url}/{job_id}", json=job).status_code == 201
    assert wait_for(lambda: calls(receiver, "/once") and len(calls(receiver, "/tick")) >= 2
                    and calls(receiver, "/auth"), SECONDS), receiver.requests

    refused = scheduler(first.env, "export", "--home", str(first.home), "--passphrase-file",
                        str(passphrase_file(tmp_path)))
    assert refused.returncode == 2 and refused.stdout == ""
    assert "an engine of the home" in refused.stderr

    homes = [(postgres_schema[1], "on-postgres"), (None, "back-on-sqlite")]
    server, expected = first, sorted(jobs_of(receiver))
    for database_url, name in homes:
        counted = tick_count(legacy_client(server, first, monkeypatch))
        server.stop()
        before = {path: len(calls(receiver, path)) for path in ("/once", "/tick", "/auth")}
        server = serve_new_home(tmp_path / name, servers, database_url,
                                export(server, f"{name}.json"))
        sms = legacy_client(server, first, monkeypatch)
        assert sorted(job["id"] for job in sms.get_all_jobs("cs1", "jc1")) == expected
        assert cli_jobs(server, first) == expected
        assert wait_for(lambda seen=before: len(calls(receiver, "/tick")) >= seen["/tick"] + 2
                        and len(calls(receiver, "/auth")) >= seen["/auth"] + 1, SECONDS)
        # The count goes on from where it was, by the occurrences fired since.
        fired_since = len(calls(receiver, "/tick")) - before["/tick"]
        assert tick_count(sms) >= counted + fired_since

    ticks = calls(receiver, "/tick")
    assert calls(receiver, "/once") == calls(receiver, "/once")[:1], "the one-shot ran again"
    assert len(set(ticks)) == len(ticks), "an occurrence fired twice"
    assert ticks == sorted(ticks)
    expected_auth = "Basic " + base64.b64encode(":".join(AUTH).encode()).decode()
    assert {request.header("authorization") for request in receiver.requests
            if request.path == "/auth"} == {expected_auth}


def tick_count(sms: SchedulerManagementService) -> int:
    """The tick job's execution count, as the legacy client reads it."""
    count: int = sms.get_job("cs1", "jc1", "tick")["status"]["executionCount"]
    return count
