"""`scheduler principals create|list|delete`: service principals made, listed and deleted on a
home's database (SQLite or PostgreSQL), their secret shown once and good for a token."""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.cli import main
from scheduler.clock import SystemClock
from scheduler.db.models import ServicePrincipal
from scheduler.db.session import Database
from scheduler.services.principals import identity_of_token, issue_token_for_secret
from scheduler.services.subscriptions import create_subscription

UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def home_dir(home: dict[str, Any], database_url: str, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Path]:
    """A home whose database is the test's (SQLite in the home, or PostgreSQL)."""
    monkeypatch.setenv("SCHEDULER_DATABASE_URL", database_url)
    yield Path(home["home"])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `scheduler ARGS` in this process: its exit code, standard output and error."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def admin_subscription(home: Path) -> str:
    """The subscription the home's client profile names: `init`'s."""
    named: str = tomllib.loads((home / "client.toml").read_text())["subscription"]
    return named


def create_json(capsys: pytest.CaptureFixture[str], home: Path, name: str, *more: str
                ) -> dict[str, Any]:
    """`principals create --output json`: what it printed."""
    code, out, err = run(capsys, "principals", "create", "--home", str(home), "--name", name,
                         "--output", "json", *more)
    assert code == 0, err
    made: dict[str, Any] = json.loads(out)
    return made


def listed(capsys: pytest.CaptureFixture[str], home: Path, *more: str) -> list[dict[str, Any]]:
    """`principals list --output json`: what it printed."""
    code, out, err = run(capsys, "principals", "list", "--home", str(home), "--output", "json",
                         *more)
    assert code == 0, err
    found: list[dict[str, Any]] = json.loads(out)
    return found


def token(db: Database, client_id: str, secret: str) -> str | None:
    """A token's text for a client id and secret; None if they get none."""
    with db.transaction() as session:
        issued = issue_token_for_secret(session, client_id, secret, SystemClock().now())
    return None if issued is None else issued.text


def stands_for(db: Database, text: str) -> str | None:
    """The client id a token stands for now, if any."""
    with db.reader() as conn:
        found = identity_of_token(conn, text, SystemClock().now())
    return None if found is None else found.client_id


def test_create_prints_the_secret_once_with_how_to_use_it_and_the_secret_gets_a_token(
        capsys: pytest.CaptureFixture[str], home_dir: Path, db: Database) -> None:
    subscription = admin_subscription(home_dir)
    code, out, err = run(capsys, "principals", "create", "--home", str(home_dir), "--name",
                         "deploy")
    assert code == 0, err
    client_id = re.search(r"^client id: +(\S+)$", out, re.M)
    secret = re.search(r"^client secret: +(\S+)$", out, re.M)
    assert client_id is not None and secret is not None
    assert f"tenant:         {subscription}" in out
    assert "authority:      https://127.0.0.1:8443" in out
    assert "not shown again" in out
    assert "disable_instance_discovery=True" in out
    assert str(home_dir / "ca.pem") in out
    with db.snapshot() as session:
        stored = session.scalars(select(ServicePrincipal)).one()
    assert stored.client_id == client_id.group(1) and stored.subscription_id == subscription
    assert secret.group(1) not in stored.secret_hash
    issued = token(db, client_id.group(1), secret.group(1))
    assert issued is not None and stands_for(db, issued) == client_id.group(1)


def test_create_as_json_and_list_never_show_a_secret_again(
        capsys: pytest.CaptureFixture[str], home_dir: Path) -> None:
    subscription = admin_subscription(home_dir)
    made = create_json(capsys, home_dir, "b-deploy")
    assert made.keys() == {"clientId", "clientSecret", "name", "subscriptionId", "authority",
                           "created"}
    assert made["name"] == "b-deploy" and made["subscriptionId"] == subscription
    assert made["authority"] == "https://127.0.0.1:8443"
    assert str(uuid.UUID(made["clientId"])) == made["clientId"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", made["created"])
    other = create_json(capsys, home_dir, "a-ci")
    found = listed(capsys, home_dir)
    assert [p["clientId"] for p in found] == [other["clientId"], made["clientId"]]
    assert found[1] == {"clientId": made["clientId"], "name": "b-deploy",
                        "subscriptionId": subscription, "created": made["created"]}
    code, out, err = run(capsys, "principals", "list", "--home", str(home_dir))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["CLIENT", "ID", "NAME", "CREATED"]
    assert lines[2].split() == [made["clientId"], "b-deploy", made["created"]]
    assert made["clientSecret"] not in out and other["clientSecret"] not in out


def test_subscription_picks_another_subscription_than_the_profiles(
        capsys: pytest.CaptureFixture[str], home_dir: Path, db: Database) -> None:
    with db.transaction() as session:
        team = create_subscription(session, "team", SystemClock().now())
    made = create_json(capsys, home_dir, "deploy", "--subscription", team)
    assert made["subscriptionId"] == team
    assert [p["clientId"] for p in listed(capsys, home_dir, "--subscription", team)] \
        == [made["clientId"]]
    assert listed(capsys, home_dir) == []
    code, _out, err = run(capsys, "principals", "delete", "--home", str(home_dir),
                          made["clientId"])
    assert code == 1 and "has no service principal" in err
    code, _out, err = run(capsys, "principals", "delete", "--home", str(home_dir),
                          "--subscription", team, made["clientId"])
    assert code == 0, err


def test_delete_stops_the_principals_tokens_at_once_and_a_second_delete_finds_nothing(
        capsys: pytest.CaptureFixture[str], home_dir: Path, db: Database) -> None:
    made = create_json(capsys, home_dir, "deploy")
    kept = create_json(capsys, home_dir, "kept")
    issued = token(db, made["clientId"], made["clientSecret"])
    assert issued is not None and stands_for(db, issued) == made["clientId"]
    code, out, err = run(capsys, "principals", "delete", "--home", str(home_dir),
                         made["clientId"].upper())
    assert code == 0, err
    assert out.startswith(f"Deleted service principal {made['clientId']}")
    assert stands_for(db, issued) is None
    assert token(db, made["clientId"], made["clientSecret"]) is None
    assert [p["clientId"] for p in listed(capsys, home_dir)] == [kept["clientId"]]
    code, out, err = run(capsys, "principals", "delete", "--home", str(home_dir),
                         made["clientId"])
    assert code == 1 and out == ""
    assert err.startswith("scheduler: ") and "has no service principal" in err


@pytest.mark.parametrize(("args", "expected"), [
    (["create", "--name", ""], "--name: A service principal needs a name"),
    (["create", "--name", "x" * 101], "--name: A service principal's name is at most 100"),
    (["create", "--name", "x", "--subscription", UNKNOWN], f"no subscription {UNKNOWN}"),
    (["list", "--subscription", UNKNOWN], f"no subscription {UNKNOWN}"),
    (["delete", "--subscription", UNKNOWN, UNKNOWN], f"no subscription {UNKNOWN}"),
    (["delete", "not-a-client-id"], "'not-a-client-id' is not a client id"),
])
def test_bad_input_is_refused_with_exit_code_2_and_nothing_is_written(
        capsys: pytest.CaptureFixture[str], home_dir: Path, db: Database, args: list[str],
        expected: str) -> None:
    code, out, err = run(capsys, "principals", args[0], "--home", str(home_dir), *args[1:])
    assert code == 2 and out == ""
    assert err.startswith(f"scheduler: {expected}"), err
    with db.snapshot() as session:
        assert session.scalars(select(ServicePrincipal)).all() == []


def test_without_a_subscription_in_the_profile_one_must_be_given(
        capsys: pytest.CaptureFixture[str], home_dir: Path) -> None:
    (home_dir / "client.toml").unlink()
    code, _out, err = run(capsys, "principals", "list", "--home", str(home_dir))
    assert code == 2 and "give --subscription ID" in err


def test_the_commands_on_a_missing_home_fail_cleanly(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for args in (["create", "--name", "x"], ["list"], ["delete", UNKNOWN]):
        code, _out, err = run(capsys, "principals", args[0], "--home", str(tmp_path / "nope"),
                              *args[1:])
        assert code == 2 and "not a scheduler home" in err
