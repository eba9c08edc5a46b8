"""The command line and the configuration."""

from __future__ import annotations

import json
import logging
import socket
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from freezegun import freeze_time
from sqlalchemy import inspect, text

from scheduler.admin import warn_if_server_certificate_expires
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
    ("server = 8443\n", {}),
    ("[plans]\nFree = 5\n", {}),
    ('[engine]\nnode_name = "has space"\n', {}),
    ("", {"SCHEDULER_ENGINE_NODE_NAME": "a" * 64}),
    ("", {"SCHEDULER_ENGINE_NODE_NAME": "b,c"}),
])
def test_bad_configuration_is_refused_with_a_message(tmp_path: Path, content: str,
                                                     env: dict[str, str]) -> None:
    (tmp_path / "scheduler.toml").write_text(content)
    with pytest.raises(SettingsError):
        load_settings(tmp_path, env=env)


def test_a_bad_node_name_is_refused_naming_the_setting_and_the_name(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"engine\.node_name .*'no/slash'"):
        load_settings(tmp_path, env={"SCHEDULER_ENGINE_NODE_NAME": "no/slash"})


def test_the_node_name_comes_from_the_environment_lower_cased(tmp_path: Path) -> None:
    engine = load_settings(tmp_path, env={"SCHEDULER_ENGINE_NODE_NAME": "Rack-2.east_1"}).engine
    assert engine.node_name == "Rack-2.east_1"
    assert engine.own_node_name() == "rack-2.east_1"


def test_without_a_node_name_the_node_runs_under_the_host_name(tmp_path: Path) -> None:
    engine = load_settings(tmp_path, env={}).engine
    assert engine.node_name == ""
    assert engine.own_node_name() == socket.gethostname().lower()


def test_a_table_of_no_known_name_is_refused_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert main(["init", "--home", str(home)]) == 0
    capsys.readouterr()
    config = home / "scheduler.toml"
    config.write_text(config.read_text() + "\n[sever]\nport = 9443\n")
    assert main(["subscription", "create", "--home", str(home), "--name", "team"]) == 2
    err = capsys.readouterr().err
    assert "unknown table [sever]" in err and "[server]" in err
    assert "Traceback" not in err


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


def recorded_port(home: Path) -> tuple[int, str]:
    """The port the home's config says, and the URL its client profile names."""
    config = tomllib.loads((home / "scheduler.toml").read_text())
    profile = tomllib.loads((home / "client.toml").read_text())
    return config["server"]["port"], profile["url"]


@pytest.mark.parametrize(("flags", "variable", "port"), [
    ([], None, 8443),
    ([], "9555", 9555),
    (["--port", "9444"], None, 9444),
    (["--port", "9444"], "9555", 9444),
])
def test_init_writes_the_port_of_its_flag_the_environment_or_the_default_into_both_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        flags: list[str], variable: str | None, port: int) -> None:
    monkeypatch.delenv("SCHEDULER_SERVER_PORT", raising=False)
    if variable is not None:
        monkeypatch.setenv("SCHEDULER_SERVER_PORT", variable)
    home = tmp_path / "home"
    assert main(["init", "--home", str(home), "--json", *flags]) == 0
    assert json.loads(capsys.readouterr().out)["url"] == f"https://127.0.0.1:{port}"
    assert recorded_port(home) == (port, f"https://127.0.0.1:{port}")


@pytest.mark.parametrize("port", ["0", "65536", "https", "-1"])
def test_init_refuses_a_port_that_is_not_one_and_makes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["init", "--home", str(tmp_path / "home"), "--port", port])
    assert exited.value.code == 2
    assert "argument --port" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


def test_a_configured_port_that_is_not_one_is_refused(tmp_path: Path) -> None:
    for content, env in (("[server]\nport = 70000\n", {}),
                         ("", {"SCHEDULER_SERVER_PORT": "0"}),
                         ('[server]\nport = "8443"\n', {})):
        (tmp_path / "scheduler.toml").write_text(content)
        with pytest.raises(SettingsError, match=r"server\.port must be a TCP port"):
            load_settings(tmp_path, env=env)


def served_names(path: Path) -> list[str]:
    """The names the certificate in `path` (the first one) is made for."""
    return pki.alternative_names(pki.load_certificate(path.read_bytes()))


def test_init_makes_the_server_certificate_for_the_host_names_given_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert main(["init", "--home", str(home), "--host-name", "MyHost.Example",
                 "--host-name", "10.1.2.3", "--host-name", "fd00::7"]) == 0
    assert "server certificate for myhost.example, 10.1.2.3, fd00::7, localhost" \
        in capsys.readouterr().out
    assert served_names(home / "server.pem") == [
        "myhost.example", "localhost", "10.1.2.3", "fd00::7", "127.0.0.1", "::1"]


@pytest.mark.parametrize("name", ["bad_name", "-lead.example", "a..b", "1.2.3", "*.com",
                                  "fe80::1%eth0", "x" * 64 + ".example", "two words"])
def test_a_host_name_that_is_neither_a_dns_name_nor_an_address_is_refused_before_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    home, certs = tmp_path / "home", tmp_path / "certs"
    assert main(["init", "--home", str(home), "--certs-dir", str(certs),
                 "--host-name", "ok.example", f"--host-name={name}"]) == 2
    assert capsys.readouterr().err.startswith(f"scheduler: --host-name {name!r}: ")
    assert not home.exists() and not certs.exists()


def test_cert_server_renews_the_certificate_keeping_its_names_or_taking_those_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert main(["init", "--home", str(home), "--host-name", "first.example"]) == 0
    first = pki.load_certificate((home / "server.pem").read_bytes())
    capsys.readouterr()
    assert main(["cert", "server", "--home", str(home), "--days", "90"]) == 0
    kept = pki.load_certificate((home / "server.pem").read_bytes())
    out = capsys.readouterr().out
    assert f"thumbprint {pki.thumbprint(kept)}" in out
    assert "names first.example, localhost, 127.0.0.1, ::1" in out
    assert f"valid until {kept.not_valid_after_utc:%Y-%m-%d}" in out
    assert kept.serial_number != first.serial_number
    assert served_names(home / "server.pem") == [
        "first.example", "localhost", "127.0.0.1", "::1"]
    assert (kept.not_valid_after_utc - kept.not_valid_before_utc).days == 90
    assert main(["cert", "server", "--home", str(home), "--host-name", "second.example"]) == 0
    assert served_names(home / "server.pem") == [
        "second.example", "localhost", "127.0.0.1", "::1"]
    ca = pki.load_certificate((home / "ca.pem").read_bytes())
    chain = (home / "server.pem").read_bytes()
    assert chain.endswith(pki.pem_bytes(ca))  # the CA after it, as init writes it
    key = (home / "server-key.pem")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    issued = pki.load_issued(chain, key.read_bytes())
    assert issued.key.public_key() == issued.certificate.public_key()
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".")) == []


def test_cert_server_if_expiring_within_renews_only_a_certificate_that_ends_within_the_days(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert main(["init", "--home", str(home)]) == 0
    before = {name: (home / name).read_bytes() for name in ("server.pem", "server-key.pem")}
    ends = pki.load_certificate(before["server.pem"]).not_valid_after_utc
    capsys.readouterr()
    assert main(["cert", "server", "--home", str(home), "--if-expiring-within", "1"]) == 0
    assert "more than 1 day from now: nothing to do" in capsys.readouterr().out
    # The command reads the wall clock when it runs: the days pass under freezegun.
    with freeze_time(ends - timedelta(days=31)):
        assert main(["cert", "server", "--home", str(home), "--if-expiring-within", "30"]) == 0
    assert "more than 30 days from now: nothing to do" in capsys.readouterr().out
    assert {name: (home / name).read_bytes() for name in before} == before
    with freeze_time(ends - timedelta(days=29)):
        assert main(["cert", "server", "--home", str(home), "--if-expiring-within", "30"]) == 0
    assert "a new server certificate" in capsys.readouterr().out
    renewed = pki.load_certificate((home / "server.pem").read_bytes())
    assert renewed.not_valid_after_utc > ends
    assert renewed.not_valid_before_utc <= ends - timedelta(days=29)


def test_serve_warns_of_a_server_certificate_that_ends_soon_or_has_ended(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    assert main(["init", "--home", str(home)]) == 0
    settings = load_settings(home, env={})
    ends = pki.load_certificate((home / "server.pem").read_bytes()).not_valid_after_utc
    with caplog.at_level(logging.WARNING, logger="scheduler.admin"):
        for days_left in (31, 29, -1):  # serve reads the wall clock as it starts
            with freeze_time(ends - timedelta(days=days_left)):
                warn_if_server_certificate_expires(settings)
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 2
    assert f"the server certificate {home / 'server.pem'} ends on {ends:%Y-%m-%d}" \
        in warned[0]
    assert f"the server certificate {home / 'server.pem'} ended on {ends:%Y-%m-%d}" \
        in warned[1]
    assert f"renew it with `scheduler cert server --home {home}`" in warned[1]


@pytest.mark.parametrize("flags", [["--host-name", "bad_name"], ["--days", "0"],
                                   ["--if-expiring-within", "-1"]])
def test_cert_server_refuses_what_it_cannot_use_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    home = tmp_path / "home"
    assert main(["init", "--home", str(home)]) == 0
    before = {name: (home / name).read_bytes() for name in ("server.pem", "server-key.pem")}
    capsys.readouterr()
    assert main(["cert", "server", "--home", str(home), *flags]) == 2
    assert capsys.readouterr().err.startswith(f"scheduler: {flags[0]} ")
    assert {name: (home / name).read_bytes() for name in before} == before
