"""`scheduler channels ...`, run as the real binary against a real `scheduler serve`: a
collection's notification channels put from flags, read, listed, tested and deleted; secrets
never printed; what the service refuses is its message; flags that do not fit the type, and
a name that is not one, are refused before anything is sent."""

from __future__ import annotations

import json

import pytest

from tests.client.served import cli, cli_json, failed
from tests.engine.harness import Receiver

WHERE = ["--cloud-service", "notify", "--collection", "team"]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def collection(client_env: dict[str, str]) -> None:
    """Cloud service `notify` with job collection `team`."""
    made = cli(client_env, "collections", "create", "team", "--cloud-service", "notify")
    assert made.returncode == 0, made.stderr


@pytest.mark.usefixtures("collection")
def test_a_channel_is_put_read_listed_tested_and_deleted(client_env: dict[str, str],
                                                         receiver: Receiver) -> None:
    url = receiver.url("/hook")
    put = cli(client_env, "channels", "put", "Hook", "--type", "webhook", "--target", url,
              "--secret", SECRET, *WHERE)
    assert put.returncode == 0, put.stderr
    assert put.stdout.splitlines() == [
        "name:    Hook", "type:    webhook", f"url:     {url}", "secret:  <redacted>"]
    slack = cli_json(client_env, "channels", "put", "team-chat", "--type", "slack",
                     "--target", receiver.url("/services/T/B/x"), *WHERE)
    assert slack["url"] == f"<redacted: {receiver.url('')}/…>"

    assert cli_json(client_env, "channels", "get", "HOOK", *WHERE) == {
        "name": "Hook", "type": "webhook", "url": url, "secret": "<redacted>"}
    table = cli(client_env, "channels", "list", *WHERE)
    assert table.returncode == 0, table.stderr
    assert SECRET not in table.stdout and "/services/" not in table.stdout
    assert [line.split() for line in table.stdout.splitlines()] == [
        ["NAME", "TYPE", "TO"], ["Hook", "webhook", url, "(signed)"],
        ["team-chat", "slack", "<redacted:", f"{receiver.url('')}/…>"]]

    tested = cli(client_env, "channels", "test", "hook", *WHERE)
    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.strip() == "Delivered a test message to hook."
    assert json.loads(receiver.requests[0].body)["type"] == "test"
    assert receiver.requests[0].header("webhook-signature").startswith("v1,")

    deleted = cli(client_env, "channels", "delete", "hook", *WHERE)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == "Deleted notification channel hook."
    assert "The notification channel hook does not exist" in failed(
        cli(client_env, "channels", "get", "hook", *WHERE), 1)


@pytest.mark.usefixtures("collection")
def test_a_test_message_not_delivered_fails_saying_why(client_env: dict[str, str],
                                                       receiver: Receiver) -> None:
    receiver.answers["/down"] = (503, {}, b"")
    put = cli(client_env, "channels", "put", "down", "--type", "slack", "--target",
              receiver.url("/down"), *WHERE)
    assert put.returncode == 0, put.stderr
    message = failed(cli(client_env, "channels", "test", "down", *WHERE), 1)
    assert "The test message to down was not delivered: the target answered 503" in message
    as_json = cli(client_env, "channels", "test", "down", "--output", "json", *WHERE)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {
        "delivered": False, "error": "the target answered 503 Service Unavailable"}


@pytest.mark.usefixtures("collection")
def test_what_the_service_refuses_is_its_message(client_env: dict[str, str]) -> None:
    refused = cli(client_env, "channels", "put", "bad", "--type", "webhook", "--target",
                  "ftp://example.com/", *WHERE)
    assert "url: must be an absolute http or https URL" in failed(refused, 1)
    secret = cli(client_env, "channels", "put", "bad", "--type", "webhook", "--target",
                 "https://example.com/", "--secret", "hunter2", *WHERE)
    assert "secret: must be whsec_" in failed(secret, 1)
    assert "bad" not in [item["name"] for item in cli_json(client_env, "channels", "list",
                                                             *WHERE)]


@pytest.mark.parametrize(("flags", "message"), [
    (["--type", "email"], "an email channel needs --to ADDRESS"),
    (["--type", "slack"], "a slack channel needs --target URL"),
    (["--type", "slack", "--target", "https://example.com/", "--secret", SECRET],
     "--secret does not apply to a slack channel"),
    (["--type", "email", "--to", "a@example.com", "--target", "https://example.com/"],
     "--target does not apply to a email channel"),
    (["--type", "webhook", "--target", "https://example.com/", "--from", "a@example.com"],
     "--from does not apply to a webhook channel"),
])
def test_flags_that_do_not_fit_the_type_are_refused_before_sending(
        client_env: dict[str, str], flags: list[str], message: str) -> None:
    assert message in failed(cli(client_env, "channels", "put", "c", *flags, *WHERE), 2)


def test_a_name_that_is_not_one_is_refused_before_sending(client_env: dict[str, str]) -> None:
    for action in ("get", "delete", "test"):
        refused = cli(client_env, "channels", action, "a.b", *WHERE)
        assert "NAME: the channel name 'a.b' is not valid" in failed(refused, 2)
