"""`scheduler executions ...` and `scheduler collections run`, run as the real binary against
a real `scheduler serve`: listing, showing, canceling and resuming executions, inline runs."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.client.served import cli, cli_json, failed
from tests.e2e.support import wait_for
from tests.engine.harness import Receiver

WHERE = ["--cloud-service", "exec", "--collection", "runs"]


@pytest.fixture(scope="module")
def collection(client_env: dict[str, str]) -> None:
    """Cloud service `exec` with job collection `runs`."""
    made = cli(client_env, "collections", "create", "runs", "--cloud-service", "exec")
    assert made.returncode == 0, made.stderr


def http_action(receiver: Receiver, path: str) -> dict[str, Any]:
    """A POST to the receiver, not retried."""
    return {"type": "http", "request": {"method": "POST", "uri": receiver.url(path)},
            "retryPolicy": {"retryType": "none"}}


def create_job(env: dict[str, str], job_id: str, action: dict[str, Any]) -> None:
    """An hourly job that first fires in 2099: it runs only when run by hand."""
    document = json.dumps({"startTime": "2099-01-01T00:00:00Z", "action": action,
                           "recurrence": {"frequency": "hour", "interval": 1}})
    made = cli(env, "jobs", "create", job_id, "--file", "-", *WHERE, stdin=document)
    assert made.returncode == 0, made.stderr


def sequence(receiver: Receiver, name: str) -> dict[str, Any]:
    """Two steps: `prepare`, then `deploy`, which waits to be approved (resumed)."""
    return {"type": "sequence", "steps": [
        {"name": "prepare", "action": http_action(receiver, f"/{name}/prepare")},
        {"name": "deploy", "manual": True, "action": http_action(receiver, f"/{name}/deploy")}]}


def paused_run(env: dict[str, str], job_id: str) -> str:
    """Run the job and wait until its execution pauses; the execution's id."""
    started = cli_json(env, "jobs", "run", job_id, *WHERE)
    assert wait_for(lambda: cli_json(env, "executions", "show", started["id"], *WHERE)
                    ["status"] == "paused", 60)
    return str(started["id"])


@pytest.mark.usefixtures("collection")
def test_executions_are_listed_filtered_and_shown(client_env: dict[str, str],
                                                  receiver: Receiver) -> None:
    receiver.answers["/sour"] = (500, {}, b"no")
    create_job(client_env, "sweet", http_action(receiver, "/sweet"))
    create_job(client_env, "sour", http_action(receiver, "/sour"))
    good = cli_json(client_env, "jobs", "run", "sweet", "--wait", *WHERE)
    bad = cli(client_env, "jobs", "run", "sour", "--wait", *WHERE)
    assert "ended with status failed" in failed(bad, 1)

    table = cli(client_env, "executions", "list", "--top", "2", *WHERE)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "JOB", "TRIGGER", "STATUS", "SCHEDULED", "ENDED",
                                "ATTEMPTS", "STEP", "OR", "MESSAGE"]
    assert lines[2].split()[:4] == [good["id"], "sweet", "manual", "completed"]
    assert lines[1].split()[1:4] == ["sour", "manual", "failed"]

    mine = cli_json(client_env, "executions", "list", "--job", "sweet", *WHERE)
    assert [e["id"] for e in mine] == [good["id"]]
    [failure] = cli_json(client_env, "executions", "list", "--status", "failed", *WHERE)
    assert (failure["jobId"], failure["outputParameters"]["statusCode"]) == ("sour", 500)
    assert len(cli_json(client_env, "executions", "list", "--top", "1", *WHERE)) == 1

    shown = cli(client_env, "executions", "show", good["id"], *WHERE)
    assert shown.returncode == 0, shown.stderr
    assert f"execution:  {good['id']}" in shown.stdout and "answer:     200" in shown.stdout
    assert cli_json(client_env, "executions", "show", good["id"].upper(), "--job", "sweet",
                    *WHERE)["status"] == "completed"
    elsewhere = cli(client_env, "executions", "show", good["id"], "--job", "sour", *WHERE)
    assert "does not exist" in failed(elsewhere, 1)


@pytest.mark.usefixtures("collection")
def test_a_paused_sequence_is_resumed_and_another_canceled(client_env: dict[str, str],
                                                           receiver: Receiver) -> None:
    create_job(client_env, "release", sequence(receiver, "release"))
    waiting = paused_run(client_env, "release")
    listed = cli(client_env, "executions", "list", "--status", "paused", *WHERE)
    assert listed.stdout.splitlines()[1].endswith("2 of 2: deploy (waiting)")
    resumed = cli(client_env, "executions", "resume", waiting, "--wait", *WHERE)
    assert resumed.returncode == 0, resumed.stderr
    assert "status:     completed" in resumed.stdout
    assert resumed.stdout.splitlines()[-1].split()[:3] == ["2", "deploy", "completed"]
    assert "/release/deploy" in [r.path for r in receiver.requests]
    history = cli(client_env, "jobs", "history", "release", *WHERE).stdout.splitlines()
    assert history[0].split() == ["TIME", "STATUS", "ACTION", "RETRY", "EXECUTION", "STEP",
                                  "MESSAGE"]
    assert [line.split()[1:6] for line in history[1:]] == [
        ["completed", "MainAction", "0", waiting[-8:], step] for step in ("deploy", "prepare")]

    again = paused_run(client_env, "release")
    canceled = cli_json(client_env, "executions", "cancel", again, *WHERE)
    assert canceled["status"] == "canceled"
    twice = cli(client_env, "executions", "cancel", again, *WHERE)
    assert f"The execution {again} is canceled already. (HTTP 409, ConflictError)" in \
        failed(twice, 1)
    late = cli(client_env, "executions", "resume", again, *WHERE, "--output", "json")
    assert "only a paused execution can be resumed" in failed(late, 1)
    assert late.stdout == ""
    assert [r.path for r in receiver.requests].count("/release/deploy") == 1


@pytest.mark.usefixtures("collection")
def test_a_finished_execution_cannot_be_canceled(client_env: dict[str, str],
                                                 receiver: Receiver) -> None:
    create_job(client_env, "done", http_action(receiver, "/done"))
    finished = cli_json(client_env, "jobs", "run", "done", "--wait", *WHERE)
    refused = cli(client_env, "executions", "cancel", finished["id"], "--job", "done", *WHERE)
    assert "is completed already" in failed(refused, 1)
    assert cli_json(client_env, "executions", "show", finished["id"], *WHERE)["status"] == \
        "completed"


@pytest.mark.usefixtures("collection")
def test_a_definition_is_run_inline_and_waited_for(client_env: dict[str, str],
                                                   receiver: Receiver,
                                                   tmp_path: Path) -> None:
    receiver.answers["/inline/broken"] = (500, {}, b"no")
    definition = tmp_path / "inline.json"
    definition.write_text(json.dumps({"action": {
        "type": "http", "request": {"method": "POST",
                                    "uri": receiver.url("/inline/{{parameters.who}}")}},
        "parameters": {"who": "nobody"}}))
    ran = cli(client_env, "collections", "run", "runs", "--cloud-service", "exec",
              "--file", str(definition), "--param", "who=cli", "--wait")
    assert ran.returncode == 0, ran.stderr
    assert "job:        (inline)" in ran.stdout and "status:     completed" in ran.stdout
    assert "/inline/cli" in [r.path for r in receiver.requests]

    # The collection from --collection; the definition from standard input.
    run = cli(client_env, "collections", "run", "--file", "-", *WHERE, "--param",
              "who=broken", "--output", "json", stdin=definition.read_text())
    assert run.returncode == 0, run.stderr
    started = json.loads(run.stdout)
    assert started["parameters"] == {"who": "broken"}
    assert started["jobId"] is None and started["trigger"] == "manual"
    assert any(e["id"] == started["id"] and e["jobId"] is None
               for e in cli_json(client_env, "executions", "list", *WHERE))
    broken = cli(client_env, "collections", "run", "--file", "-", *WHERE, "--wait",
                 stdin=json.dumps({"action": http_action(receiver, "/inline/broken")}))
    assert "ended with status failed" in failed(broken, 1)
    assert "status:     failed" in broken.stdout


@pytest.mark.usefixtures("collection")
def test_a_definition_the_service_refuses_is_its_message(client_env: dict[str, str],
                                                         receiver: Receiver) -> None:
    document = json.dumps({"action": http_action(receiver, "/never"),
                           "recurrence": {"frequency": "hour"}})
    refused = cli(client_env, "collections", "run", "--file", "-", *WHERE, stdin=document)
    assert "recurrence: is not a known field (HTTP 400, BadRequest)" in failed(refused, 1)
    missing = cli(client_env, "collections", "run", "nope", "--cloud-service", "exec",
                  "--file", "-", stdin=json.dumps({"action": http_action(receiver, "/x")}))
    assert "(HTTP 404, ResourceNotFound)" in failed(missing, 1)
    assert "/never" not in [r.path for r in receiver.requests]


@pytest.mark.parametrize(("content", "expected"), [
    (None, "no such file"), ("{not json", "not valid JSON"),
    ("[1, 2]", "an inline run must be a JSON object")])
def test_an_inline_definition_that_cannot_be_read_is_named(
        client_env: dict[str, str], tmp_path: Path, content: str | None,
        expected: str) -> None:
    definition = tmp_path / "inline.json"
    if content is not None:
        definition.write_text(content)
    done = cli(client_env, "collections", "run", "--file", str(definition), *WHERE)
    assert f"{definition}: {expected}" in failed(done, 2)


@pytest.mark.parametrize("command", [["show"], ["cancel"], ["resume"]])
@pytest.mark.parametrize("execution_id", ["..", "a/b", "abc", "g" * 32, "%2e%2e"])
def test_an_execution_id_that_is_not_one_is_refused_before_anything_is_sent(
        client_env: dict[str, str], command: list[str], execution_id: str) -> None:
    done = cli(client_env, "executions", *command, execution_id, *WHERE)
    assert failed(done, 2).startswith(f"scheduler: EXECUTION_ID: the execution id "
                                      f"{execution_id!r} is not valid")
    assert "nothing was sent" in done.stderr


def test_a_job_that_is_not_one_is_refused_naming_the_flag(client_env: dict[str, str]) -> None:
    done = cli(client_env, "executions", "list", "--job", "..", *WHERE)
    assert failed(done, 2).startswith("scheduler: --job: the job id '..' is not valid")


def held_run(env: dict[str, str], receiver: Receiver, job_id: str) -> threading.Event:
    """Create a job that calls the receiver and run it, its call held open until the event
    returned is set; wait until the call has arrived."""
    path = f"/{job_id}"
    hold = receiver.holds[path] = threading.Event()
    create_job(env, job_id, http_action(receiver, path))
    cli_json(env, "jobs", "run", job_id, *WHERE)
    assert wait_for(lambda: path in [r.path for r in receiver.requests], 60)
    return hold


@pytest.mark.usefixtures("collection")
def test_a_run_by_hand_follows_the_overlap_policy_it_names(client_env: dict[str, str],
                                                           receiver: Receiver) -> None:
    hold = held_run(client_env, receiver, "busy")
    try:
        buffered = cli(client_env, "jobs", "run", "busy", "--overlap", "bufferone", *WHERE)
        assert buffered.returncode == 0, buffered.stderr
        assert "status:     waiting" in buffered.stdout
        skipped = cli_json(client_env, "jobs", "run", "busy", "--overlap", "skip", *WHERE)
        assert skipped["status"] == "skipped"
        assert "concurrencyPolicy skip" in skipped["message"]
        waiting = cli(client_env, "executions", "list", "--status", "waiting", *WHERE)
        assert [line.split()[1:4] for line in waiting.stdout.splitlines()[1:]] == [
            ["busy", "manual", "waiting"]]
    finally:
        hold.set()
    assert wait_for(lambda: [e["status"] for e in cli_json(
        client_env, "executions", "list", "--job", "busy", *WHERE)] == [
        "skipped", "completed", "completed"], 60)
    wrong = cli(client_env, "jobs", "run", "busy", "--overlap", "sometimes", *WHERE)
    assert "invalid choice: 'sometimes'" in wrong.stderr and wrong.returncode == 2


@pytest.mark.usefixtures("collection")
def test_a_backfill_runs_a_past_range_and_then_only_what_never_ran(
        client_env: dict[str, str], receiver: Receiver) -> None:
    # A job's occurrences begin when it is made: this one-time job's one occurrence is then,
    # and it fires at once; a backfill of the range that holds it runs it once more.
    document = json.dumps({"startTime": "2020-01-01T00:00:00Z",
                           "action": http_action(receiver, "/past")})
    made = cli(client_env, "jobs", "create", "past", "--file", "-", *WHERE, stdin=document)
    assert made.returncode == 0, made.stderr
    assert wait_for(lambda: [e["status"] for e in cli_json(
        client_env, "executions", "list", "--job", "past", *WHERE)] == ["completed"], 60)
    [fired] = cli_json(client_env, "executions", "list", "--job", "past", *WHERE)
    span = ["--start", "2020-01-01T00:00:00", "--end", datetime.now(UTC).isoformat()]
    done = cli(client_env, "jobs", "backfill", "past", *span, *WHERE)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "SCHEDULED", "STATUS"]
    assert lines[1].split()[1] == fired["scheduledTime"]
    assert lines[2] == "1 run made; left out: 0 that ran already, 0 excluded by a calendar"
    assert wait_for(lambda: sorted((e["trigger"], e["status"]) for e in cli_json(
        client_env, "executions", "list", "--job", "past", *WHERE)) == [
        ("backfill", "completed"), ("schedule", "completed")], 60)
    again = cli_json(client_env, "jobs", "backfill", "past", *span, "--only-missed",
                     "--overlap", "bufferAll", *WHERE)
    assert again == {"executions": [], "leftOut": {"ranAlready": 1, "excluded": 0}}
    ahead = cli(client_env, "jobs", "backfill", "past", "--start", "2020-01-01T00:00:00Z",
                "--end", "2999-01-01T00:00:00Z", *WHERE)
    assert "end: must not be after now" in failed(ahead, 1)
    assert len(cli_json(client_env, "executions", "list", "--job", "past", *WHERE)) == 2


@pytest.mark.usefixtures("collection")
def test_a_job_shows_the_scheduling_policies_it_sets(client_env: dict[str, str],
                                                     receiver: Receiver) -> None:
    calendar = cli(client_env, "calendars", "put", "holidays", "--file", "-", *WHERE,
                   stdin=json.dumps({"rules": ["FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=25"]}))
    assert calendar.returncode == 0, calendar.stderr
    action = http_action(receiver, "/policies")
    action["request"]["timeout"] = "PT45S"
    document = json.dumps({
        "action": action, "concurrencyPolicy": "bufferOne",
        "catchUp": {"policy": "all", "window": "P1D", "maxRuns": 10},
        "recurrence": {"cron": "0 9 * * MON-FRI", "jitter": "PT5M",
                       "excludeCalendars": ["holidays"]}})
    made = cli(client_env, "jobs", "create", "strict", "--file", "-", *WHERE, stdin=document)
    assert made.returncode == 0, made.stderr
    until = f"{datetime.now(UTC) + timedelta(days=30):%Y-%m-%dT%H:%M:00}Z"
    cli_json(client_env, "jobs", "disable", "strict", "--until", until, *WHERE)
    shown = cli(client_env, "jobs", "show", "strict", *WHERE)
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(":  ", 1) for line in shown.stdout.splitlines())
    assert {name: value.strip() for name, value in fields.items() if name in (
        "state", "recurrence", "concurrency", "catch-up", "excluded calendars", "timeout")} == {
        "state": f"disabled until {until}",
        "recurrence": "cron 0 9 * * MON-FRI; jitter PT5M", "concurrency": "bufferOne",
        "catch-up": "all; window P1D; at most 10 runs", "excluded calendars": "holidays",
        "timeout": "PT45S"}
    create_job(client_env, "plain", http_action(receiver, "/plain"))
    plain = cli(client_env, "jobs", "show", "plain", *WHERE)
    assert plain.returncode == 0, plain.stderr
    for name in ("concurrency", "catch-up", "excluded calendars", "timeout"):
        assert f"\n{name}:" not in plain.stdout
