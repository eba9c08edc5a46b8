"""The service's own OAuth 2.0 endpoints, as MSAL (azure-identity) calls them: the tenant's
OpenID configuration, and client-credentials tokens for a service principal's secret or a
registered certificate, with OAuth's own error codes."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
import requests
import urllib3
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ClientSecretCredential
from flask import Flask
from flask.testing import FlaskClient
from requests.adapters import BaseAdapter
from werkzeug.test import TestResponse

from scheduler.api.arm.paths import is_token_path
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.services.certificates import delete_certificate
from scheduler.services.principals import (
    TokenIdentity,
    create_principal,
    delete_principal,
    identity_of_token,
    token_allows,
)
from tests.support import Tenant, client_with_certificate

TENANT = "scheduler"
TOKEN_PATH = f"/{TENANT}/oauth2/v2.0/token"
CONFIGURATION_PATH = f"/{TENANT}/v2.0/.well-known/openid-configuration"
SCOPE = "https://management.azure.com/.default"
# What MSAL sends besides the form.
MSAL_HEADERS = {"x-client-sku": "MSAL.Python", "x-client-ver": "1.31.0",
                "client-request-id": "5f0c0f4e-3b8c-4bd0-9d55-8f5a3c1d2e7f",
                "x-ms-client-request-id": "5f0c0f4e-3b8c-4bd0-9d55-8f5a3c1d2e7f"}


class Principal:
    """A service principal's client id and secret."""

    def __init__(self, db: Database, clock: FrozenClock, subscription_id: str) -> None:
        with db.transaction() as session:
            made = create_principal(session, subscription_id, "deploy", clock.now())
        self.client_id, self.secret = made.client_id, made.secret


@pytest.fixture
def principal(db: Database, clock: FrozenClock, tenant: Tenant) -> Principal:
    """A service principal of the tenant's subscription."""
    return Principal(db, clock, tenant.subscription_id)


def ask(client: FlaskClient, form: dict[str, str], path: str = TOKEN_PATH) -> TestResponse:
    """POST a form to the token endpoint, as MSAL does."""
    return client.post(path, data=form, headers=MSAL_HEADERS)


def secret_form(principal: Principal, **changes: str) -> dict[str, str]:
    """The form of a client-credentials request with a client secret."""
    form = {"grant_type": "client_credentials", "client_id": principal.client_id,
            "client_secret": principal.secret, "scope": SCOPE, "client_info": "1"}
    form.update(changes)
    return {name: value for name, value in form.items() if value != "-"}


def identity(db: Database, clock: FrozenClock, token: str) -> TokenIdentity | None:
    """Who a token stands for now."""
    with db.reader() as conn:
        return identity_of_token(conn, token, clock.now())


def allows(db: Database, clock: FrozenClock, token: str, subscription_id: str) -> bool:
    """Whether a token may act on the subscription now."""
    with db.reader() as conn:
        found = identity_of_token(conn, token, clock.now())
        return found is not None and token_allows(conn, found, subscription_id, clock.now())


def granted(response: TestResponse) -> str:
    """Check a token was granted as MSAL expects it; its text."""
    assert response.status_code == 200, response.data
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.get_json()
    assert body.keys() == {"token_type", "access_token", "expires_in", "ext_expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 3600
    token: str = body["access_token"]
    assert len(token) >= 43
    return token


def oauth_error(response: TestResponse, status: int, error: str) -> str:
    """Check an answer is OAuth's error with this status and code; its description."""
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.get_json()
    assert body.keys() == {"error", "error_description"}
    assert body["error"] == error
    description: str = body["error_description"]
    assert description
    return description


def test_the_openid_configuration_names_https_endpoints_on_the_host_the_client_used(
        app: Flask) -> None:
    response = app.test_client().get(CONFIGURATION_PATH,
                                     base_url="https://scheduler.example.com:9443")
    assert response.status_code == 200, response.data
    document = response.get_json()
    base = f"https://scheduler.example.com:9443/{TENANT}"
    assert document["issuer"] == f"{base}/v2.0"
    assert document["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert document["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert document["token_endpoint_auth_methods_supported"] == ["client_secret_post",
                                                                 "tls_client_auth"]
    assert document["grant_types_supported"] == ["client_credentials"]
    assert document["response_types_supported"] == ["token"]
    assert SCOPE in document["scopes_supported"]
    assert document["tenant_region_scope"] is None
    # Asked over plain HTTP (a proxy in front that ends TLS), the endpoints are https still.
    plain = app.test_client().get(CONFIGURATION_PATH, base_url="http://127.0.0.1:8443")
    assert plain.get_json()["token_endpoint"] == \
        f"https://127.0.0.1:8443/{TENANT}/oauth2/v2.0/token"


def test_any_tenant_word_has_a_configuration_and_a_path_that_is_none_is_refused(
        app: Flask, tenant: Tenant) -> None:
    client = app.test_client()
    for word in [tenant.subscription_id, "organizations", "contoso.onmicrosoft.com",
                 "a_b-c", "x" * 100]:
        response = client.get(f"/{word}/v2.0/.well-known/openid-configuration")
        assert response.status_code == 200, (word, response.data)
        assert response.get_json()["issuer"].endswith(f"/{word}/v2.0")
    for word in ["x" * 101, "a b", "caf%C3%A9", "a%2Bb"]:
        response = client.get(f"/{word}/v2.0/.well-known/openid-configuration")
        oauth_error(response, 400, "invalid_request")


def test_the_token_paths_are_told_apart_from_the_rest(tenant: Tenant) -> None:
    assert is_token_path(CONFIGURATION_PATH) and is_token_path(TOKEN_PATH)
    assert is_token_path(f"/{tenant.subscription_id}/oauth2/v2.0/token")
    for path in ["/oauth2/v2.0/token", f"/{TENANT}/oauth2/v2.0/token/x",
                 f"/a/{TENANT}/oauth2/v2.0/token", f"/{TENANT}/oauth2/v2.0/authorize",
                 f"/{TENANT}/oauth2/token", f"/{TENANT}/v2.0/.well-known/openid-configurationx",
                 f"/{tenant.subscription_id}/cloudservices", "/healthz", "//oauth2/v2.0/token"]:
        assert not is_token_path(path), path


def test_a_principals_secret_gets_a_token_for_its_subscription_without_a_certificate(
        app: Flask, db: Database, clock: FrozenClock, tenant: Tenant, other_tenant: Tenant,
        principal: Principal) -> None:
    token = granted(ask(app.test_client(), secret_form(principal)))
    assert identity(db, clock, token) == TokenIdentity(
        client_id=principal.client_id, subscription_id=tenant.subscription_id,
        thumbprint=None, name="deploy")
    assert allows(db, clock, token, tenant.subscription_id)
    assert not allows(db, clock, token, other_tenant.subscription_id)


def test_any_scope_and_any_tenant_word_get_the_principals_own_token(
        app: Flask, db: Database, clock: FrozenClock, tenant: Tenant,
        other_tenant: Tenant, principal: Principal) -> None:
    client = app.test_client()
    for path, scope in [(f"/{other_tenant.subscription_id}/oauth2/v2.0/token", SCOPE),
                        (TOKEN_PATH, "https://127.0.0.1:8443/.default"),
                        (TOKEN_PATH, "-")]:
        token = granted(ask(client, secret_form(principal, scope=scope), path))
        assert allows(db, clock, token, tenant.subscription_id)
        assert not allows(db, clock, token, other_tenant.subscription_id)


def test_a_token_ends_an_hour_after_it_was_granted(
        app: Flask, db: Database, clock: FrozenClock, tenant: Tenant,
        principal: Principal) -> None:
    token = granted(ask(app.test_client(), secret_form(principal)))
    clock.advance(timedelta(minutes=59, seconds=59))
    assert allows(db, clock, token, tenant.subscription_id)
    clock.advance(timedelta(seconds=1))
    assert identity(db, clock, token) is None


def test_a_wrong_secret_or_an_unknown_client_is_an_invalid_client(
        app: Flask, principal: Principal) -> None:
    client = app.test_client()
    for changes in [{"client_secret": principal.secret + "x"}, {"client_secret": ""},
                    {"client_id": "00000000-0000-0000-0000-000000000000"},
                    {"client_id": "x" * 500}]:
        response = ask(client, secret_form(principal, **changes))
        oauth_error(response, 401, "invalid_client")


def test_a_grant_other_than_client_credentials_is_unsupported(
        app: Flask, principal: Principal) -> None:
    client = app.test_client()
    for grant in ["password", "authorization_code", "refresh_token", "Client_Credentials"]:
        response = ask(client, secret_form(principal, grant_type=grant))
        oauth_error(response, 400, "unsupported_grant_type")


def test_a_request_without_a_grant_type_or_a_client_id_is_invalid(
        app: Flask, principal: Principal) -> None:
    client = app.test_client()
    for changes in [{"grant_type": "-"}, {"grant_type": ""}, {"client_id": "-"},
                    {"client_id": ""}]:
        oauth_error(ask(client, secret_form(principal, **changes)), 400, "invalid_request")
    nul = ask(client, secret_form(principal, client_secret="a\x00b"))
    oauth_error(nul, 400, "invalid_request")


def test_a_json_body_is_not_a_token_request(app: Flask, principal: Principal) -> None:
    response = app.test_client().post(TOKEN_PATH, json=secret_form(principal))
    oauth_error(response, 400, "invalid_request")


def test_no_secret_and_no_certificate_is_an_invalid_client(
        app: Flask, principal: Principal) -> None:
    response = ask(app.test_client(), secret_form(principal, client_secret="-"))
    assert "no client_secret" in oauth_error(response, 401, "invalid_client")


def test_a_registered_certificate_gets_a_token_for_its_subscriptions(
        app: Flask, db: Database, clock: FrozenClock, tenant: Tenant,
        other_tenant: Tenant) -> None:
    client = client_with_certificate(app, tenant.certificate)
    form = {"grant_type": "client_credentials", "client_id": "any-client", "scope": SCOPE}
    token = granted(ask(client, form))
    assert identity(db, clock, token) == TokenIdentity(
        client_id=None, subscription_id=None, thumbprint=tenant.certificate.thumbprint,
        name=pki.name_of_der(pki.der_bytes(tenant.certificate.certificate)))
    assert allows(db, clock, token, tenant.subscription_id)
    assert not allows(db, clock, token, other_tenant.subscription_id)


def test_a_certificates_token_stops_allowing_once_the_certificate_is_deleted(
        app: Flask, db: Database, clock: FrozenClock, tenant: Tenant) -> None:
    client = client_with_certificate(app, tenant.certificate)
    token = granted(ask(client, {"grant_type": "client_credentials", "client_id": "c"}))
    assert allows(db, clock, token, tenant.subscription_id)
    with db.transaction() as session:
        delete_certificate(session, tenant.subscription_id, tenant.certificate.thumbprint,
                           clock.now())
    assert not allows(db, clock, token, tenant.subscription_id)
    again = ask(client, {"grant_type": "client_credentials", "client_id": "c"})
    oauth_error(again, 401, "invalid_client")


def test_a_certificate_registered_nowhere_or_not_valid_now_gets_no_token(
        app: Flask, clock: FrozenClock, tenant: Tenant) -> None:
    form = {"grant_type": "client_credentials", "client_id": "c"}
    stranger = pki.issue_client_certificate(None, "stranger", clock.now())
    oauth_error(ask(client_with_certificate(app, stranger), form), 401, "invalid_client")
    clock.advance(timedelta(days=10_000))  # past the end of the tenant's certificate
    oauth_error(ask(client_with_certificate(app, tenant.certificate), form), 401,
                "invalid_client")


def test_a_secret_is_checked_even_when_a_certificate_is_presented(
        app: Flask, tenant: Tenant, principal: Principal) -> None:
    client = client_with_certificate(app, tenant.certificate)
    response = ask(client, secret_form(principal, client_secret="wrong"))
    oauth_error(response, 401, "invalid_client")


def test_a_deleted_principal_gets_no_token_and_its_tokens_stop_at_once(
        app: Flask, db: Database, clock: FrozenClock, tenant: Tenant,
        principal: Principal) -> None:
    client = app.test_client()
    token = granted(ask(client, secret_form(principal)))
    with db.transaction() as session:
        delete_principal(session, tenant.subscription_id, principal.client_id)
    assert identity(db, clock, token) is None
    oauth_error(ask(client, secret_form(principal)), 401, "invalid_client")


def test_the_token_endpoint_answers_post_only(app: Flask) -> None:
    response = app.test_client().get(TOKEN_PATH)
    assert response.status_code == 405


def test_a_token_request_from_a_page_of_another_site_is_refused(
        app: Flask, principal: Principal) -> None:
    response = app.test_client().post(TOKEN_PATH, data=secret_form(principal),
                                      headers={"Origin": "https://evil.example"})
    oauth_error(response, 403, "access_denied")


def test_what_is_refused_before_the_token_route_reads_it_is_an_oauth_error(
        app: Flask, principal: Principal) -> None:
    nul_in_path = app.test_client().post("/a%00b/oauth2/v2.0/token",
                                         data=secret_form(principal))
    oauth_error(nul_in_path, 400, "invalid_request")
    oauth_error(app.test_client().get(TOKEN_PATH), 405, "invalid_request")


class AppAdapter(BaseAdapter):
    """requests' way to the Flask app in this process instead of a socket: each request is
    the app's, through its test client, and the calls are kept in order."""

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.app = app
        self.calls: list[tuple[str, str]] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
             ) -> requests.Response:
        """The app's answer to a request, as requests reads one off the wire."""
        assert request.method is not None and request.url is not None
        self.calls.append((request.method, request.url))
        answer = self.app.test_client().open(request.url, method=request.method,
                                             data=request.body, headers=dict(request.headers))
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers.update(answer.headers)
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(answer.data),
                                            headers=dict(answer.headers),
                                            status=answer.status_code, preload_content=False)
        response.url, response.request, response.encoding = request.url, request, "utf-8"
        return response

    def close(self) -> None:
        """Nothing to close."""


def test_azure_identitys_client_secret_credential_gets_a_token_from_the_service(
        app: Flask, db: Database, clock: FrozenClock, tenant: Tenant,
        principal: Principal) -> None:
    adapter = AppAdapter(app)
    session = requests.Session()
    session.mount("https://", adapter)
    credential = ClientSecretCredential(
        tenant.subscription_id, principal.client_id, principal.secret,
        authority="https://scheduler.example.com:8443", disable_instance_discovery=True,
        transport=RequestsTransport(session=session, session_owner=False))
    token = credential.get_token(SCOPE).token
    assert allows(db, clock, token, tenant.subscription_id)
    base = f"https://scheduler.example.com:8443/{tenant.subscription_id}"
    assert adapter.calls == [("GET", f"{base}/v2.0/.well-known/openid-configuration"),
                             ("POST", f"{base}/oauth2/v2.0/token")]
