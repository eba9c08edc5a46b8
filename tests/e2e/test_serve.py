"""The real process: starts, answers over mutual TLS, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from scheduler.admin import init_home
from scheduler.security.secrets import SecretBox
from tests.e2e.support import BIN, ServerProcess, free_port, wait_for
from tests.support import fresh_postgres_schema


def test_serve_answers_over_mutual_tls_and_stops_on_sigterm(server: ServerProcess) -> None:
    session = server.session()
    response = session.get(f"{server.base_url}/{server.subscription_id}/cloudservices")
    assert response.status_code == 200
    assert "<CloudServices" in response.text
    assert len(response.headers["x-ms-request-id"]) == 32
    assert server.stop() == 0


def test_serve_runs_on_postgresql(server_factory: Any) -> None:
    with fresh_postgres_schema("e2e") as url:
        server = server_factory(env={"SCHEDULER_DATABASE_URL": url})
        session = server.session()
        base = f"{server.base_url}/{server.subscription_id}"
        body = ('<CloudService xmlns="http://schemas.microsoft.com/windowsazure"><Label>l</Label>'
                "<Description>d</Description><GeoRegion>West Europe</GeoRegion></CloudService>")
        assert session.put(f"{base}/cloudservices/pg1", data=body).status_code == 202
        assert "<Name>pg1</Name>" in session.get(f"{base}/cloudservices").text
        schema = create_engine(url)  # the test's own schema, by its search path
        with schema.connect() as conn:
            names = conn.execute(text("SELECT name FROM cloud_services")).scalars()
            assert list(names) == ["pg1"]
        schema.dispose()
        assert server.stop() == 0


def test_health_paths_answer_a_load_balancer_without_a_certificate(
        shared_server: ServerProcess) -> None:
    base_url = shared_server.base_url
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(shared_server.info["caCert"])
        assert session.get(f"{base_url}/healthz").json() == {"status": "ok"}
        # The engine of `--role all` starts beside the API: ready once its heartbeat is in.
        assert wait_for(lambda: session.get(f"{base_url}/readyz").status_code == 200, 60)
        assert session.get(f"{base_url}/readyz").json()["engine"] == "ok"


def test_a_home_with_its_certificates_elsewhere_serves_with_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    home, certs = tmp_path / "home", tmp_path / "certs"
    certs.mkdir()
    info = init_home(home, ["localhost", "127.0.0.1"], env=env, certs_dir=certs)
    server = ServerProcess(home, info, free_port(), env)
    server.start()
    try:
        session = server.session()
        assert session.verify == str(certs / "ca.pem")
        assert session.cert == str(certs / "admin.pem")
        response = session.get(f"{server.base_url}/{server.subscription_id}/cloudservices")
        assert response.status_code == 200
    finally:
        assert server.stop() == 0


@contextmanager
def database_of(kind: str, tmp_path: Path) -> Iterator[str]:
    """A database for one home: a SQLite file, or a fresh PostgreSQL schema."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'home.db'}"
        return
    with fresh_postgres_schema("key") as url:
        yield url


def scheduler(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `scheduler` command to its end."""
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=120,
                          env=env)


def engine_rows(url: str) -> int:
    """How many engine nodes ever said they were alive, and were not gone cleanly."""
    engine = create_engine(url)
    with engine.connect() as conn:
        count = int(conn.execute(text("SELECT count(*) FROM engine_nodes")).scalar_one())
    engine.dispose()
    return count


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_nodes_refuse_a_secret_key_that_is_not_their_database_s_and_start_after_rotation(
        tmp_path: Path, kind: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    home = tmp_path / "home"
    with database_of(kind, tmp_path) as url:
        made = scheduler(env, "init", "--home", str(home), "--database-url", url, "--json")
        assert made.returncode == 0, made.stderr
        info = json.loads(made.stdout)
        key_file = home / "secret.key"
        own_key = key_file.read_bytes()
        key_file.write_bytes(SecretBox.new_key() + b"\n")  # another home's key, say
        for role in ("engine", "api"):
            refused = scheduler(env, "serve", "--home", str(home), "--role", role,
                                "--port", str(free_port()))
            assert refused.returncode == 2, refused.stdout
            assert f"the secret key file {key_file} does not match the database" \
                in refused.stderr
            assert "Copy `secret.key` from a node of that home" in refused.stderr
            assert "Traceback" not in refused.stderr and "scheduler ready" not in refused.stdout
        assert engine_rows(url) == 0  # the engine never began: nothing claimed
        wrong = key_file.read_bytes()
        assert scheduler(env, "secrets", "rotate", "--home", str(home)).returncode == 2
        assert key_file.read_bytes() == wrong  # no key added to a file of another home

        key_file.write_bytes(own_key)
        rotated = scheduler(env, "secrets", "rotate", "--home", str(home))
        assert rotated.returncode == 0, rotated.stderr
        engine = ServerProcess(home, info, free_port(), env, role="engine")
        engine.start()  # raises unless it prints its ready line
        assert engine.stop() == 0
        api = ServerProcess(home, info, free_port(), env, role="api")
        api.start()
        answer = api.session().get(f"{api.base_url}/{api.subscription_id}/cloudservices")
        assert answer.status_code == 200
        assert api.stop() == 0
        # A node given the key file of before the rotation could not open what it
        # re-encrypted: it is refused too.
        key_file.write_bytes(own_key)
        stale = scheduler(env, "serve", "--home", str(home), "--role", "engine",
                          "--port", str(free_port()))
        assert stale.returncode == 2 and "does not match the database" in stale.stderr


def recorded_port(home: Path) -> tuple[int, str]:
    """The port the home's config says, and the URL its client profile names."""
    config = tomllib.loads((home / "scheduler.toml").read_text())
    profile = tomllib.loads((home / "client.toml").read_text())
    return config["server"]["port"], profile["url"]


def test_serve_on_another_port_records_it_so_the_client_of_the_home_reaches_it(
        shared_server: ServerProcess) -> None:
    server = shared_server  # the module's, whose home's subscription no test writes to
    assert recorded_port(server.home) == (server.port, server.base_url)
    recorded = [line for line in server.output if "recorded it in" in line]
    assert recorded == [f"scheduler: serving on port {server.port}, not 8443 as the home said: "
                        f"recorded it in {server.home / 'scheduler.toml'} and "
                        f"{server.home / 'client.toml'}\n"]
    listed = scheduler(server.env, "collections", "list", "--home", str(server.home),
                       "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_serve_on_the_port_the_home_records_leaves_the_home_as_it_is(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    home, port = tmp_path / "home", free_port()
    made = scheduler(env, "init", "--home", str(home), "--port", str(port), "--json")
    assert made.returncode == 0, made.stderr
    before = {name: (home / name).read_bytes() for name in ("scheduler.toml", "client.toml")}
    server = ServerProcess(home, json.loads(made.stdout), port, env, role="api")
    server.start()
    try:
        assert not [line for line in server.output if "recorded it in" in line]
        assert {name: (home / name).read_bytes() for name in before} == before
        listed = scheduler(env, "collections", "list", "--home", str(home))
        assert listed.returncode == 0, listed.stderr
    finally:
        assert server.stop() == 0


def test_init_host_names_are_in_the_certificate_serve_presents(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    home = tmp_path / "home"
    made = scheduler(env, "init", "--home", str(home), "--host-name", "myhost.example",
                     "--host-name", "10.1.2.3", "--json")
    assert made.returncode == 0, made.stderr
    server = ServerProcess(home, json.loads(made.stdout), free_port(), env, role="api")
    server.start()
    try:
        context = server.ssl_context()
        # The handshake checks the name asked for against the certificate.
        for name in ("myhost.example", "10.1.2.3", "localhost"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname=name) as tls:
                names = tls.getpeercert()["subjectAltName"]
            assert {("DNS", "myhost.example"), ("IP Address", "10.1.2.3"),
                    ("DNS", "localhost"), ("IP Address", "127.0.0.1")} <= set(names)
    finally:
        assert server.stop() == 0


def test_serve_warns_at_start_of_a_server_certificate_that_ends_within_30_days(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    home = tmp_path / "home"
    made = scheduler(env, "init", "--home", str(home), "--json")
    assert made.returncode == 0, made.stderr
    renewed = scheduler(env, "cert", "server", "--home", str(home), "--days", "20")
    assert renewed.returncode == 0, renewed.stderr
    server = ServerProcess(home, json.loads(made.stdout), free_port(), env, role="api")
    server.start()
    try:
        warned = [line for line in server.output if "WARNING" in line]
        assert len(warned) == 1
        assert f"the server certificate {home / 'server.pem'} ends on" in warned[0]
        assert f"renew it with `scheduler cert server --home {home}`" in warned[0]
    finally:
        assert server.stop() == 0
