"""`scheduler dashboard link`: a one-time sign-in URL for a registered certificate, on a
home's database (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler.cli import main
from scheduler.clock import SystemClock
from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.services.dashboard_sessions import redeem_link


@pytest.fixture
def home_dir(home: dict[str, Any], database_url: str, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Path]:
    """A home whose database is the test's (SQLite in the home, or PostgreSQL)."""
    monkeypatch.setenv("SCHEDULER_DATABASE_URL", database_url)
    yield Path(home["home"])


def link(capsys: pytest.CaptureFixture[str], home: Path, *more: str) -> tuple[int, str, str]:
    """`scheduler dashboard link --home HOME ...`: its exit code, output and errors."""
    code = main(["dashboard", "link", "--home", str(home), *more])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_link_for_the_admin_certificate_opens_one_session_within_ten_minutes(
        home_dir: Path, db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = link(capsys, home_dir, "--output", "json")
    assert code == 0, err
    made = json.loads(out)
    subscription = tomllib.loads((home_dir / "client.toml").read_text())["subscription"]
    admin = pki.load_certificate((home_dir / "admin.pem").read_bytes())
    assert made["subscriptionId"] == subscription
    assert made["thumbprint"] == pki.thumbprint(admin)
    assert "/ui/sign-in/link/" in made["url"]
    token = made["url"].rsplit("/", 1)[1]
    now = SystemClock().now()
    with db.transaction() as session:
        assert redeem_link(session, token, now + timedelta(minutes=9)) is not None
    with db.transaction() as session:
        assert redeem_link(session, token, now) is None  # once


def test_a_certificate_not_registered_to_the_subscription_is_refused(
        home_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = link(capsys, home_dir, "--certificate", "AB" * 20)
    assert code == 2 and out == ""
    assert "is not registered to the subscription" in err


def test_the_text_output_says_how_long_the_link_works(
        home_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = link(capsys, home_dir)
    assert code == 0, err
    first, _, rest = out.partition("\n")
    assert first.startswith("https://") and "/ui/sign-in/link/" in first
    assert "within 10 minutes" in rest and "works once" in rest
