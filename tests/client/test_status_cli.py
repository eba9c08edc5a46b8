"""`scheduler status`, run as the real binary against real `scheduler serve` processes: jobs
made to fail, fault, pause and be late for real, and a subscription with nothing wrong."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.served import cli, cli_json, failed, person_env, start_server
from tests.e2e.support import ServerProcess, wait_for
from tests.engine.harness import Receiver

KEYS = {"kind", "since", "cloudService", "collection", "job", "execution", "message",
        "failures"}


def collection(env: dict[str, str], name: str, *flags: str) -> list[str]:
    """Make job collection NAME in cloud service `status`; the flags that name it."""
    made = cli(env, "collections", "create", name, "--cloud-service", "status", *flags)
    assert made.returncode == 0, made.stderr
    return ["--cloud-service", "status", "--collection", name, *flags]


def create_job(env: dict[str, str], where: list[str], job_id: str,
               document: dict[str, Any]) -> None:
    """Create a job from its document."""
    made = cli(env, "jobs", "create", job_id, "--file", "-", *where,
               stdin=json.dumps(document))
    assert made.returncode == 0, made.stderr


def calling(receiver: Receiver, path: str, **extra: Any) -> dict[str, Any]:
    """A job that POSTs to the receiver, not retried; hourly from 2099 unless `extra` says."""
    return {"startTime": "2099-01-01T00:00:00Z", "recurrence": {"frequency": "hour"},
            "action": {"type": "http", "request": {"method": "POST", "uri": receiver.url(path)},
                       "retryPolicy": {"retryType": "none"}}, **extra}


def status(env: dict[str, str], *flags: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """`status` as a table and as JSON: the table's run, and the problems."""
    table = cli(env, "status", *flags)
    as_json = cli(env, "status", *flags, "--output", "json")
    assert as_json.returncode == table.returncode, (table.stderr, as_json.stderr)
    return table, json.loads(as_json.stdout)


def test_a_failing_job_is_listed_with_its_streak_until_it_completes(
        client_env: dict[str, str], receiver: Receiver) -> None:
    where = collection(client_env, "failing")
    receiver.answers["/flaky"] = (500, {}, b"down for maintenance")
    create_job(client_env, where, "flaky", calling(receiver, "/flaky"))
    runs = [cli(client_env, "jobs", "run", "flaky", "--wait", *where, "--output", "json")
            for _ in range(2)]
    for run in runs:
        assert "ended with status failed" in failed(run, 1)
    first, last = (json.loads(run.stdout) for run in runs)

    table, problems = status(client_env, *where)
    assert failed(table, 1).strip() == "scheduler: 1 job failing"
    assert table.stdout.splitlines()[0].split() == ["KIND", "SINCE", "WHERE", "MESSAGE"]
    row = table.stdout.splitlines()[1]
    assert row.split()[:3] == ["failing", first["endTime"], "status/failing/flaky"]
    assert "2 failures in a row; last: Http Action - Response from host" in row
    [problem] = problems
    assert set(problem) == KEYS
    assert (problem["kind"], problem["since"], problem["job"], problem["execution"],
            problem["failures"]) == ("failing", first["endTime"], "flaky", last["id"], 2)
    assert "500" in problem["message"] and "down for maintenance" in problem["message"]
    # The whole subscription: the same job among whatever else there is.
    everything = cli_json_failing(client_env)
    assert any(p["job"] == "flaky" and p["kind"] == "failing" for p in everything)

    receiver.answers["/flaky"] = (200, {}, b"back")
    assert cli(client_env, "jobs", "run", "flaky", "--wait", *where).returncode == 0
    table, problems = status(client_env, *where)
    assert (table.returncode, table.stdout.strip(), problems) == (
        0, "Nothing needs attention.", [])


def cli_json_failing(env: dict[str, str]) -> Any:
    """`status --output json` over the whole subscription, which has a failing job."""
    done = cli(env, "status", "--output", "json")
    failed(done, 1)
    return json.loads(done.stdout)


def test_a_faulted_job_is_listed_with_why(client_env: dict[str, str]) -> None:
    where = collection(client_env, "faulting")
    # Once, at once, to a port nobody listens on: its only execution fails, and it faults.
    create_job(client_env, where, "once", {"action": {
        "type": "http", "request": {"method": "GET", "uri": "http://127.0.0.1:9/nobody"},
        "retryPolicy": {"retryType": "none"}}})
    assert wait_for(lambda: cli_json(client_env, "jobs", "show", "once", *where)["state"]
                    == "faulted", 60)
    table, problems = status(client_env, *where)
    assert failed(table, 1).strip() == "scheduler: 1 job faulted"
    kind, _since, place, *_message = table.stdout.splitlines()[1].split()
    assert (kind, place) == ("faulted", "status/faulting/once")
    [problem] = problems
    assert (problem["kind"], problem["job"], problem["failures"]) == ("faulted", "once", 1)
    assert "Connect call failed" in problem["message"] or "refused" in problem["message"]
    [execution] = cli_json(client_env, "executions", "list", *where)
    assert (problem["execution"], problem["since"]) == (execution["id"], execution["endTime"])


def test_paused_runs_and_suspended_collections_are_listed_but_do_not_fail(
        client_env: dict[str, str], receiver: Receiver) -> None:
    where = collection(client_env, "pausing")
    steps = [{"name": "prepare", "action": {"type": "http", "request": {
                 "method": "POST", "uri": receiver.url("/prepare")}}},
             {"name": "deploy", "manual": True, "action": {"type": "http", "request": {
                 "method": "POST", "uri": receiver.url("/deploy")}}}]
    create_job(client_env, where, "release", {"startTime": "2099-01-01T00:00:00Z",
                                              "action": {"type": "sequence", "steps": steps}})
    paused = cli(client_env, "jobs", "run", "release", "--wait", *where, "--output", "json")
    failed(paused, 1)
    execution = json.loads(paused.stdout)["id"]
    suspended = cli(client_env, "collections", "suspend", "pausing", "--cloud-service",
                    "status")
    assert suspended.returncode == 0, suspended.stderr

    table, problems = status(client_env, *where)
    assert table.returncode == 0, table.stderr
    kinds = [line.split()[0] for line in table.stdout.splitlines()[1:]]
    assert kinds == ["paused", "suspended"]  # the one without a time last
    assert f"execution {execution}: manual step deploy waits for approval" in table.stdout
    by_kind = {p["kind"]: p for p in problems}
    assert (by_kind["paused"]["job"], by_kind["paused"]["execution"]) == ("release", execution)
    assert by_kind["suspended"] == {
        "kind": "suspended", "since": None, "cloudService": "status", "collection": "pausing",
        "job": None, "execution": None, "failures": None,
        "message": "the collection is suspended: none of its jobs fires"}


def test_a_healthy_subscription_needs_no_attention(
        served: ServerProcess, client_env: dict[str, str], receiver: Receiver,
        tmp_path: Path) -> None:
    home = ["--home", str(served.home)]
    made = cli(client_env, "subscription", "create", *home, "--name", "healthy")
    assert made.returncode == 0, made.stderr
    subscription = made.stdout.split()[-1]
    cert = tmp_path / "healthy.pem"
    issued = cli(client_env, "cert", "issue", *home, "--name", "healthy", "--out", str(cert),
                 "--subscription", subscription)
    assert issued.returncode == 0, issued.stderr
    flags = ["--subscription", subscription, "--cert", str(cert)]
    empty, problems = status(client_env, *flags)
    assert (empty.returncode, empty.stdout, problems) == (0, "Nothing needs attention.\n", [])

    where = collection(client_env, "fine", *flags)
    receiver.answers["/recovers"] = (503, {}, b"")
    create_job(client_env, where, "recovers", calling(receiver, "/recovers"))
    assert cli(client_env, "jobs", "run", "recovers", "--wait", *where).returncode == 1
    receiver.answers["/recovers"] = (200, {}, b"ok")
    assert cli(client_env, "jobs", "run", "recovers", "--wait", *where).returncode == 0
    create_job(client_env, where, "fine", calling(receiver, "/fine"))
    assert cli(client_env, "jobs", "run", "fine", "--wait", *where).returncode == 0
    healthy, problems = status(client_env, *flags)
    assert (healthy.returncode, healthy.stdout, problems) == (
        0, "Nothing needs attention.\n", [])


# --- late: a service whose engine does not run -------------------------------------------

@pytest.fixture(scope="module")
def engineless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A person's shell set up for a service that runs its API but no engine: its jobs
    never fire."""
    server = start_server(tmp_path_factory.mktemp("engineless") / "home", role="api")
    yield person_env(server.home, tmp_path_factory.mktemp("other") / "ca.pem")
    server.stop()


def test_a_job_that_has_not_fired_when_due_is_late(engineless: dict[str, str]) -> None:
    where = collection(engineless, "slow")
    create_job(engineless, where, "due", {"action": {
        "type": "http", "request": {"method": "GET", "uri": "http://127.0.0.1:9/never"}}})
    due = cli_json(engineless, "jobs", "show", "due", *where)["status"]["nextExecutionTime"]
    patient, problems = status(engineless, "--late-after", "86400")
    assert (patient.returncode, problems) == (0, [])

    def late() -> list[Any]:
        return [p for p in cli_json(engineless, "status", "--late-after", "0")
                if p["kind"] == "late"]
    assert wait_for(late, 60)
    [problem] = late()
    assert (problem["since"], problem["job"], problem["collection"]) == (due, "due", "slow")
    table = cli(engineless, "status", "--late-after", "0")
    assert table.returncode == 0, table.stderr  # late is worth a look, not an alarm
    assert table.stdout.splitlines()[1].split()[:3] == ["late", due, "status/slow/due"]
    assert "ago and has not run" in table.stdout

    suspended = cli(engineless, "collections", "suspend", "slow", "--cloud-service", "status")
    assert suspended.returncode == 0, suspended.stderr
    assert [p["kind"] for p in cli_json(engineless, "status", "--late-after", "0")] == [
        "suspended"]


@pytest.mark.parametrize("value", ["-1", "soon", "1.5"])
def test_a_lateness_that_is_not_a_whole_number_of_seconds_is_refused(
        client_env: dict[str, str], value: str) -> None:
    done = cli(client_env, "status", "--late-after", value)
    assert done.returncode == 2 and "--late-after" in done.stderr
