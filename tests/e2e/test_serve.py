"""The real process: starts, answers over mutual TLS, stops cleanly on SIGTERM."""

from __future__ import annotations

from tests.e2e.conftest import ServerProcess


def test_serve_answers_over_mutual_tls_and_stops_on_sigterm(server: ServerProcess) -> None:
    session = server.session()
    response = session.get(f"{server.base_url}/{server.subscription_id}/cloudservices")
    assert response.status_code == 200
    assert "<CloudServices" in response.text
    assert len(response.headers["x-ms-request-id"]) == 32
    assert server.stop() == 0
