"""`scheduler alerts ...`, run as the real binary against a real `scheduler serve` (API and
engine): a collection's default alert rules set from flags, read and deleted; a failing job's
alert sent by the engine to a real webhook and listed; flags that cannot make rules refused
before anything is sent."""

from __future__ import annotations

import json

import pytest

from tests.client.served import cli, cli_json, failed
from tests.e2e.support import wait_for
from tests.engine.harness import Receiver

WHERE = ["--cloud-service", "alerting", "--collection", "team"]


@pytest.fixture(scope="module")
def collection(client_env: dict[str, str]) -> None:
    """Cloud service `alerting` with job collection `team`."""
    made = cli(client_env, "collections", "create", "team", "--cloud-service", "alerting")
    assert made.returncode == 0, made.stderr


@pytest.fixture
def hook(client_env: dict[str, str], receiver: Receiver, collection: None) -> str:
    """A webhook channel `hook` posting to the receiver's `/alerts`."""
    put = cli(client_env, "channels", "put", "hook", "--type", "webhook", "--target",
              receiver.url("/alerts"), *WHERE)
    assert put.returncode == 0, put.stderr
    return "hook"


def test_default_rules_are_set_shown_and_deleted(client_env: dict[str, str],
                                                 hook: str) -> None:
    put = cli(client_env, "alerts", "set-rules", "--on", "failed", "--on", "recovered",
              "--channel", hook, "--after-consecutive", "3", "--realert", "PT1H", *WHERE)
    assert put.returncode == 0, put.stderr
    assert put.stdout.splitlines()[:3] == ["on:                failed, recovered",
                                           "channels:          hook",
                                           "afterConsecutive:  3"]
    assert cli_json(client_env, "alerts", "rules", *WHERE) == {
        "on": ["failed", "recovered"], "channels": ["hook"], "afterConsecutive": 3,
        "realert": "PT1H"}
    deleted = cli(client_env, "alerts", "delete-rules", *WHERE)
    assert deleted.returncode == 0, deleted.stderr
    assert "has no default alert rules" in failed(cli(client_env, "alerts", "rules", *WHERE), 1)


def test_flags_that_make_no_rules_are_refused_before_anything_is_sent(
    client_env: dict[str, str], collection: None,
) -> None:
    assert "--channel NAME; nothing was sent" in failed(
        cli(client_env, "alerts", "set-rules", "--on", "failed", *WHERE), 2)
    assert "is not valid" in failed(cli(client_env, "alerts", "set-rules", "--on", "failed",
                                        "--channel", "../x", *WHERE), 2)
    assert "--top must be from 1 to 1000" in failed(
        cli(client_env, "alerts", "list", "--top", "0", *WHERE), 2)
    refused = cli(client_env, "alerts", "set-rules", "--on", "late", "--channel", "nobody",
                  *WHERE)
    assert "lateBy: is required when on names late" in failed(refused, 1)


def test_a_failing_jobs_alert_reaches_the_webhook_and_is_listed(
    client_env: dict[str, str], receiver: Receiver, hook: str,
) -> None:
    receiver.answers["/broken"] = (500, {}, b"broken")
    document = json.dumps({
        "startTime": "2099-01-01T00:00:00Z", "recurrence": {"frequency": "hour"},
        "action": {"type": "http", "request": {"method": "POST",
                                               "uri": receiver.url("/broken")},
                   "retryPolicy": {"retryType": "none"}},
        "alerts": {"on": ["failed"], "channels": [hook]}})
    made = cli(client_env, "jobs", "create", "nightly", "--file", "-", *WHERE, stdin=document)
    assert made.returncode == 0, made.stderr
    assert "alerts:" in cli(client_env, "jobs", "show", "nightly", *WHERE).stdout
    assert cli(client_env, "jobs", "run", "nightly", *WHERE).returncode == 0
    assert wait_for(lambda: any(request.path == "/alerts" for request in receiver.requests),
                    60)
    alert = json.loads(next(r for r in receiver.requests if r.path == "/alerts").body)
    assert alert["type"] == "alert.failed" and alert["job"] == "nightly"
    assert wait_for(lambda: cli_json(client_env, "alerts", "list", "--job", "nightly",
                                     *WHERE)[0]["status"] == "sent", 60)
    table = cli(client_env, "alerts", "list", *WHERE)
    assert table.returncode == 0, table.stderr
    [header, row] = table.stdout.splitlines()
    assert header.split()[:5] == ["CREATED", "JOB", "EVENT", "STATUS", "CHANNELS"]
    assert row.split()[1:5] == ["nightly", "failed", "sent", "hook"]
