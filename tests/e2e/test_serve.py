"""The real process: starts, answers over mutual TLS, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text

from scheduler.cli import init_home
from tests.e2e.support import ServerProcess, free_port, wait_for
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
        server: ServerProcess) -> None:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(server.info["caCert"])
        assert session.get(f"{server.base_url}/healthz").json() == {"status": "ok"}
        # The engine of `--role all` starts beside the API: ready once its heartbeat is in.
        assert wait_for(lambda: session.get(f"{server.base_url}/readyz").status_code == 200,
                        60)
        assert session.get(f"{server.base_url}/readyz").json()["engine"] == "ok"


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
