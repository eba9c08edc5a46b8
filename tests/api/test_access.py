"""Every request's access-log line and its metrics: route, status, latency."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from tests.support import JOBS, Tenant, http_job

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
