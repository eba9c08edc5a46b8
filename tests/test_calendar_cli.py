"""`scheduler calendars ...`, run as the real binary against a real `scheduler serve`: a
collection's exclusion calendars put from a file and from standard input, read, listed and
deleted; what the service refuses is its message, a name that is not one is refused before
anything is sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.client.served import cli, cli_json, failed

WHERE = ["--cloud-service", "cal", "--collection", "days"]
HOLIDAYS = {"timeZone": "Europe/Berlin", "description": "German public holidays",
            "dates": ["2026-12-26", "2026-12-25"],
            "rules": ["FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1",
                      "DTSTART;VALUE=DATE:20260101\nFREQ=YEARLY;BYEASTER=1"]}


@pytest.fixture(scope="module")
def collection(client_env: dict[str, str]) -> None:
    """Cloud service `cal` with job collection `days`."""
    made = cli(client_env, "collections", "create", "days", "--cloud-service", "cal")
    assert made.returncode == 0, made.stderr


@pytest.mark.usefixtures("collection")
def test_a_calendar_is_put_read_listed_and_deleted(client_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    document = tmp_path / "holidays.json"
    document.write_text(json.dumps(HOLIDAYS))
    put = cli(client_env, "calendars", "put", "Holidays", "--file", str(document), *WHERE)
    assert put.returncode == 0, put.stderr
    assert put.stdout.splitlines() == [
        "name:         Holidays",
        "time zone:    Europe/Berlin",
        "description:  German public holidays",
        "dates:        2026-12-25,2026-12-26",
        "rules:        FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1,"
        "DTSTART;VALUE=DATE:20260101 / FREQ=YEARLY;BYEASTER=1",
    ]
    made = cli(client_env, "calendars", "put", "weekends", "-f", "-", "--output", "json",
               *WHERE, stdin=json.dumps({"rules": ["FREQ=WEEKLY;BYDAY=SA,SU"]}))
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == {"name": "weekends", "timeZone": "UTC", "dates": [],
                                       "rules": ["FREQ=WEEKLY;BYDAY=SA,SU"]}

    shown = cli_json(client_env, "calendars", "get", "HOLIDAYS", *WHERE)
    assert shown == {"name": "Holidays", **HOLIDAYS, "dates": ["2026-12-25", "2026-12-26"]}
    table = cli(client_env, "calendars", "list", *WHERE)
    assert table.returncode == 0, table.stderr
    assert [line.split() for line in table.stdout.splitlines()] == [
        ["NAME", "TIME", "ZONE", "DATES", "RULES", "DESCRIPTION"],
        ["Holidays", "Europe/Berlin", "2", "2", "German", "public", "holidays"],
        ["weekends", "UTC", "0", "1", "-"]]
    assert [item["name"] for item in cli_json(client_env, "calendars", "list", *WHERE)] == [
        "Holidays", "weekends"]

    deleted = cli(client_env, "calendars", "delete", "holidays", *WHERE)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == "Deleted calendar holidays."
    assert "The calendar holidays does not exist" in failed(
        cli(client_env, "calendars", "get", "holidays", *WHERE), 1)
    assert [item["name"] for item in cli_json(client_env, "calendars", "list", *WHERE)] == [
        "weekends"]


@pytest.mark.usefixtures("collection")
def test_a_calendar_the_service_refuses_is_its_message(client_env: dict[str, str]) -> None:
    refused = cli(client_env, "calendars", "put", "hours", "--file", "-", *WHERE,
                  stdin=json.dumps({"rules": ["FREQ=WEEKLY", "FREQ=DAILY;BYHOUR=9"]}))
    assert "rules[1]: is not day-based" in failed(refused, 1)
    unreadable = cli(client_env, "calendars", "put", "broken", "--file", "-", *WHERE,
                     stdin="{not json")
    assert "standard input: not valid JSON" in failed(unreadable, 2)
    missing = cli(client_env, "calendars", "list", "--cloud-service", "cal",
                  "--collection", "nowhere")
    assert "nowhere does not exist" in failed(missing, 1)
    names = [item["name"] for item in cli_json(client_env, "calendars", "list", *WHERE)]
    assert "hours" not in names and "broken" not in names


@pytest.mark.parametrize("name", ["a.b", "..", "a/b", "x" * 65])
def test_a_name_that_is_not_one_is_refused_before_anything_is_sent(
        client_env: dict[str, str], name: str) -> None:
    for command in (["get", name], ["delete", name], ["put", name, "--file", "-"]):
        done = cli(client_env, "calendars", *command, *WHERE, stdin="{}")
        message = failed(done, 2)
        assert "NAME: the calendar name" in message and "nothing was sent" in message
