"""Outbound HTTP calls of jobs: one async client, no redirects, private networks refused.

The target's host name is resolved here and the connection made to the checked address
(SNI and the Host header keep the name), so a name that resolves to a private address, or a
DNS answer that changes between check and connect, cannot reach inside the network.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx

DEFAULT_TIMEOUT = 60.0
BODY_LIMIT = 2048


@dataclass
class HttpRequest:
    """One outbound request, with every header already in place."""

    method: str
    uri: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    client_certificate: tuple[str, str | None] | None = None  # (PEM file, password)


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


def format_response_message(host: str, response: httpx.Response, body: str) -> str:
    """Azure's history message for an answered request, body cut at 2,048 bytes."""
    headers = "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
    return (f"Http Action - Response from host '{host}': '{response.status_code} "
            f"{response.reason_phrase}' Response Headers: {headers} Body: {body}")


class HttpCaller:
    """Makes jobs' HTTP calls on the running event loop, thousands at a time."""

    def __init__(self, allow_private_networks: bool, max_connections: int = 2000) -> None:
        self.allow_private_networks = allow_private_networks
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections // 4)
        # The machine's CA bundle variables must not steer job calls; trust the system store.
        self._client = httpx.AsyncClient(follow_redirects=False, limits=limits, trust_env=False,
                                         verify=ssl.create_default_context())
        self._cert_clients: dict[tuple[str, str | None], httpx.AsyncClient] = {}

    async def close(self) -> None:
        """Close every connection."""
        await self._client.aclose()
        for client in self._cert_clients.values():
            await client.aclose()

    def _client_for(self, request: HttpRequest) -> httpx.AsyncClient:
        if request.client_certificate is None:
            return self._client
        if request.client_certificate not in self._cert_clients:
            path, password = request.client_certificate
            context = ssl.create_default_context()
            context.load_cert_chain(path, password=password)
            self._cert_clients[request.client_certificate] = httpx.AsyncClient(
                follow_redirects=False, trust_env=False, verify=context)
        return self._cert_clients[request.client_certificate]

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
        try:
            response = await self._client_for(request).request(
                request.method, url, headers=headers,
                content=request.body.encode() if request.body is not None else None,
                timeout=timeout, extensions={"sni_hostname": host},
            )
        except httpx.TimeoutException:
            return HttpOutcome(False, _host_message(host, f"no answer within {timeout:g} s"))
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            return HttpOutcome(False, _host_message(host, str(exc) or type(exc).__name__))
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
