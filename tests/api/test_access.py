"""Every request's access-log line and its metrics: route, status, latency."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask import Flask

from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.services.certificates import register_certificate
from tests.support import JOBS, Tenant, client_with_certificate, http_job

JOB_ROUTE = "/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>/jobs/<job_id>"


def sample(app: Flask, name: str, **labels: str) -> float:
    """A metric's value in the app's registry (0 when it has no such sample yet)."""
    registry = app.extensions["scheduler.metrics"].registry
    return registry.get_sample_value(name, labels) or 0.0


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The access log's records."""
    return [r for r in caplog.records if r.name == "scheduler.access"]


def test_a_request_writes_one_access_line_with_its_id_subscription_route_and_status(
    app: Flask, collection: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="scheduler.access"):
        response = collection.call("PUT", f"{JOBS}/j1", http_job())
    assert response.status_code == 201
    [line] = access_lines(caplog)
    fields = vars(line)
    assert fields["request_id"] == response.headers["x-ms-request-id"]
    assert fields["subscription"] == collection.subscription_id
    assert fields["route"] == JOB_ROUTE
    assert fields["status"] == 201 and fields["duration_ms"] >= 0
    assert line.getMessage() == f"PUT {collection.url(JOBS)}/j1 201"


def test_requests_are_counted_by_method_route_and_status(
    app: Flask, collection: Tenant
) -> None:
    collection.call("PUT", f"{JOBS}/j1", http_job())
    collection.call("GET", f"{JOBS}/j1")
    collection.call("GET", f"{JOBS}/j1")
    collection.call("GET", f"{JOBS}/nope")
    assert sample(app, "scheduler_api_requests_total", method="GET", route=JOB_ROUTE,
                  status="200") == 2
    assert sample(app, "scheduler_api_requests_total", method="GET", route=JOB_ROUTE,
                  status="404") == 1
    assert sample(app, "scheduler_api_requests_total", method="PUT", route=JOB_ROUTE,
                  status="201") == 1
    assert sample(app, "scheduler_api_request_seconds_count", method="GET",
                  route=JOB_ROUTE) == 3


def test_a_refused_or_unknown_request_is_logged_and_counted_without_its_path_as_a_label(
    app: Flask, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = app.test_client()  # no client certificate
    with caplog.at_level(logging.INFO, logger="scheduler.access"):
        assert stranger.get(f"/{tenant.subscription_id}/cloudservices").status_code == 403
        assert tenant.call("GET", "/no/such/thing").status_code == 404
    refused, unknown = access_lines(caplog)
    assert vars(refused)["status"] == 403 and vars(refused)["subscription"] == "-"
    assert vars(unknown)["route"] == "unmatched"
    assert sample(app, "scheduler_api_requests_total", method="GET", route="unmatched",
                  status="404") == 1
    assert sample(app, "scheduler_api_requests_total", method="GET",
                  route="/<sub>/cloudservices", status="403") == 1


def registered(db: Database, tenant: Tenant, issued: pki.IssuedCertificate,
               clock: FrozenClock) -> pki.IssuedCertificate:
    """A certificate registered to the tenant's subscription."""
    with db.transaction() as session:
        register_certificate(session, tenant.subscription_id, issued.certificate, clock.now())
    return issued


def test_every_authentication_failure_gets_the_same_403_and_the_log_and_metric_say_why(
    app: Flask, db: Database, clock: FrozenClock, tenant: Tenant, other_tenant: Tenant,
    caplog: pytest.LogCaptureFixture
) -> None:
    now = clock.now()
    expired = registered(db, tenant, pki.issue_client_certificate(
        None, "expired", now - timedelta(days=30), days=1), clock)
    early = registered(db, tenant, pki.issue_client_certificate(
        None, "early", now + timedelta(days=2), days=30), clock)
    stranger = pki.issue_client_certificate(None, "stranger", now)
    revoked = registered(db, tenant, pki.issue_client_certificate(None, "revoked", now), clock)
    unregistering = f"/certificates/{pki.thumbprint(revoked.certificate)}"
    assert tenant.call("DELETE", unregistering).status_code == 200
    clients = {
        "no-certificate": app.test_client(),
        "unknown": client_with_certificate(app, stranger),
        "revoked": client_with_certificate(app, revoked),
        "expired": client_with_certificate(app, expired),
        "not-yet-valid": client_with_certificate(app, early),
        "other-subscription": other_tenant.client,
    }
    with caplog.at_level(logging.INFO, logger="scheduler.access"):
        answers = [client.get(tenant.url("/cloudservices")) for client in clients.values()]
        assert tenant.call("GET", "/cloudservices").status_code == 200
        assert tenant.client.get("/healthz").status_code == 200
    assert {(a.status_code, a.content_type, a.data) for a in answers} == {
        (answers[0].status_code, answers[0].content_type, answers[0].data)}
    assert answers[0].status_code == 403 and b"<Code>ForbiddenError</Code>" in answers[0].data
    assert [vars(line)["auth"] for line in access_lines(caplog)] == [*clients, "ok", "-"]
    for reason in clients:
        assert sample(app, "scheduler_api_auth_failures_total", reason=reason) == 1, reason
    assert sample(app, "scheduler_api_auth_failures_total", reason="ok") == 0


def test_an_expired_certificate_is_expired_though_it_is_registered_elsewhere_too(
    app: Flask, db: Database, clock: FrozenClock, tenant: Tenant, other_tenant: Tenant,
    caplog: pytest.LogCaptureFixture
) -> None:
    expired = pki.issue_client_certificate(None, "expired", clock.now() - timedelta(days=9),
                                           days=1)
    registered(db, tenant, expired, clock)
    registered(db, other_tenant, expired, clock)
    client = client_with_certificate(app, expired)
    with caplog.at_level(logging.INFO, logger="scheduler.access"):
        assert client.get(other_tenant.url("/cloudservices")).status_code == 403
        clock.advance(timedelta(days=-9))  # back when it was valid: this one is not its own
        assert client.get(f"/{tenant.subscription_id[::-1]}/cloudservices").status_code == 403
    assert [vars(line)["auth"] for line in access_lines(caplog)] == [
        "expired", "other-subscription"]
