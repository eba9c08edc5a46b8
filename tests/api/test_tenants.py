"""Tenants: one subscription's certificate sees and changes only its own resources."""

from __future__ import annotations

import pytest
from flask import Flask

from scheduler.clock import FrozenClock
from scheduler.security import pki
from tests.support import JOBS, Tenant, client_with_certificate, http_job

COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"
PASS_THROUGH = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"


@pytest.fixture
def victim(collection: Tenant) -> Tenant:
    """A tenant with a cloud service, a collection, a job and an operation."""
    assert collection.call("PUT", f"{JOBS}/job1", http_job()).status_code == 201
    return collection


def _as_intruder(victim: Tenant, intruder: Tenant) -> Tenant:
    """The intruder's certificate aimed at the victim's subscription."""
    return Tenant(victim.subscription_id, intruder.certificate, intruder.client)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/cloudservices", None),
    ("GET", "/cloudservices/cs1", None),
    ("DELETE", "/cloudservices/cs1", None),
    ("GET", PASS_THROUGH, None),
    ("DELETE", COLLECTION, None),
    ("GET", JOBS, None),
    ("GET", f"{JOBS}/job1", None),
    ("PUT", f"{JOBS}/job1", http_job()),
    ("PATCH", f"{JOBS}/job1", {"state": "disabled"}),
    ("PATCH", JOBS, {"state": "disabled"}),
    ("DELETE", f"{JOBS}/job1", None),
    ("GET", f"{JOBS}/job1/history", None),
    ("GET", "/certificates", None),
])
def test_another_subscriptions_certificate_gets_403_on_every_route(
    victim: Tenant, other_tenant: Tenant, method: str, path: str, body: object
) -> None:
    intruder = _as_intruder(victim, other_tenant)
    response = intruder.call(method, path, body)
    assert response.status_code == 403
    assert b"<Code>ForbiddenError</Code>" in response.data
    assert victim.call("GET", f"{JOBS}/job1").get_json()["state"] == "enabled"


def test_operations_of_another_subscription_are_invisible(
    victim: Tenant, other_tenant: Tenant
) -> None:
    request_id = victim.call("PUT", f"{JOBS}/job2", http_job()).headers["x-ms-request-id"]
    assert victim.call("GET", f"/operations/{request_id}").status_code == 200
    assert _as_intruder(victim, other_tenant).call(
        "GET", f"/operations/{request_id}").status_code == 403
    assert other_tenant.call("GET", f"/operations/{request_id}").status_code == 404


def test_same_names_in_two_subscriptions_are_separate(
    victim: Tenant, other_tenant: Tenant
) -> None:
    from tests.support import CLOUD_SERVICE_XML, collection_xml

    assert other_tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert other_tenant.call("PUT", COLLECTION, collection_xml()).status_code == 202
    assert other_tenant.call("GET", f"{JOBS}/job1").status_code == 404
    assert other_tenant.call("GET", JOBS).get_json() == []
    other_tenant.call("PUT", f"{JOBS}/job1", http_job(state="disabled"))
    assert victim.call("GET", f"{JOBS}/job1").get_json()["state"] == "enabled"


def test_requests_without_a_certificate_get_403(app: Flask, victim: Tenant) -> None:
    anonymous = Tenant(victim.subscription_id, victim.certificate,
                       client_with_certificate(app, None))
    response = anonymous.call("GET", "/cloudservices")
    assert response.status_code == 403
    assert b"ForbiddenError" in response.data


def test_unknown_and_expired_certificates_get_403(
    app: Flask, victim: Tenant, clock: FrozenClock
) -> None:
    from datetime import timedelta

    stranger = pki.issue_client_certificate(None, "first", clock.now())
    unknown = Tenant(victim.subscription_id, stranger, client_with_certificate(app, stranger))
    assert unknown.call("GET", "/cloudservices").status_code == 403
    clock.advance(timedelta(days=900))
    assert victim.call("GET", "/cloudservices").status_code == 403
