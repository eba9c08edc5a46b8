"""Fixtures of the dashboard's tests: browsers over HTTPS as test clients, signed in."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support import JOBS, Tenant, client_with_certificate

HTTPS = "https://localhost"
OpenBrowser = Callable[[Tenant | None], FlaskClient]


@pytest.fixture
def open_browser(app: Flask) -> OpenBrowser:
    """A client as a browser over HTTPS, presenting a tenant's certificate if given one."""
    def open_one(tenant: Tenant | None) -> FlaskClient:
        client = client_with_certificate(app, tenant.certificate if tenant else None)
        client.environ_base["wsgi.url_scheme"] = "https"
        return client
    return open_one


@pytest.fixture
def signed_in(open_browser: OpenBrowser, collection: Tenant,
              csrf_of: Callable[[FlaskClient, str], str]) -> FlaskClient:
    """A browser signed in as the tenant's certificate (continuing as the certificate it
    presents), its collection cs1/jc1 holding the hourly job `j1`."""
    job = {"startTime": "2099-03-01T13:00:00Z", "action": {"type": "http", "request": {
        "uri": "http://127.0.0.1:9/x", "method": "GET"}},
        "recurrence": {"frequency": "hour", "interval": 1}}
    assert collection.call("PUT", JOBS + "/j1", job).status_code == 201
    client = open_browser(collection)
    token = csrf_of(client, "/ui/sign-in")
    response = client.post("/ui/sign-in/certificate", base_url=HTTPS,
                           data={"subscription": collection.subscription_id, "csrf": token})
    assert response.status_code == 303, response.data
    return client


@pytest.fixture
def csrf_of() -> Callable[[FlaskClient, str], str]:
    """The CSRF token a page's forms carry."""
    def read(client: FlaskClient, path: str) -> str:
        page = client.get(path, base_url=HTTPS).get_data(as_text=True)
        return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return read
