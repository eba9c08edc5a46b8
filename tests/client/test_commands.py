"""Client commands refuse, before they send anything, an id or name that would put another
resource in the URL's path; and a paused run is reported as not completed."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.cli import main
from scheduler.client.runner import run_failure

# Nothing listens there: a command that sent a request would fail with exit 1, not 2.
NOWHERE = "https://127.0.0.1:1"
HOSTILE = [".", "..", "a/b", "%2e", "", "a\x1b[31m"]
JOB_COMMANDS = [["show"], ["delete"], ["enable"], ["disable"], ["run"], ["history"],
                ["occurrences"], ["update", "--file", "-"], ["create", "--file", "-"],
                ["backfill", "--start", "2020-01-01T00:00:00Z", "--end", "2020-01-02T00:00:00Z"]]
COLLECTION_COMMANDS = [["delete"], ["suspend"], ["resume"], ["create"]]


@pytest.fixture
def connection(home: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Flags that reach nowhere with a real certificate, and no client variables set."""
    for name in ("SCHEDULER_HOME", "SCHEDULER_CLIENT_PROFILE", "SCHEDULER_CLIENT_URL",
                 "SCHEDULER_CLIENT_CLOUD_SERVICE", "SCHEDULER_CLIENT_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    return ["--url", NOWHERE, "--cert", home["clientCert"], "--ca", home["caCert"],
            "--subscription", home["subscriptionId"]]


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the command; check it failed with exit 2 before connecting; its message."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("scheduler: ") and "cannot reach" not in err
    assert "\x1b" not in err
    return err


@pytest.mark.parametrize("job_id", HOSTILE)
@pytest.mark.parametrize("command", JOB_COMMANDS)
def test_a_job_id_that_is_not_one_is_refused_before_anything_is_sent(
        connection: list[str], capsys: pytest.CaptureFixture[str], command: list[str],
        job_id: str) -> None:
    argv = ["jobs", command[0], job_id, *command[1:], *connection,
            "--cloud-service", "cs", "--collection", "jc"]
    assert refused(capsys, argv).startswith(f"scheduler: ID: the job id {job_id!r}")


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("command", COLLECTION_COMMANDS)
def test_a_collection_name_that_is_not_one_is_refused_before_anything_is_sent(
        connection: list[str], capsys: pytest.CaptureFixture[str], command: list[str],
        name: str) -> None:
    argv = ["collections", *command, name, *connection, "--cloud-service", "cs"]
    assert refused(capsys, argv).startswith(f"scheduler: NAME: the job collection name "
                                            f"{name!r}")


@pytest.mark.parametrize(("flag", "what"), [("--cloud-service", "cloud service name"),
                                            ("--collection", "job collection name")])
def test_a_place_that_is_not_a_name_is_refused_naming_its_flag(
        connection: list[str], capsys: pytest.CaptureFixture[str], flag: str,
        what: str) -> None:
    where = {"--cloud-service": "cs", "--collection": "jc", flag: ".."}
    argv = ["jobs", "list", *connection, *(part for pair in where.items() for part in pair)]
    assert refused(capsys, argv).startswith(f"scheduler: {flag}: the {what} '..'")


def test_a_place_from_a_variable_is_refused_naming_the_variable(
        connection: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_CLIENT_COLLECTION", "a/b")
    argv = ["jobs", "list", *connection, "--cloud-service", "cs"]
    assert refused(capsys, argv).startswith("scheduler: SCHEDULER_CLIENT_COLLECTION: the job "
                                            "collection name 'a/b'")


@pytest.mark.parametrize("url", ["https://[::1", "https://h:port", "https://h\n", "https://",
                                 "https://h/?x=1"])
def test_a_service_url_that_cannot_be_used_is_named(
        connection: list[str], capsys: pytest.CaptureFixture[str], url: str) -> None:
    argv = ["collections", "list", *connection, "--url", url]
    assert refused(capsys, argv).startswith("scheduler: --url: the service URL")


def test_a_paused_run_did_not_complete() -> None:
    execution = {"id": "e1", "status": "paused", "steps": [
        {"name": "prepare", "status": "completed"}, {"name": "deploy", "status": "waiting"}]}
    failure = run_failure(execution)
    assert failure is not None
    assert failure.startswith("execution e1 did not complete: it is paused at step deploy")
    assert run_failure({"id": "e1", "status": "completed"}) is None
