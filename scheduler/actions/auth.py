"""Outbound authentication of HTTP actions: client certificates and Azure AD OAuth tokens.

`ClientCertificate`: the job's PKCS#12 file becomes an `ssl.SSLContext`. Python's `ssl` loads
keys only from files, so the chain and the key go to a file created with mode 0600 inside a
fresh private (0700) temporary directory, the key encrypted with a one-time random passphrase,
and the directory is removed as soon as `load_cert_chain` has read it: no plain private key
ever reaches the disk.

`ActiveDirectoryOAuth`: a token from the operator's token endpoint (OAuth 2 client credentials,
Azure AD v1 form: `resource` = the job's audience), cached until shortly before it expires.
The endpoint is operator configuration, not job input, so it is called even when it lives on a
private network; the job only picks the tenant, which is checked and fills one path segment.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from scheduler.clock import Clock, SystemClock
from scheduler.domain.caches import LruCache

AAD_TOKEN_ENDPOINT = "https://login.microsoftonline.com/{tenant}/oauth2/token"
TOKEN_REFRESH_MARGIN = 300.0  # seconds before expiry a cached token is renewed
TOKEN_CACHE_LIMIT = 10_000
_TENANT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", re.ASCII)
_ERROR_TEXT_LIMIT = 300


@dataclass(frozen=True)
class ClientCertificate:
    """A job's client certificate: the base64 PKCS#12 file as stored, and its password."""

    pfx: str
    password: str | None = None

    def __repr__(self) -> str:
        return "ClientCertificate(<secret>)"


@dataclass(frozen=True)
class ActiveDirectoryCredentials:
    """A job's Azure AD application credentials."""

    tenant: str
    audience: str
    client_id: str
    secret: str

    def __repr__(self) -> str:
        return (f"ActiveDirectoryCredentials(tenant={self.tenant!r}, "
                f"audience={self.audience!r}, client_id={self.client_id!r})")


class CertificateError(Exception):
    """The job's PKCS#12 file cannot be turned into a TLS client certificate."""


class TokenError(Exception):
    """No token could be had from the token endpoint."""


def ssl_context_with_certificate(make_context: Callable[[], ssl.SSLContext],
                                 certificate: ClientCertificate) -> ssl.SSLContext:
    """A fresh client context from `make_context` that presents the certificate."""
    try:
        pfx = base64.b64decode(certificate.pfx, validate=True)
        password = certificate.password.encode() if certificate.password else None
        key, cert, extra = pkcs12.load_key_and_certificates(pfx, password)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise CertificateError(
            f"the client certificate could not be read: {exc or 'bad PKCS#12 file'}") from None
    if key is None or cert is None:
        raise CertificateError("the client certificate's PKCS#12 file lacks a certificate "
                               "or its private key")
    passphrase = secrets.token_urlsafe(32).encode()
    try:
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(passphrase))
    except (TypeError, ValueError) as exc:
        raise CertificateError(f"the client certificate's key cannot be used: {exc}") from None
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *extra])
    context = make_context()
    with tempfile.TemporaryDirectory(prefix="scheduler-cert-") as directory:  # mode 0700
        path = os.path.join(directory, "client.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(chain + key_pem)
        try:
            context.load_cert_chain(path, password=passphrase)
        except (ssl.SSLError, OSError) as exc:
            raise CertificateError(
                f"the client certificate could not be loaded: {exc}") from None
    return context


@dataclass
class _Token:
    value: str
    renew_at: float


class ActiveDirectoryTokens:
    """Gets and caches Azure AD tokens (client credentials grant) from one token endpoint."""

    def __init__(self, endpoint: str = AAD_TOKEN_ENDPOINT, clock: Clock | None = None,
                 make_context: Callable[[], ssl.SSLContext] = ssl.create_default_context,
                 limit: int = TOKEN_CACHE_LIMIT) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"outbound.aad_token_endpoint {endpoint!r} is not an http(s) URL")
        if "{tenant}" in parts.netloc:
            raise ValueError("outbound.aad_token_endpoint may use {tenant} only in its path, "
                             "so a job cannot choose the host it is sent to")
        self.endpoint = endpoint
        self.clock = clock or SystemClock()
        self.limit = limit
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                         verify=make_context())
        self._tokens: LruCache[bytes, _Token] = LruCache(limit)
        self._pending: dict[bytes, asyncio.Future[str]] = {}
        self._salt = secrets.token_bytes(32)

    async def close(self) -> None:
        """Close the connections to the token endpoint."""
        await self._client.aclose()

    def url_for(self, tenant: str) -> str:
        """The token endpoint of a tenant."""
        return self.endpoint.replace("{tenant}", quote(tenant, safe=""))

    def _key(self, credentials: ActiveDirectoryCredentials) -> bytes:
        # The secret is part of the key: a job that knows another's client id but not its
        # secret must not be handed the other's cached token.
        fields = (credentials.tenant, credentials.audience, credentials.client_id,
                  credentials.secret)
        return hmac.new(self._salt, "\0".join(fields).encode(), hashlib.sha256).digest()

    def _cached(self, key: bytes) -> str | None:
        token = self._tokens.get(key)
        if token is None:
            return None
        if self.clock.monotonic() >= token.renew_at:
            self._tokens.discard(key)
            return None
        return token.value

    async def token(self, credentials: ActiveDirectoryCredentials, timeout: float) -> str:
        """A valid access token for the credentials; raises `TokenError` with the reason."""
        if not _TENANT.fullmatch(credentials.tenant):
            raise TokenError(f"could not get an Azure AD token: the tenant "
                             f"{credentials.tenant!r} is not a tenant id or domain name")
        key = self._key(credentials)
        value = self._cached(key)
        if value is not None:
            return value
        pending = self._pending.get(key)
        if pending is None:  # many jobs with the same credentials: one request
            pending = asyncio.ensure_future(self._fetch(key, credentials, timeout))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(pending)

    def _settled(self, key: bytes, done: asyncio.Future[str]) -> None:
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved, even when every waiter has gone

    async def _fetch(self, key: bytes, credentials: ActiveDirectoryCredentials,
                     timeout: float) -> str:
        value, lifetime = await self._request(credentials, timeout)
        if lifetime is not None and lifetime > 0:
            margin = min(TOKEN_REFRESH_MARGIN, lifetime / 10)
            self._tokens.put(key, _Token(value, self.clock.monotonic() + lifetime - margin))
        return value

    async def _request(self, credentials: ActiveDirectoryCredentials,
                       timeout: float) -> tuple[str, float | None]:
        url = self.url_for(credentials.tenant)

        def failure(reason: str) -> TokenError:
            return TokenError(f"could not get an Azure AD token from {url}: {reason}")

        try:
            response = await self._client.post(url, timeout=timeout, data={
                "grant_type": "client_credentials", "client_id": credentials.client_id,
                "client_secret": credentials.secret, "resource": credentials.audience})
        except httpx.TimeoutException:
            raise failure(f"no answer within {timeout:g} s") from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ssl.SSLError) as exc:
            raise failure(str(exc) or type(exc).__name__) from None
        try:
            answer: Any = response.json()
        except ValueError:
            answer = None
        if not 200 <= response.status_code < 300:
            raise failure(f"'{response.status_code} {response.reason_phrase}'"
                          f"{_error_text(answer, response.text)}")
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token.strip() or any(c in token for c in "\r\n"):
            raise failure("the answer holds no access_token")
        return token.strip(), _lifetime(answer, self.clock)


def _error_text(answer: Any, text: str) -> str:
    """Azure AD's `error: error_description`, or the start of the body."""
    if isinstance(answer, dict) and answer.get("error"):
        detail = f"{answer['error']}: {answer.get('error_description') or ''}".strip(": ")
    else:
        detail = text.strip()
    detail = detail.splitlines()[0] if detail else ""
    return f" {detail[:_ERROR_TEXT_LIMIT]}" if detail else ""


def _lifetime(answer: dict[str, Any], clock: Clock) -> float | None:
    """Seconds the token stays valid (`expires_in`; v1 sends it as a string), if known."""
    try:
        if answer.get("expires_in") is not None:
            return float(answer["expires_in"])
        if answer.get("expires_on") is not None:
            return float(answer["expires_on"]) - clock.now().timestamp()
    except (TypeError, ValueError):
        pass
    return None
