"""Outbound HTTP calls of jobs: one async client, no redirects, private networks refused.

The target's host name is resolved here and the connection made to the checked address
(SNI and the Host header keep the name), so a name that resolves to a private address, or a
DNS answer that changes between check and connect, cannot reach inside the network.

Outbound authentication (see `scheduler.actions.auth`): a job's client certificate gets its own
client, cached per certificate; an Azure AD token is fetched (and cached) once the target has
passed the address check, and sent as `Authorization: Bearer`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
import ssl
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx

from scheduler.actions.auth import (
    AAD_TOKEN_ENDPOINT,
    ActiveDirectoryCredentials,
    ActiveDirectoryTokens,
    CertificateError,
    ClientCertificate,
    TokenError,
    ssl_context_with_certificate,
)
from scheduler.clock import Clock

DEFAULT_TIMEOUT = 60.0
BODY_LIMIT = 2048
CERTIFICATE_CLIENT_LIMIT = 256


@dataclass
class HttpRequest:
    """One outbound request, with every header already in place."""

    method: str
    uri: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    client_certificate: ClientCertificate | None = None
    active_directory: ActiveDirectoryCredentials | None = None


@dataclass
class HttpOutcome:
    """What came back, or why nothing did."""

    success: bool
    message: str
    status_code: int | None = None
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


class BlockedAddress(Exception):
    """The target resolves to an address jobs may not call."""


def is_private(address: str) -> bool:
    """Loopback, private, link-local (cloud metadata), multicast, reserved or unspecified."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                or ip.is_reserved or ip.is_unspecified or not ip.is_global)


async def resolve(host: str, port: int) -> list[str]:
    """Every address the host name resolves to."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _host_message(host: str, outcome: str) -> str:
    return f"Http Action - Request to host '{host}' failed: {outcome}"


def _reason(exc: BaseException) -> str:
    """The first exception in the chain that says something (httpx's wrappers often don't)."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen)
        if text:
            return text if seen is exc else f"{type(exc).__name__}: {text}"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        # e.g. a TLS target that wants a client certificate and hangs up without one
        return f"the connection was closed before an answer came ({type(exc).__name__})"
    return type(exc).__name__


def format_response_message(host: str, response: httpx.Response, body: str) -> str:
    """Azure's history message for an answered request, body cut at 2,048 bytes."""
    headers = "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
    return (f"Http Action - Response from host '{host}': '{response.status_code} "
            f"{response.reason_phrase}' Response Headers: {headers} Body: {body}")


class _CertificateClients:
    """One client per job certificate, least recently used dropped once idle past the limit.

    Keyed by a keyed hash of the PKCS#12 file and its password, not by the thumbprint alone:
    a job holding another's (public) certificate with some other key must not be handed the
    client that has the real key loaded.
    """

    def __init__(self, make_context: Callable[[], ssl.SSLContext], limit: int) -> None:
        self.make_context, self.limit = make_context, limit
        self._clients: OrderedDict[bytes, httpx.AsyncClient] = OrderedDict()
        self._in_use: dict[bytes, int] = {}
        self._salt = secrets.token_bytes(32)

    def acquire(self, certificate: ClientCertificate) -> tuple[bytes, httpx.AsyncClient]:
        """The certificate's client, marked in use; raises `CertificateError`."""
        key = hmac.new(self._salt, f"{certificate.pfx}\0{certificate.password or ''}".encode(),
                       hashlib.sha256).digest()
        client = self._clients.get(key)
        if client is None:
            context = ssl_context_with_certificate(self.make_context, certificate)
            client = httpx.AsyncClient(
                follow_redirects=False, trust_env=False, verify=context,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=10))
            self._clients[key] = client
        self._clients.move_to_end(key)
        self._in_use[key] = self._in_use.get(key, 0) + 1
        return key, client

    async def release(self, key: bytes) -> None:
        """Done with a client; close the idle ones beyond the limit."""
        self._in_use[key] -= 1
        if not self._in_use[key]:
            del self._in_use[key]
        idle = [k for k in self._clients if k not in self._in_use]
        for stale in idle[:max(0, len(self._clients) - self.limit)]:
            await self._clients.pop(stale).aclose()

    async def close(self) -> None:
        """Close every client."""
        while self._clients:
            await self._clients.popitem()[1].aclose()


class HttpCaller:
    """Makes jobs' HTTP calls on the running event loop, thousands at a time.

    `tls_context` makes the client `SSLContext`s targets are verified with (default: the
    system store; the CA bundle variables of httpx are ignored). `tokens` gets Azure AD
    tokens; by default from `aad_token_endpoint`.
    """

    def __init__(self, allow_private_networks: bool, max_connections: int = 2000, *,
                 tls_context: Callable[[], ssl.SSLContext] = ssl.create_default_context,
                 aad_token_endpoint: str = AAD_TOKEN_ENDPOINT, clock: Clock | None = None,
                 tokens: ActiveDirectoryTokens | None = None) -> None:
        self.allow_private_networks = allow_private_networks
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections // 4)
        # The machine's CA bundle variables must not steer job calls; trust the system store.
        self._client = httpx.AsyncClient(follow_redirects=False, limits=limits, trust_env=False,
                                         verify=tls_context())
        self._cert_clients = _CertificateClients(tls_context, CERTIFICATE_CLIENT_LIMIT)
        self.tokens = tokens or ActiveDirectoryTokens(aad_token_endpoint, clock, tls_context)

    async def close(self) -> None:
        """Close every connection."""
        await self._client.aclose()
        await self._cert_clients.close()
        await self.tokens.close()

    async def _pinned_url(self, uri: str) -> tuple[str, str]:
        """The URL to connect to (a checked address) and the host name it stands for."""
        parts = urlsplit(uri)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await resolve(host, port)
        if not addresses:
            raise BlockedAddress(f"the host name {host} did not resolve")
        if not self.allow_private_networks:
            blocked = [a for a in addresses if is_private(a)]
            if blocked:
                raise BlockedAddress(
                    f"the host {host} resolves to {blocked[0]}, a private, loopback or "
                    "link-local address; calls there are refused unless "
                    "outbound.allow_private_networks is set")
        address = addresses[0]
        netloc = f"[{address}]" if ":" in address else address
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), host

    async def call(self, request: HttpRequest, timeout: float = DEFAULT_TIMEOUT) -> HttpOutcome:
        """Make the call; success is a 2xx answer within the timeout. Redirects are answers."""
        host = urlsplit(request.uri).hostname or ""
        try:
            url, host = await self._pinned_url(request.uri)
        except BlockedAddress as exc:
            return HttpOutcome(False, _host_message(host, str(exc)))
        except OSError as exc:
            return HttpOutcome(False, _host_message(host, f"the name did not resolve: {exc}"))
        headers = {"Host": urlsplit(request.uri).netloc, **request.headers}
        if request.active_directory is not None:
            try:
                token = await self.tokens.token(request.active_directory, timeout)
            except TokenError as exc:
                return HttpOutcome(False, _host_message(host, str(exc)))
            headers = {name: value for name, value in headers.items()
                       if name.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {token}"
        client, lease = self._client, None
        if request.client_certificate is not None:
            try:
                lease, client = self._cert_clients.acquire(request.client_certificate)
            except CertificateError as exc:
                return HttpOutcome(False, _host_message(host, str(exc)))
        try:
            response = await client.request(
                request.method, url, headers=headers,
                content=request.body.encode() if request.body is not None else None,
                timeout=timeout, extensions={"sni_hostname": host},
            )
        except httpx.TimeoutException:
            return HttpOutcome(False, _host_message(host, f"no answer within {timeout:g} s"))
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            return HttpOutcome(False, _host_message(host, _reason(exc)))
        finally:
            if lease is not None:
                await self._cert_clients.release(lease)
        body = response.content[:BODY_LIMIT].decode("utf-8", errors="replace")
        return HttpOutcome(
            success=200 <= response.status_code < 300,
            message=format_response_message(host, response, body),
            status_code=response.status_code,
            reason=response.reason_phrase,
            headers=dict(response.headers.items()),
            body=body,
        )


def basic_authorization(username: str, password: str) -> str:
    """The `Authorization` header of HTTP Basic authentication."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"
