"""The command line and the configuration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from scheduler.cli import main
from scheduler.db.schema import alembic_config, upgrade_schema
from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.services.subscriptions import create_subscription
from scheduler.settings import SettingsError, load_settings
from tests.support import START, fresh_postgres_schema


def test_init_prints_json_and_refuses_to_overwrite(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert main(["init", "--home", str(home), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {"subscriptionId", "url", "caCert", "clientCert", "home"}
    assert info["url"] == "https://127.0.0.1:8443"
    bundle = Path(info["clientCert"]).read_bytes()
    assert b"BEGIN CERTIFICATE" in bundle and b"PRIVATE KEY" in bundle
    assert (home / "scheduler.toml").exists() and (home / "scheduler.db").exists()
    assert oct((home / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
    assert main(["init", "--home", str(home)]) == 2
    assert "refusing" in capsys.readouterr().err


def test_subscription_create_and_cert_issue(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    main(["init", "--home", str(home), "--json"])
    capsys.readouterr()
    out = tmp_path / "client.pem"
    assert main(["cert", "issue", "--home", str(home), "--name", "ops", "--out", str(out)]) == 0
    thumbprint = capsys.readouterr().out.strip()
    certificate = pki.load_certificate(out.read_bytes())
    assert pki.thumbprint(certificate) == thumbprint
    assert main(["subscription", "create", "--home", str(home), "--name", "team",
                 "--cert", str(out)]) == 0
    assert len(capsys.readouterr().out.strip()) == 36


def test_commands_on_a_missing_home_fail_cleanly(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["subscription", "create", "--home", str(tmp_path / "nope"), "--name", "x"]) == 2
    assert "not a scheduler home" in capsys.readouterr().err


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "scheduler.toml").write_text(
        '[server]\nport = 9000\n[plans.Free]\nmax_job_count = 7\n[brokers.rabbit]\n'
        'url = "amqp://guest:guest@127.0.0.1:5672/"\n')
    settings = load_settings(tmp_path, env={
        "SCHEDULER_SERVER_PORT": "9443",
        "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
        "SCHEDULER_PLANS_STANDARD_MAX_RECURRENCE": "PT1S",
        "SCHEDULER_DATABASE_URL": "postgresql+psycopg://u@h/db",
        "SCHEDULER_SERVER_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2",
    })
    assert settings.server.port == 9443
    assert settings.outbound.allow_private_networks is True
    assert settings.plans["Free"].max_job_count == 7
    assert settings.plans["Standard"].max_recurrence == "PT1S"
    assert settings.plans["P20Premium"].max_job_count == 1000
    assert settings.brokers["rabbit"].url.startswith("amqp://")
    assert settings.broker_kinds == {"rabbit": "amqp"}
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.server.trusted_proxies == ("10.0.0.1", "10.0.0.2")


def test_metrics_are_off_until_a_port_is_set_and_bind_to_loopback(tmp_path: Path) -> None:
    assert not load_settings(tmp_path, env={}).metrics.enabled
    metrics = load_settings(tmp_path, env={"SCHEDULER_METRICS_PORT": "9464"}).metrics
    assert metrics.enabled and (metrics.host, metrics.port) == ("127.0.0.1", 9464)
    logging = load_settings(tmp_path, env={"SCHEDULER_LOGGING_FORMAT": "json"}).logging
    assert (logging.format, logging.level) == ("json", "info")


@pytest.mark.parametrize(("content", "env"), [
    ("[server]\nport = 1\nbogus = 2\n", {}),
    ("[server\n", {}),
    ("", {"SCHEDULER_SERVER_PORT": "eighty"}),
    ("", {"SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "maybe"}),
    ('[brokers.mq]\nurl = "kafka://127.0.0.1:9092"\n', {}),
    ("[engine]\nheartbeat_seconds = 2\ndead_after_seconds = 3\n", {}),
    ("", {"SCHEDULER_ENGINE_HEARTBEAT_SECONDS": "0"}),
    ("", {"SCHEDULER_ENGINE_CONCURRENCY": "0"}),
    ("[engine]\ntimeout_seconds = 0\n", {}),
    ("[engine]\nbatch = -5\n", {}),
    ("", {"SCHEDULER_SERVER_REQUEST_TIMEOUT_SECONDS": "0"}),
    ("[database]\npool_size = 0\n", {}),
    ("", {"SCHEDULER_DATABASE_POOL_TIMEOUT_SECONDS": "-1"}),
    ('[logging]\nformat = "xml"\n', {}),
    ("", {"SCHEDULER_LOGGING_LEVEL": "loud"}),
    ("[metrics]\nport = 70000\n", {}),
])
def test_bad_configuration_is_refused_with_a_message(tmp_path: Path, content: str,
                                                     env: dict[str, str]) -> None:
    (tmp_path / "scheduler.toml").write_text(content)
    with pytest.raises(SettingsError):
        load_settings(tmp_path, env=env)


def test_init_puts_certificates_in_the_certs_directory_and_names_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home, certs = tmp_path / "home", tmp_path / "certs"
    assert main(["init", "--home", str(home), "--certs-dir", str(certs), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["clientCert"] == str(certs / "admin.pem")
    assert info["caCert"] == str(certs / "ca.pem")
    assert sorted(p.name for p in certs.iterdir()) == [
        "admin.pem", "ca-key.pem", "ca.pem", "server-key.pem", "server.pem"]
    assert not any(home.glob("*.pem"))
    settings = load_settings(home, env={})
    assert settings.path(settings.server.cert_file) == certs / "server.pem"
    assert settings.path(settings.security.ca_key_file) == certs / "ca-key.pem"
    assert oct((certs / "admin.pem").stat().st_mode & 0o777) == "0o600"
    out = tmp_path / "ops.pem"
    assert main(["cert", "issue", "--home", str(home), "--name", "ops", "--out", str(out),
                 "--subscription", info["subscriptionId"]]) == 0
    ca = pki.load_certificate((certs / "ca.pem").read_bytes())
    assert pki.load_certificate(out.read_bytes()).issuer == ca.subject


def test_init_refuses_certificates_another_home_left(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    certs = tmp_path / "certs"
    assert main(["init", "--home", str(tmp_path / "one"), "--certs-dir", str(certs)]) == 0
    before = (certs / "ca.pem").read_bytes()
    capsys.readouterr()
    assert main(["init", "--home", str(tmp_path / "two"), "--certs-dir", str(certs)]) == 2
    assert "already holds ca.pem" in capsys.readouterr().err
    assert (certs / "ca.pem").read_bytes() == before
    assert not (tmp_path / "two").exists()


@contextmanager
def shared_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A database two homes could be pointed at: a SQLite file, or a fresh PostgreSQL
    schema."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with fresh_postgres_schema("init") as url:
        yield url


def every_row(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the database, in a stable order."""
    db = Database(url)
    try:
        with db.reader() as conn:
            return {name: sorted((tuple(row) for row in conn.execute(
                                     text(f"SELECT * FROM {name}"))), key=repr)
                    for name in inspect(conn).get_table_names()}
    finally:
        db.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_second_init_on_a_database_with_a_home_is_refused_and_writes_nothing(
        tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    with shared_database(kind, tmp_path) as url:
        assert main(["init", "--home", str(tmp_path / "first"), "--database-url", url]) == 0
        before = every_row(url)
        capsys.readouterr()
        second, certs = tmp_path / "second", tmp_path / "certs"
        assert main(["init", "--home", str(second), "--database-url", url,
                     "--certs-dir", str(certs)]) == 2
        error = capsys.readouterr().err
        assert "already belongs to a home" in error
        assert "copy its home directory to the new node" in error
        assert not second.exists() and not certs.exists()
        assert every_row(url) == before
        assert len(before["subscriptions"]) == 1 and len(before["home"]) == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_init_refuses_a_database_a_home_was_made_on_before_it_had_a_key_check(
        tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    with shared_database(kind, tmp_path) as url:
        db = Database(url)
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0002")
        with db.transaction() as session:
            create_subscription(session, "made by an older version", START)
        db.dispose()
        before = every_row(url)
        assert main(["init", "--home", str(tmp_path / "home"), "--database-url", url]) == 2
        assert "already belongs to a home" in capsys.readouterr().err
        assert not (tmp_path / "home").exists()
        assert every_row(url) == before  # not even upgraded
        assert before["alembic_version"] == [("0002",)]


def test_init_on_an_empty_database_that_is_not_a_home_s_yet_goes_ahead(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'upgraded.db'}"
    db = Database(url)
    upgrade_schema(db)  # the schema alone, as `scheduler db upgrade` leaves it
    db.dispose()
    assert main(["init", "--home", str(tmp_path / "home"), "--database-url", url]) == 0
    assert len(every_row(url)["home"]) == 1


@pytest.mark.parametrize("days", ["0", "-30", "10000000"])
def test_cert_issue_refuses_a_validity_that_has_ended_or_cannot_be_written_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    home = tmp_path / "home"
    main(["init", "--home", str(home), "--json"])
    subscription = json.loads(capsys.readouterr().out)["subscriptionId"]
    out = tmp_path / "client.pem"
    for extra in ([], ["--subscription", subscription]):
        assert main(["cert", "issue", "--home", str(home), "--name", "ops", "--out", str(out),
                     "--days", days, *extra]) == 2
        error = capsys.readouterr().err
        assert f"--days {days}" in error and "day" in error
        assert not out.exists()
    assert main(["cert", "issue", "--home", str(home), "--name", "ops", "--out", str(out),
                 "--days", "1", "--subscription", subscription]) == 0
    certificate = pki.load_certificate(out.read_bytes())
    assert certificate.not_valid_after_utc > certificate.not_valid_before_utc


def test_cert_issue_for_a_subscription_that_does_not_exist_writes_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    main(["init", "--home", str(home), "--json"])
    out = tmp_path / "client.pem"
    assert main(["cert", "issue", "--home", str(home), "--name", "ops", "--out", str(out),
                 "--subscription", "00000000-0000-0000-0000-000000000000"]) == 2
    assert "no subscription" in capsys.readouterr().err
    assert not out.exists()
