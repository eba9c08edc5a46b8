"""The command-line client (`scheduler jobs ...`, `scheduler collections ...`), run as the real
binary against one real `scheduler serve`, configured as people configure it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler.security import pki
from tests.e2e.support import BIN, ServerProcess, free_port, wait_for
from tests.engine.harness import Receiver

WHERE = ["--cloud-service", "cli", "--collection", "jobs"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module, on a home `scheduler init` made for its port (so the
    profile init wrote names the right URL), allowed to call loopback receivers."""
    home = tmp_path_factory.mktemp("client") / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update({"SCHEDULER_SERVER_PORT": str(port),
                "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true"})
    made = subprocess.run([str(BIN), "init", "--home", str(home), "--json"], env=env,
                          capture_output=True, text=True, check=True)
    server = ServerProcess(home, json.loads(made.stdout), port, env)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client_env(served: ServerProcess, tmp_path_factory: pytest.TempPathFactory
               ) -> dict[str, str]:
    """The environment of a person's shell: SCHEDULER_HOME names the home, and the trust
    variables of other tools name a CA that did not sign the server (the client ignores them)."""
    other_ca = tmp_path_factory.mktemp("other") / "ca.pem"
    other_ca.write_bytes(pki.create_ca("someone else", datetime.now(UTC)).cert_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update({"SCHEDULER_HOME": str(served.home), "REQUESTS_CA_BUNDLE": str(other_ca),
                "SSL_CERT_FILE": str(other_ca), "CURL_CA_BUNDLE": str(other_ca)})
    return env


@pytest.fixture(scope="module")
def collection(client_env: dict[str, str]) -> None:
    """Cloud service `cli` with job collection `jobs`, made with the client itself."""
    made = cli(client_env, "collections", "create", "jobs", "--cloud-service", "cli")
    assert made.returncode == 0, made.stderr


def cli(env: dict[str, str], *args: str, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run `scheduler ARGS` as a person would."""
    return subprocess.run([str(BIN), *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=300)


def cli_json(env: dict[str, str], *args: str) -> Any:
    """Run a command with `--output json` and parse what it printed."""
    done = cli(env, *args, "--output", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def failed(done: subprocess.CompletedProcess[str], code: int) -> str:
    """Check a command failed with `code` and a message, not a traceback; the message."""
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.startswith("scheduler: ") and "Traceback" not in done.stderr
    return done.stderr


def job_document(receiver: Receiver, path: str) -> dict[str, Any]:
    """An hourly job, far in the future, that calls the receiver with a parameter."""
    return {
        "startTime": "2099-01-01T00:00:00Z",
        "action": {"type": "http", "request": {
            "method": "POST", "uri": receiver.url(path + "/{{parameters.who}}"),
            "body": "hello"}},
        "recurrence": {"frequency": "hour", "interval": 1},
        "parameters": {"who": "nobody"},
    }


# --- collections ---------------------------------------------------------------------------

def test_collections_are_created_with_their_cloud_service_listed_and_deleted(
        client_env: dict[str, str]) -> None:
    where = ["--cloud-service", "fresh"]
    made = cli(client_env, "collections", "create", "jc-a", "--plan", "Free", *where)
    assert made.returncode == 0, made.stderr
    assert "plan:            Free" in made.stdout
    table = cli(client_env, "collections", "list", *where).stdout.splitlines()
    assert table[0].split()[:4] == ["CLOUD", "SERVICE", "NAME", "PLAN"]
    assert table[1].split()[:3] == ["fresh", "jc-a", "Free"]
    [found] = cli_json(client_env, "collections", "list", *where)
    assert (found["name"], found["plan"], found["maxJobCount"]) == ("jc-a", "Free", 5)
    again = cli(client_env, "collections", "create", "jc-a", *where)
    assert "already in use" in failed(again, 1)
    deleted = cli(client_env, "collections", "delete", "jc-a", *where)
    assert deleted.returncode == 0, deleted.stderr
    assert cli_json(client_env, "collections", "list", *where) == []


def test_a_collection_is_suspended_and_resumed_keeping_its_plan_and_limits(
        client_env: dict[str, str]) -> None:
    where = ["--cloud-service", "pausing"]
    made = cli(client_env, "collections", "create", "jc-s", "--plan", "Free", *where)
    assert made.returncode == 0, made.stderr
    suspended = cli(client_env, "collections", "suspend", "jc-s", *where)
    assert suspended.returncode == 0, suspended.stderr
    assert "state:           Suspended" in suspended.stdout
    [found] = cli_json(client_env, "collections", "list", *where)
    assert (found["state"], found["plan"], found["maxJobCount"]) == ("Suspended", "Free", 5)
    assert found["maxRecurrence"] == {"frequency": "Hour", "interval": 1}
    resumed = cli_json(client_env, "collections", "resume", "jc-s", *where)
    assert (resumed["state"], resumed["plan"]) == ("Started", "Free")
    missing = cli(client_env, "collections", "suspend", "nope", *where)
    assert "nope" in failed(missing, 1)


# --- jobs ----------------------------------------------------------------------------------

@pytest.mark.usefixtures("collection")
def test_a_job_is_created_changed_run_and_deleted(client_env: dict[str, str],
                                                  receiver: Receiver,
                                                  tmp_path: Path) -> None:
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job_document(receiver, "/life")))
    made = cli(client_env, "jobs", "create", "life", "--file", str(job_file), *WHERE)
    assert made.returncode == 0, made.stderr
    assert "recurrence:    every 1 hour" in made.stdout
    again = cli(client_env, "jobs", "create", "life", "--file", str(job_file), *WHERE)
    assert "(HTTP 412, PreconditionFailed)" in failed(again, 1)

    row = next(line for line in cli(client_env, "jobs", "list", *WHERE).stdout.splitlines()
               if line.startswith("life "))
    assert row.split()[:6] == ["life", "enabled", "http", "every", "1", "hour"]
    assert "2099-01-01T00:00:00Z" in row
    assert "life" in [job["id"] for job in cli_json(client_env, "jobs", "list", *WHERE)]

    updated = cli(client_env, "jobs", "update", "life", "--file", "-", *WHERE,
                  stdin='{"recurrence": {"frequency": "hour", "interval": 6}}')
    assert "every 6 hours" in updated.stdout, updated.stderr
    assert cli_json(client_env, "jobs", "occurrences", "life", "--top", "3", *WHERE) == [
        "2099-01-01T00:00:00Z", "2099-01-01T06:00:00Z", "2099-01-01T12:00:00Z"]

    assert cli_json(client_env, "jobs", "disable", "life", *WHERE)["state"] == "disabled"
    assert "state:         disabled" in cli(client_env, "jobs", "show", "life", *WHERE).stdout
    assert cli_json(client_env, "jobs", "enable", "life", *WHERE)["state"] == "enabled"

    execution = cli_json(client_env, "jobs", "run", "life", "--param", "who=cli", *WHERE)
    assert execution["jobId"] == "life" and execution["trigger"] == "manual"
    assert wait_for(lambda: any(r.path == "/life/cli" for r in receiver.requests), 60)
    call = next(r for r in receiver.requests if r.path == "/life/cli")
    assert call.headers["x-ms-scheduler-jobid"] == "life"
    assert call.headers["x-ms-execution-tag"] == execution["id"]
    assert wait_for(lambda: cli_json(client_env, "jobs", "history", "life", *WHERE), 60)
    [entry] = cli_json(client_env, "jobs", "history", "life", *WHERE)
    assert (entry["status"], entry["actionName"]) == ("completed", "MainAction")
    history = cli(client_env, "jobs", "history", "life", *WHERE).stdout.splitlines()
    assert history[0].split() == ["TIME", "STATUS", "ACTION", "RETRY", "MESSAGE"]
    assert history[1].split()[1:4] == ["completed", "MainAction", "0"]

    deleted = cli(client_env, "jobs", "delete", "life", *WHERE)
    assert deleted.returncode == 0, deleted.stderr
    assert "does not exist" in failed(cli(client_env, "jobs", "show", "life", *WHERE), 1)


@pytest.mark.usefixtures("collection")
def test_run_wait_prints_the_finished_execution(client_env: dict[str, str],
                                                receiver: Receiver) -> None:
    document = json.dumps(job_document(receiver, "/waited"))
    made = cli(client_env, "jobs", "create", "waited", "--file", "-", *WHERE, stdin=document)
    assert made.returncode == 0, made.stderr
    done = cli(client_env, "jobs", "run", "waited", "--wait", *WHERE)
    assert done.returncode == 0, done.stderr
    assert "status:     completed" in done.stdout and "answer:     200" in done.stdout
    assert any(r.path == "/waited/nobody" for r in receiver.requests)


# --- where the settings come from ----------------------------------------------------------

@pytest.mark.usefixtures("collection")
def test_the_profile_init_wrote_is_used_with_no_flags(served: ServerProcess,
                                                      client_env: dict[str, str]) -> None:
    names = {(c["cloudService"], c["name"])
             for c in cli_json(client_env, "collections", "list")}
    assert ("cli", "jobs") in names
    bare = {k: v for k, v in client_env.items() if k != "SCHEDULER_HOME"}
    listed = cli(bare, "collections", "list", "--home", str(served.home))
    assert listed.returncode == 0 and "cli" in listed.stdout, listed.stderr


@pytest.mark.usefixtures("collection")
def test_variables_override_the_profile_and_flags_override_variables(
        served: ServerProcess, client_env: dict[str, str]) -> None:
    env = {**client_env, "SCHEDULER_CLIENT_URL": f"https://127.0.0.1:{free_port()}",
           "SCHEDULER_CLIENT_CLOUD_SERVICE": "cli", "SCHEDULER_CLIENT_COLLECTION": "jobs"}
    assert "Connection refused" in failed(cli(env, "jobs", "list"), 1)
    listed = cli(env, "jobs", "list", "--url", served.base_url)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("ID ")


# --- failures ------------------------------------------------------------------------------

@pytest.mark.usefixtures("collection")
def test_an_unknown_job_fails_with_the_services_message(client_env: dict[str, str]) -> None:
    message = failed(cli(client_env, "jobs", "show", "nope", *WHERE), 1)
    assert message.strip() == ("scheduler: The job nope does not exist. "
                               "(HTTP 404, ResourceNotFound)")


def test_a_job_file_that_is_not_json_is_named(client_env: dict[str, str],
                                             tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    message = failed(cli(client_env, "jobs", "create", "x", "--file", str(bad), *WHERE), 2)
    assert f"{bad}: not valid JSON" in message


def test_no_url_configured_names_the_flag_and_the_variable(
        client_env: dict[str, str]) -> None:
    bare = {k: v for k, v in client_env.items() if k != "SCHEDULER_HOME"}
    message = failed(cli(bare, "jobs", "list", *WHERE), 2)
    assert "--url" in message and "SCHEDULER_CLIENT_URL" in message


def test_an_unregistered_certificate_gets_the_403_message(served: ServerProcess,
                                                          client_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.pem"
    issued = cli(client_env, "cert", "issue", "--home", str(served.home), "--name", "stranger",
                 "--out", str(stranger))
    assert issued.returncode == 0, issued.stderr
    message = failed(cli(client_env, "collections", "list", "--cert", str(stranger)), 1)
    assert "failed to authenticate" in message and "(HTTP 403, ForbiddenError)" in message
