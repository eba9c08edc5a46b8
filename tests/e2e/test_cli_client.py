"""The command-line client (`scheduler jobs ...`, `scheduler collections ...`), run as the real
binary against one real `scheduler serve`, configured as people configure it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.client.served import cli, cli_json, failed
from tests.e2e.support import ServerProcess, free_port, wait_for
from tests.engine.harness import Receiver

WHERE = ["--cloud-service", "cli", "--collection", "jobs"]


@pytest.fixture(scope="module")
def collection(client_env: dict[str, str]) -> None:
    """Cloud service `cli` with job collection `jobs`, made with the client itself."""
    made = cli(client_env, "collections", "create", "jobs", "--cloud-service", "cli")
    assert made.returncode == 0, made.stderr


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
    # EXECUTION (and STEP, for a sequence) come after RETRY when the service names them.
    assert history[0].split()[:4] == ["TIME", "STATUS", "ACTION", "RETRY"]
    assert history[0].split()[-1] == "MESSAGE"
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


# --- the client never widens what it touches ---------------------------------------------

HOSTILE_IDS = (".", "..", "a/b", "%2e")
ID_COMMANDS = (("delete",), ("disable",), ("enable",), ("update", "--file", "-"), ("show",),
               ("run",), ("history",))
GUARDED = ["--cloud-service", "cli", "--collection", "guarded"]


@pytest.fixture(scope="module")
def guarded(client_env: dict[str, str]) -> None:
    """Collection `guarded` of cloud service `cli`, holding two enabled jobs, `one` and
    `two`, that never fire."""
    made = cli(client_env, "collections", "create", "guarded", "--cloud-service", "cli")
    assert made.returncode == 0, made.stderr
    for job_id in ("one", "two"):
        document = json.dumps({"startTime": "2099-01-01T00:00:00Z", "action": {
            "type": "http", "request": {"method": "GET", "uri": "http://127.0.0.1:9/never"}}})
        made = cli(client_env, "jobs", "create", job_id, "--file", "-", *GUARDED,
                   stdin=document)
        assert made.returncode == 0, made.stderr


def guarded_jobs(served: ServerProcess) -> dict[str, str]:
    """The jobs of collection `guarded` by id, with their states, read over the API."""
    session = served.session()
    jobs = session.get(f"{served.base_url}/{served.subscription_id}/cloudservices/cli/"
                       "resources/scheduler/~/jobcollections/guarded/jobs",
                       params={"api-version": "2014-04-01"})
    assert jobs.status_code == 200, jobs.text
    return {job["id"]: job["state"] for job in jobs.json()}


@pytest.mark.usefixtures("guarded")
@pytest.mark.parametrize("job_id", HOSTILE_IDS)
@pytest.mark.parametrize("command", ID_COMMANDS)
def test_a_job_id_that_names_another_resource_is_refused_and_nothing_changes(
        served: ServerProcess, client_env: dict[str, str], command: tuple[str, ...],
        job_id: str) -> None:
    done = cli(client_env, "jobs", command[0], job_id, *command[1:], *GUARDED,
               stdin='{"state": "disabled"}')
    assert failed(done, 2).startswith(f"scheduler: ID: the job id {job_id!r} is not valid")
    assert done.stdout == ""
    assert guarded_jobs(served) == {"one": "enabled", "two": "enabled"}


@pytest.mark.usefixtures("guarded")
@pytest.mark.parametrize("name", HOSTILE_IDS)
def test_a_collection_or_cloud_service_that_names_another_resource_is_refused(
        served: ServerProcess, client_env: dict[str, str], name: str) -> None:
    for command in (("collections", "delete", name, "--cloud-service", "cli"),
                    ("collections", "suspend", name, "--cloud-service", "cli"),
                    ("jobs", "delete", "one", "--cloud-service", "cli", "--collection", name),
                    ("jobs", "disable", "one", "--cloud-service", name,
                     "--collection", "guarded")):
        assert repr(name) in failed(cli(client_env, *command), 2)
    assert guarded_jobs(served) == {"one": "enabled", "two": "enabled"}
    [found] = [c for c in cli_json(client_env, "collections", "list", "--cloud-service", "cli")
               if c["name"] == "guarded"]
    assert found["state"] == "Started"


@pytest.mark.parametrize("url", ["mysql://u@127.0.0.1/db", "garbage",
                                 "postgresql+asyncpg://u@127.0.0.1/db"])
def test_a_database_url_that_cannot_be_used_is_a_message_not_a_traceback(
        served: ServerProcess, client_env: dict[str, str], tmp_path: Path, url: str) -> None:
    env = {**client_env, "SCHEDULER_DATABASE_URL": url}
    home = ["--home", str(served.home)]
    for command in (["serve", *home, "--port", str(free_port())], ["db", "upgrade", *home],
                    ["secrets", "rotate", *home],
                    ["subscription", "create", *home, "--name", "x"],
                    ["cert", "issue", *home, "--name", "x", "--out", str(tmp_path / "x.pem"),
                     "--subscription", served.subscription_id],
                    ["init", "--home", str(tmp_path / "new")]):
        message = failed(cli(env, *command), 2)
        assert "database.url" in message and "SCHEDULER_DATABASE_URL" in message, command
    assert not (tmp_path / "new").exists() and not (tmp_path / "x.pem").exists()


@pytest.mark.usefixtures("collection")
def test_run_wait_ends_when_the_run_pauses(client_env: dict[str, str],
                                           receiver: Receiver) -> None:
    steps = [{"name": "prepare", "action": {"type": "http", "request": {
                 "method": "POST", "uri": receiver.url("/prepare")}}},
             {"name": "deploy", "manual": True, "action": {"type": "http", "request": {
                 "method": "POST", "uri": receiver.url("/deploy")}}}]
    document = json.dumps({"startTime": "2099-01-01T00:00:00Z",
                           "action": {"type": "sequence", "steps": steps}})
    made = cli(client_env, "jobs", "create", "release", "--file", "-", *WHERE, stdin=document)
    assert made.returncode == 0, made.stderr
    # Waiting on a paused run used to go on for five minutes: far past this timeout.
    done = cli(client_env, "jobs", "run", "release", "--wait", *WHERE, timeout=90)
    assert "status:     paused" in done.stdout
    assert "step:       2 of 2: deploy (waiting)" in done.stdout
    assert "did not complete: it is paused at step deploy" in failed(done, 1)
    assert [r.path for r in receiver.requests] == ["/prepare"]


class PaintingTarget(BaseHTTPRequestHandler):
    """A target whose answers carry terminal escape sequences: in the reason phrase (which
    a history message shows first) and in the body."""

    def do_POST(self) -> None:
        """Answer 200 with a reason phrase and a body that would recolour a terminal."""
        body = "\x1b[31mred\u009b2J\x07".encode()
        self.send_response(200, "\x1b[31mRED\x1b[0m")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def painting_target() -> Iterator[str]:
    """The URL of a running PaintingTarget."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), PaintingTarget)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/paint"
    server.shutdown()
    server.server_close()


@pytest.mark.usefixtures("collection")
def test_a_targets_escape_sequences_are_shown_escaped(client_env: dict[str, str],
                                                      painting_target: str) -> None:
    document = json.dumps({"startTime": "2099-01-01T00:00:00Z", "action": {
        "type": "http", "request": {"method": "POST", "uri": painting_target}}})
    made = cli(client_env, "jobs", "create", "paint", "--file", "-", *WHERE, stdin=document)
    assert made.returncode == 0, made.stderr
    ran = cli(client_env, "jobs", "run", "paint", "--wait", *WHERE)
    assert ran.returncode == 0, ran.stderr
    history = cli(client_env, "jobs", "history", "paint", *WHERE)
    assert history.returncode == 0, history.stderr
    for shown in (ran.stdout, history.stdout):
        assert "'200 \\x1b[31mRED\\x1b[0m'" in shown
        assert not {"\x1b", "\x9b", "\x07"} & set(shown)
    as_json = cli(client_env, "jobs", "history", "paint", *WHERE, "--output", "json")
    assert not {"\x1b", "\x9b", "\x07"} & set(as_json.stdout)
    [entry] = json.loads(as_json.stdout)
    assert entry["message"].endswith("Body: \x1b[31mred\u009b2J\x07")
