"""No page on another site can act through a browser that holds a management certificate:
bodies a browser sends across sites without asking are refused on every state-changing route,
a foreign `Origin` is refused everywhere, no CORS access is granted, and links are built from
`server.public_url`, never from the request's `Host`."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from scheduler.api.origin import origin_of, public_url
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.errors import AZURE_NAMESPACE
from scheduler.security import pki
from scheduler.settings import Settings, SettingsError, load_settings
from tests.support import (
    CLOUD_SERVICE_XML,
    JOBS,
    Tenant,
    client_with_certificate,
    collection_xml,
    http_job,
)

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"
OWN_ORIGIN = "https://127.0.0.1:8443"  # the test settings' server.host and server.port
REFUSED_CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----form",
    "Text/Plain; charset=UTF-8",
    "APPLICATION/X-WWW-FORM-URLENCODED",
]
FOREIGN_ORIGINS = ["https://evil.example", "null", "http://127.0.0.1:8443",
                   "https://127.0.0.1:9443", "https://127.0.0.1.evil.example:8443"]


def certificate_xml(issued: pki.IssuedCertificate) -> str:
    """A `SubscriptionCertificate` document registering `issued`."""
    data = base64.b64encode(pki.der_bytes(issued.certificate)).decode()
    return (f'<SubscriptionCertificate xmlns="{AZURE_NAMESPACE}">'
            f"<SubscriptionCertificateData>{data}</SubscriptionCertificateData>"
            "</SubscriptionCertificate>")


def state_changing_requests(execution_id: str, stranger: pki.IssuedCertificate
                            ) -> list[tuple[str, str, str, bool]]:
    """(method, path, body, JSON route) for each kind of state-changing route, each body one
    the route would take under its own content type."""
    job = json.dumps(http_job())
    return [
        ("PUT", f"{JOBS}/j2", job, True),
        ("POST", JOBS, job, True),
        ("PATCH", f"{JOBS}/j1", '{"state": "disabled"}', True),
        ("PATCH", JOBS, '{"state": "disabled"}', True),
        ("DELETE", f"{JOBS}/j1", "", True),
        ("DELETE", JOBS, "", True),
        ("POST", f"{JOBS}/j1/run", "", True),
        ("POST", f"{JOBS}/j1/run", '{"parameters": {}}', True),
        ("POST", f"{COLLECTION}/executions", json.dumps({"action": http_job()["action"]}), True),
        ("PATCH", f"{COLLECTION}/executions/{execution_id}", '{"status": "canceled"}', True),
        ("POST", f"{COLLECTION}/executions/{execution_id}/resume", "", True),
        ("PUT", "/cloudservices/cs2", CLOUD_SERVICE_XML, False),
        ("DELETE", "/cloudservices/cs1", "", False),
        ("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc2", collection_xml(),
         False),
        ("DELETE", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1", "", False),
        ("POST", "/certificates", certificate_xml(stranger), False),
        ("DELETE", f"/certificates/{stranger.thumbprint}", "", False),
    ]


@pytest.fixture
def with_job(collection: Tenant) -> tuple[Tenant, str]:
    """The collection with job j1 and one pending execution of it: (tenant, execution id)."""
    assert collection.call("PUT", f"{JOBS}/j1", http_job()).status_code == 201
    started = collection.call("POST", f"{JOBS}/j1/run")
    assert started.status_code == 202, started.data
    return collection, str(started.get_json()["id"])


def what_is_stored(tenant: Tenant, execution_id: str) -> dict[str, Any]:
    """Everything the refused requests could have changed, as the API reads it back."""
    return {
        "jobs": tenant.call("GET", JOBS).data,
        "execution": tenant.call("GET", f"{COLLECTION}/executions/{execution_id}").data,
        "services": tenant.call("GET", "/cloudservices").data,
        "certificates": tenant.call("GET", "/certificates").data,
    }


def assert_error(response: TestResponse, status: int, code: str, as_json: bool,
                 *words: str) -> None:
    """An error answer in the route's usual format whose message holds `words`."""
    assert response.status_code == status, response.data
    if as_json:
        assert response.content_type.startswith("application/json")
        error = response.get_json()["error"]
        assert error["code"] == code
        message = error["message"]
    else:
        assert response.content_type.startswith("application/xml")
        text = response.get_data(as_text=True)
        assert f"<Code>{code}</Code>" in text
        message = text
    for word in words:
        assert word in message, message


def assert_no_cors_grant(response: TestResponse) -> None:
    granted = [name for name, _value in response.headers.items()
               if name.lower().startswith("access-control-")]
    assert granted == [], granted


# --- content types a browser sends across sites --------------------------------------------

@pytest.mark.parametrize("content_type", REFUSED_CONTENT_TYPES)
def test_every_state_changing_route_refuses_a_body_type_browsers_send_across_sites(
    with_job: tuple[Tenant, str], clock: FrozenClock, content_type: str
) -> None:
    tenant, execution_id = with_job
    stranger = pki.issue_client_certificate(None, "stranger", clock.now())
    before = what_is_stored(tenant, execution_id)
    named = content_type.split(";")[0].lower()
    for method, path, body, as_json in state_changing_requests(execution_id, stranger):
        response = tenant.call(method, path, data=body, content_type=content_type)
        assert_error(response, 415, "UnsupportedMediaType", as_json, named, method)
        assert_no_cors_grant(response)
    assert what_is_stored(tenant, execution_id) == before


def test_a_json_job_sent_as_text_without_a_version_from_another_site_stores_nothing(
    collection: Tenant
) -> None:
    response = collection.call("PUT", f"{JOBS}/j1", data=json.dumps(http_job()),
                               content_type="text/plain",
                               headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    response = collection.call("PUT", f"{JOBS}/j1", data=json.dumps(http_job()),
                               content_type="text/plain")
    assert_error(response, 415, "UnsupportedMediaType", True, "text/plain",
                 "application/json")
    assert collection.call("GET", f"{JOBS}/j1").status_code == 404


def test_only_state_changing_requests_with_those_body_types_are_refused(
    with_job: tuple[Tenant, str]
) -> None:
    tenant, _execution_id = with_job
    run_as_text = tenant.call("POST", f"{JOBS}/j1/run", data="", content_type="text/plain")
    assert_error(run_as_text, 415, "UnsupportedMediaType", True, "text/plain")
    # No body and no content type: run now, delete.
    started = tenant.client.post(tenant.url(f"{JOBS}/j1/run"))
    assert started.status_code == 202, started.data
    # A read is a read, whatever it says its (absent) body is.
    assert tenant.call("GET", JOBS, content_type="text/plain").status_code == 200
    assert tenant.client.delete(tenant.url(f"{JOBS}/j1")).status_code == 200
    assert tenant.call("GET", f"{JOBS}/j1").status_code == 404
    # The legacy client keeps the JSON content type it set for a job on its next XML calls.
    service = tenant.call("PUT", "/cloudservices/cs2", CLOUD_SERVICE_XML,
                          content_type="application/json")
    assert service.status_code == 202, service.data
    collection = tenant.call("PUT", "/cloudservices/cs2/resources/scheduler/jobcollections/jc9",
                             collection_xml(), content_type="application/json")
    assert collection.status_code == 202, collection.data


# --- Origin ----------------------------------------------------------------------------------

@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_a_request_from_another_origin_is_refused_whatever_it_asks(
    collection: Tenant, origin: str
) -> None:
    headers = {"Origin": origin}
    job = collection.call("PUT", f"{JOBS}/j1", http_job(), headers=headers)
    assert_error(job, 403, "ForeignOrigin", True, origin, OWN_ORIGIN)
    service = collection.call("PUT", "/cloudservices/cs2", CLOUD_SERVICE_XML, headers=headers)
    assert_error(service, 403, "ForeignOrigin", False, origin, OWN_ORIGIN)
    read = collection.call("GET", "/cloudservices", headers=headers)
    assert_error(read, 403, "ForeignOrigin", False, origin)
    preflight = collection.call("OPTIONS", f"{JOBS}/j1", headers={
        **headers, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 403
    for response in (job, service, read, preflight):
        assert_no_cors_grant(response)
    assert collection.call("GET", f"{JOBS}/j1").status_code == 404
    assert collection.call("GET", "/cloudservices/cs2").status_code == 404


def test_a_request_from_the_services_own_origin_is_served(collection: Tenant) -> None:
    for origin in (OWN_ORIGIN, OWN_ORIGIN.upper(), OWN_ORIGIN + "/"):
        headers = {"Origin": origin}
        response = collection.call("PUT", f"{JOBS}/j1", http_job(), headers=headers)
        assert response.status_code in (200, 201), response.data
        assert_no_cors_grant(response)
        preflight = collection.call("OPTIONS", f"{JOBS}/j1", headers={
            **headers, "Access-Control-Request-Method": "PUT"})
        assert_no_cors_grant(preflight)
    assert collection.call("GET", f"{JOBS}/j1", headers={"Origin": OWN_ORIGIN}
                           ).status_code == 200


def test_the_own_origin_is_the_public_url_when_one_is_set(
    settings: Settings, clock: FrozenClock, db: Database, tenant: Tenant
) -> None:
    app = app_with(settings, clock, db, public_url="https://scheduler.example.com/")
    client = client_with_certificate(app, tenant.certificate)
    path = tenant.url("/cloudservices")
    assert client.get(path, headers={"Origin": "https://scheduler.example.com"}
                      ).status_code == 200
    assert client.get(path, headers={"Origin": "https://scheduler.example.com:443"}
                      ).status_code == 200
    assert client.get(path, headers={"Origin": OWN_ORIGIN}).status_code == 403


# --- links -----------------------------------------------------------------------------------

def app_with(settings: Settings, clock: FrozenClock, db: Database, **server: Any) -> Flask:
    """Another app on the same database, with some server settings changed."""
    changed = replace(settings, server=replace(settings.server, **server))
    return create_app(changed, clock, db=db, background=False)


def test_locations_are_under_the_public_url_whatever_host_the_request_names(
    settings: Settings, clock: FrozenClock, db: Database, with_job: tuple[Tenant, str]
) -> None:
    tenant, _execution_id = with_job
    app = app_with(settings, clock, db, public_url="https://scheduler.example.com:9443")
    client = client_with_certificate(app, tenant.certificate)
    forged = {"Host": "evil.example:443"}
    run_now = client.post(tenant.url(f"{JOBS}/j1/run"), headers=forged)
    assert run_now.status_code == 202, run_now.data
    assert run_now.headers["Location"] == (
        f"https://scheduler.example.com:9443/{tenant.subscription_id}{JOBS}/j1/executions/"
        f"{run_now.get_json()['id']}")
    inline = client.post(tenant.url(f"{COLLECTION}/executions"), headers=forged,
                         json={"action": http_job()["action"]})
    assert inline.status_code == 202, inline.data
    assert inline.headers["Location"] == (
        f"https://scheduler.example.com:9443/{tenant.subscription_id}{COLLECTION}/executions/"
        f"{inline.get_json()['id']}")


def test_without_a_public_url_locations_are_under_the_host_and_port_served(
    with_job: tuple[Tenant, str]
) -> None:
    tenant, _execution_id = with_job
    run_now = tenant.call("POST", f"{JOBS}/j1/run", headers={"Host": "evil.example"})
    assert run_now.status_code == 202
    assert run_now.headers["Location"].startswith(f"{OWN_ORIGIN}/{tenant.subscription_id}/")


def test_bound_to_every_address_the_public_url_names_the_server_certificates_host(
    settings: Settings, clock: FrozenClock, db: Database, tenant: Tenant
) -> None:
    wildcard = replace(settings, server=replace(settings.server, host="0.0.0.0", port=9443))
    assert public_url(wildcard) == "https://localhost:9443"  # `init` made it for localhost
    app = create_app(wildcard, clock, db=db, background=False)
    client = client_with_certificate(app, tenant.certificate)
    path = tenant.url("/cloudservices")
    assert client.get(path, headers={"Origin": "https://localhost:9443"}).status_code == 200
    assert client.get(path, headers={"Origin": "https://0.0.0.0:9443"}).status_code == 403


def test_the_default_public_url_writes_ipv6_hosts_in_brackets_and_leaves_out_port_443(
    settings: Settings
) -> None:
    def served(host: str, port: int) -> str:
        return public_url(replace(settings, server=replace(settings.server, host=host,
                                                           port=port)))
    assert served("::1", 8443) == "https://[::1]:8443"
    assert served("scheduler.example.com", 443) == "https://scheduler.example.com"
    assert origin_of("https://[::1]:8443/") == "https://[::1]:8443"
    assert origin_of("null") is None


# --- the setting -----------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://scheduler.example.com", "https://scheduler.example.com/api",
    "https://scheduler.example.com/?a=1", "https://scheduler.example.com/#top",
    "https://user@scheduler.example.com", "https://", "scheduler.example.com",
    "https://scheduler.example.com:0", "https://scheduler.example.com:99999",
    "https://scheduler example.com", "ftp://scheduler.example.com",
])
def test_a_public_url_that_is_not_an_https_origin_is_refused(tmp_path: Any, url: str) -> None:
    with pytest.raises(SettingsError, match=r"server\.public_url"):
        load_settings(tmp_path, env={"SCHEDULER_SERVER_PUBLIC_URL": url})


def test_a_public_url_may_end_in_a_slash_and_name_a_port(tmp_path: Any) -> None:
    (tmp_path / "scheduler.toml").write_text(
        '[server]\npublic_url = "https://Scheduler.example.com:9443/"\n')
    settings = load_settings(tmp_path, env={})
    assert public_url(settings) == "https://Scheduler.example.com:9443"
    assert origin_of(public_url(settings)) == "https://scheduler.example.com:9443"


def test_a_public_url_that_is_not_text_is_refused(tmp_path: Any) -> None:
    (tmp_path / "scheduler.toml").write_text("[server]\npublic_url = 8443\n")
    with pytest.raises(SettingsError, match="not a string"):
        load_settings(tmp_path, env={})
