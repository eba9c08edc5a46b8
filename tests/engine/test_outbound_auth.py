"""Outbound authentication when a job fires: client certificates and Azure AD OAuth tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from scheduler.actions.auth import (
    AAD_TOKEN_ENDPOINT,
    ActiveDirectoryCredentials,
    ActiveDirectoryTokens,
    ClientCertificate,
    TokenError,
)
from scheduler.actions.http import HttpCaller, HttpOutcome, HttpRequest
from scheduler.clock import FrozenClock
from scheduler.security import pki
from tests.engine.harness import Answer, MakeDriver, NodeDriver, Received, Receiver
from tests.support import JOBS, Tenant

TENANT = "contoso.onmicrosoft.com"
AUDIENCE = "https://management.core.windows.net/"
AAD = {"type": "ActiveDirectoryOAuth", "tenant": TENANT, "audience": AUDIENCE,
       "clientId": "00000000-0000-0000-0000-0000000000aa", "secret": "s3cret"}


def auth_driver(make_driver: MakeDriver, clock: FrozenClock,
                tls_context: Callable[[], ssl.SSLContext] = ssl.create_default_context,
                token_endpoint: str = AAD_TOKEN_ENDPOINT) -> NodeDriver:
    """A node allowed on loopback, trusting `tls_context`, with its own token endpoint."""
    caller = HttpCaller(True, tls_context=tls_context, aad_token_endpoint=token_endpoint,
                        clock=clock)
    return make_driver(caller=caller)


def job(uri: str, authentication: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"uri": uri, "method": "POST", "body": "hello"}
    if authentication is not None:
        request["authentication"] = authentication
    document: dict[str, Any] = {
        "startTime": "2026-03-01T12:00:10Z",
        "action": {"type": "http", "request": request, "retryPolicy": {"retryType": "none"}},
    }
    document.update(extra)
    return document


def history(collection: Tenant, job_id: str) -> list[dict[str, Any]]:
    response = collection.call("GET", f"{JOBS}/{job_id}/history")
    assert response.status_code == 200, response.data
    entries: list[dict[str, Any]] = response.get_json()
    return entries


# --- ClientCertificate ---------------------------------------------------------------------

@dataclass
class TlsTarget:
    """An HTTPS receiver on loopback that requires a client certificate of its CA."""

    receiver: Receiver
    ca: pki.IssuedCertificate

    @property
    def presented(self) -> list[bytes]:
        """The DER client certificates presented, in order."""
        return [r.certificate for r in self.receiver.requests if r.certificate is not None]

    @property
    def seen(self) -> list[str]:
        """Thumbprints of the certificates presented."""
        return [pki.thumbprint_of_der(der) for der in self.presented]

    @property
    def subjects(self) -> list[str]:
        """Subjects of the certificates presented."""
        return [pki.load_certificate(der).subject.rfc4514_string() for der in self.presented]

    def url(self, path: str) -> str:
        """A URL on this target."""
        return self.receiver.url(path)

    def trust(self) -> ssl.SSLContext:
        """A client context that trusts this target's CA, and nothing else."""
        return ssl.create_default_context(cadata=self.ca.cert_pem.decode())


@pytest.fixture
def tls_target(tmp_path: Path, start_receiver: Callable[..., Receiver]) -> TlsTarget:
    """A running TLS target with its own CA."""
    now = datetime.now(UTC)  # the TLS stacks check validity against the real time
    ca = pki.create_ca("target test CA", now)
    server = pki.issue_server_certificate(ca, ["127.0.0.1"], now)
    (tmp_path / "target.pem").write_bytes(server.bundle_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "target.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca.cert_pem.decode())
    return TlsTarget(start_receiver(tls=context), ca)


def pfx_of(issued: pki.IssuedCertificate, password: bytes) -> str:
    """A base64 PKCS#12 file of the certificate and its key."""
    data = pkcs12.serialize_key_and_certificates(
        b"job", issued.key, issued.certificate, None,
        serialization.BestAvailableEncryption(password))
    return base64.b64encode(data).decode()


def test_a_client_certificate_is_presented_to_the_target(
    collection: Tenant, clock: FrozenClock, make_driver: MakeDriver, tls_target: TlsTarget
) -> None:
    client = pki.issue_client_certificate(tls_target.ca, "job client", datetime.now(UTC))
    auth = {"type": "ClientCertificate", "pfx": pfx_of(client, b"pfx-pass"),
            "password": "pfx-pass"}
    response = collection.call("PUT", f"{JOBS}/mtls", job(tls_target.url("/hook"), auth))
    assert response.status_code == 201, response.data
    assert response.get_json()["action"]["request"]["authentication"][
        "certificateThumbprint"] == client.thumbprint
    driver = auth_driver(make_driver, clock, tls_target.trust)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert tls_target.seen == [client.thumbprint]
    assert tls_target.subjects == ["CN=job client"]
    [entry] = history(collection, "mtls")
    assert entry["status"] == "completed", entry["message"]
    assert entry["message"].startswith("Http Action - Response from host '127.0.0.1': '200 OK'")


def test_a_target_that_requires_a_certificate_fails_a_job_without_one(
    collection: Tenant, clock: FrozenClock, make_driver: MakeDriver, tls_target: TlsTarget
) -> None:
    collection.call("PUT", f"{JOBS}/plain", job(tls_target.url("/hook"), None))
    driver = auth_driver(make_driver, clock, tls_target.trust)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert tls_target.seen == []
    [entry] = history(collection, "plain")
    assert entry["status"] == "failed"
    # TLS 1.3: the refusal comes after the handshake, as a closed connection.
    assert entry["message"].startswith("Http Action - Request to host '127.0.0.1' failed: ")
    assert collection.call("GET", f"{JOBS}/plain").get_json()["status"]["failureCount"] == 1


def test_the_target_certificate_is_verified(
    collection: Tenant, clock: FrozenClock, make_driver: MakeDriver, tls_target: TlsTarget
) -> None:
    client = pki.issue_client_certificate(tls_target.ca, "job client", datetime.now(UTC))
    auth = {"type": "ClientCertificate", "pfx": pfx_of(client, b"pw"), "password": "pw"}
    collection.call("PUT", f"{JOBS}/untrusted", job(tls_target.url("/hook"), auth))
    driver = auth_driver(make_driver, clock)  # the system store does not know the test CA
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert tls_target.seen == []
    [entry] = history(collection, "untrusted")
    assert entry["status"] == "failed" and "CERTIFICATE_VERIFY_FAILED" in entry["message"]


def test_an_unusable_pfx_fails_the_attempt_instead_of_the_engine(tls_target: TlsTarget) -> None:
    caller = HttpCaller(True, tls_context=tls_target.trust)
    client = pki.issue_client_certificate(tls_target.ca, "job client", datetime.now(UTC))

    async def run() -> list[HttpOutcome]:
        try:
            return [await caller.call(HttpRequest("POST", tls_target.url("/hook"),
                                                  client_certificate=certificate), 5)
                    for certificate in (ClientCertificate("not base64!"),
                                        ClientCertificate(pfx_of(client, b"pw"), "wrong"),
                                        ClientCertificate(pfx_of(client, b"pw"), "pw"))]
        finally:
            await caller.close()

    garbage, wrong_password, good = asyncio.run(run())
    assert garbage.message.startswith(
        "Http Action - Request to host '127.0.0.1' failed: the client certificate could not "
        "be read: ")
    assert not wrong_password.success and "could not be read" in wrong_password.message
    assert good.success and tls_target.seen == [client.thumbprint]


# --- ActiveDirectoryOAuth ------------------------------------------------------------------

def form_of(request: Received) -> dict[str, str]:
    """The request's url-encoded form, one value a field."""
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


@dataclass
class TokenEndpoint:
    """A loopback Azure AD v1 token endpoint that hands out `token-1`, `token-2`, ..."""

    receiver: Receiver
    refuse: bool = False
    expires_in: str = "3600"

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self.receiver.port

    @property
    def template(self) -> str:
        """Its URL, with `{tenant}` to fill in."""
        return self.receiver.url("/{tenant}/oauth2/token")

    @property
    def calls(self) -> list[tuple[str, dict[str, str]]]:
        """The path and form of every token request, in order."""
        return [(r.path, form_of(r)) for r in self.receiver.requests]

    def answer(self, request: Received) -> Answer:
        """A token for the expected client credentials, else a 401 as Azure AD words it."""
        expected = {"grant_type": "client_credentials", "client_id": AAD["clientId"],
                    "client_secret": AAD["secret"], "resource": AUDIENCE}
        if self.refuse or form_of(request) != expected or \
                request.header("Content-Type") != "application/x-www-form-urlencoded":
            status, answer = 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.\r\n"
                                     "Trace ID: 1"}
        else:
            status, answer = 200, {"token_type": "Bearer", "expires_in": self.expires_in,
                                   "resource": AUDIENCE,
                                   "access_token": f"token-{len(self.receiver.requests)}"}
        return status, {"Content-Type": "application/json"}, json.dumps(answer).encode()


@pytest.fixture
def token_endpoint(start_receiver: Callable[..., Receiver]) -> TokenEndpoint:
    """A running token endpoint."""
    endpoint = TokenEndpoint(start_receiver())
    endpoint.receiver.responder = endpoint.answer
    return endpoint


@pytest.fixture
def aad_driver(make_driver: MakeDriver, clock: FrozenClock,
               token_endpoint: TokenEndpoint) -> NodeDriver:
    """A node that gets its Azure AD tokens from the loopback token endpoint."""
    return auth_driver(make_driver, clock, token_endpoint=token_endpoint.template)


def bearer(receiver: Receiver) -> list[str]:
    """The Authorization header of every request the receiver got."""
    return [r.header("authorization") for r in receiver.requests]


def test_an_azure_ad_token_is_sent_as_bearer_and_cached_until_shortly_before_expiry(
    collection: Tenant, clock: FrozenClock, receiver: Receiver, token_endpoint: TokenEndpoint,
    aad_driver: NodeDriver,
) -> None:
    document = job(receiver.url("/hook"), AAD,
                   recurrence={"frequency": "minute", "interval": 1})
    # The job's own Authorization header gives way to the token.
    document["action"]["request"]["headers"] = {"authorization": "Basic bm9wZQ=="}
    response = collection.call("PUT", f"{JOBS}/aad", document)
    assert response.status_code == 201, response.data
    assert "secret" not in response.get_json()["action"]["request"]["authentication"]
    clock.advance(timedelta(seconds=10))
    assert aad_driver.step() == 1
    clock.advance(timedelta(minutes=1))
    assert aad_driver.step() == 1
    assert len(token_endpoint.calls) == 1, "the second firing reuses the cached token"
    clock.advance(timedelta(minutes=54))  # 55 minutes in: 5 minutes before expiry
    assert aad_driver.step() == 1
    assert bearer(receiver) == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
    path, _form = token_endpoint.calls[0]
    assert path == f"/{TENANT}/oauth2/token"
    ran = [e["status"] for e in history(collection, "aad") if e["status"] != "missed"]
    assert ran == ["completed"] * 3


def test_a_refused_token_request_fails_the_attempt_with_a_clear_message(
    collection: Tenant, clock: FrozenClock, receiver: Receiver, token_endpoint: TokenEndpoint,
    aad_driver: NodeDriver,
) -> None:
    token_endpoint.refuse = True
    collection.call("PUT", f"{JOBS}/denied", job(receiver.url("/hook"), AAD))
    clock.advance(timedelta(seconds=10))
    assert aad_driver.step() == 1
    assert receiver.requests == [], "no token, no call"
    [entry] = history(collection, "denied")
    assert entry["status"] == "failed"
    url = f"http://127.0.0.1:{token_endpoint.port}/{TENANT}/oauth2/token"
    assert entry["message"] == (
        f"Http Action - Request to host '127.0.0.1' failed: could not get an Azure AD token "
        f"from {url}: '401 Unauthorized' invalid_client: AADSTS7000215: Invalid client secret "
        "provided.")
    status = collection.call("GET", f"{JOBS}/denied").get_json()["status"]
    assert status["failureCount"] == 1 and status["faultedCount"] == 1


def test_concurrent_attempts_share_one_token_request(token_endpoint: TokenEndpoint) -> None:
    tokens = ActiveDirectoryTokens(token_endpoint.template)
    credentials = ActiveDirectoryCredentials(TENANT, AUDIENCE, AAD["clientId"], AAD["secret"])
    other = ActiveDirectoryCredentials(TENANT, AUDIENCE, AAD["clientId"], "guessed")

    async def run() -> tuple[list[str], BaseException | str]:
        try:
            got = await asyncio.gather(*(tokens.token(credentials, 5) for _ in range(20)))
            try:
                wrong: BaseException | str = await tokens.token(other, 5)
            except TokenError as exc:
                wrong = exc
            return list(got), wrong
        finally:
            await tokens.close()

    got, wrong = asyncio.run(run())
    assert got == ["token-1"] * 20
    assert isinstance(wrong, TokenError), "a wrong secret never gets the cached token"
    assert len(token_endpoint.calls) == 2


def test_the_tenant_fills_one_path_segment_of_an_operator_chosen_host() -> None:
    with pytest.raises(ValueError, match="only in its path"):
        ActiveDirectoryTokens("https://{tenant}.example.com/token")
    tokens = ActiveDirectoryTokens()
    assert tokens.url_for("72f988bf-86f1-41af-91ab-2d7cd011db47") == (
        "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/token")

    async def bad_tenant() -> None:
        try:
            await tokens.token(ActiveDirectoryCredentials("../evil@other", AUDIENCE, "c", "s"), 1)
        finally:
            await tokens.close()

    with pytest.raises(TokenError, match="not a tenant id or domain name"):
        asyncio.run(bad_tenant())
