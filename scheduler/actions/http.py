"""Outbound HTTP calls of jobs: pooled HTTP/1.1, no redirects, private networks refused.

Host names are resolved by a resolver that refuses private addresses, and the client connects
to exactly the addresses it returned (SNI and the Host header keep the name), so a name that
resolves to a private address, or a DNS answer that changes between check and connect, cannot
reach inside the network.

Outbound authentication (see `scheduler.actions.auth`): a job's client certificate becomes an
SSL context of its own, cached per certificate; an Azure AD token is fetched (and cached) once
the target has passed the address check, and sent as `Authorization: Bearer`. A signed call
(`scheduler.domain.signatures`) is encoded ahead of its time like any other, and gets its
`webhook-*` headers as it is sent: the timestamp is the time it goes out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from scheduler.actions.auth import (
    AAD_TOKEN_ENDPOINT,
    ActiveDirectoryCredentials,
    ActiveDirectoryTokens,
    CertificateError,
    ClientCertificate,
    TokenError,
    ssl_context_with_certificate,
)
from scheduler.actions.base import ExecutionContext, Outcome
from scheduler.actions.httpclient import (
    Http1Client,
    OutboundRequest,
    ProtocolError,
    Response,
    body_of,
    with_headers,
)
from scheduler.actions.placeholders import content_type_of, fill_body, fill_header, fill_uri
from scheduler.actions.tags import identification
from scheduler.clock import Clock, SystemClock
from scheduler.domain.addresses import is_private, is_private_literal
from scheduler.domain.caches import LruCache
from scheduler.domain.jobs import (
    Action,
    ActiveDirectoryAuthentication,
    BasicAuthentication,
    CertificateAuthentication,
    HttpAction,
    SignatureAuthentication,
)
from scheduler.domain.signatures import SIGNATURE_HEADERS, Signer, secret_key

DEFAULT_TIMEOUT = 60.0
ACCEPTED = 202  # the target took the call, to finish later
BODY_LIMIT = 2048
CERTIFICATE_CONTEXT_LIMIT = 256


@dataclass(slots=True)
class HttpRequest:
    """One outbound request, with every header already in place."""

    method: str
    uri: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    client_certificate: ClientCertificate | None = None
    active_directory: ActiveDirectoryCredentials | None = None
    signer: Signer | None = None  # signs the call as it is sent


@dataclass(slots=True)
class HttpOutcome:
    """What came back, or why nothing did."""

    success: bool
    message: str
    status_code: int | None = None
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass(slots=True)
class PreparedCall:
    """A call checked and encoded ahead of its time (`HttpCaller.prepare`)."""

    request: HttpRequest
    scheme: str
    host: str
    port: int
    target: str
    context: ssl.SSLContext | None
    outbound: OutboundRequest | None = None  # None until an Azure AD token is in


# A call on its way: the future of its answer.
Answer = asyncio.Future[Response]


class BlockedAddress(OSError):
    """The target resolves to an address jobs may not call."""


class CheckedResolver:
    """Resolves host names and, unless private networks are allowed, refuses private ones."""

    def __init__(self, allow_private_networks: bool) -> None:
        self.allow_private_networks = allow_private_networks

    async def resolve(self, host: str, port: int = 0) -> list[str]:
        """Every address of the host, checked."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise OSError(f"the name {host} did not resolve: {exc}") from None
        addresses: list[str] = []
        for _family, _type, _proto, _name, address in infos:
            ip = str(address[0])
            self.check(host, ip, "resolves to")
            if ip not in addresses:
                addresses.append(ip)
        return addresses

    def check(self, host: str, address: str, how: str = "connected to") -> None:
        """Refuse an address of the host that calls may not reach."""
        if not self.allow_private_networks and is_private(address):
            raise BlockedAddress(
                f"the host {host} {how} {address}, a private, loopback or link-local "
                "address; calls there are refused unless outbound.allow_private_networks "
                "is set")


def _host_message(host: str, outcome: str) -> str:
    return f"Http Action - Request to host '{host}' failed: {outcome}"


def _reason(exc: BaseException) -> str:
    """What went wrong, in words."""
    if isinstance(exc, ProtocolError):  # says which rule the answer broke, or when it ended
        return str(exc)
    return str(exc) or type(exc).__name__


def format_response_message(host: str, status: int, reason: str,
                            headers: dict[str, str], body: str) -> str:
    """Azure's history message for an answered request, body cut at 2,048 bytes."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (f"Http Action - Response from host '{host}': '{status} {reason}' "
            f"Response Headers: {lines} Body: {body}")


class _CertificateContexts:
    """One SSL context per job certificate, the least recently used dropped past the limit.

    Keyed by a keyed hash of the PKCS#12 file and its password, not by the thumbprint alone:
    a job holding another's (public) certificate with some other key must not be handed the
    context that has the real key loaded.
    """

    def __init__(self, make_context: Callable[[], ssl.SSLContext], limit: int) -> None:
        self.make_context, self.limit = make_context, limit
        self._contexts: LruCache[bytes, ssl.SSLContext] = LruCache(limit)
        self._salt = secrets.token_bytes(32)

    def get(self, certificate: ClientCertificate) -> ssl.SSLContext:
        """The certificate's context; raises `CertificateError`."""
        key = hmac.new(self._salt, f"{certificate.pfx}\0{certificate.password or ''}".encode(),
                       hashlib.sha256).digest()
        context = self._contexts.get(key)
        if context is None:
            context = ssl_context_with_certificate(self.make_context, certificate)
            self._contexts.put(key, context)
        return context


class HttpCaller:
    """Makes jobs' HTTP calls on the running event loop, thousands at a time.

    `tls_context` makes the client `SSLContext`s targets are verified with (default: the
    system store). `tokens` gets Azure AD tokens; by default from `aad_token_endpoint`.
    `clock` tells the time signed calls are sent at (and times the tokens).
    """

    def __init__(self, allow_private_networks: bool, max_connections_per_host: int = 100, *,
                 tls_context: Callable[[], ssl.SSLContext] = ssl.create_default_context,
                 aad_token_endpoint: str = AAD_TOKEN_ENDPOINT, clock: Clock | None = None,
                 tokens: ActiveDirectoryTokens | None = None) -> None:
        self.allow_private_networks = allow_private_networks
        self._tls_context = tls_context
        self._default_context: ssl.SSLContext | None = None
        self._resolver = CheckedResolver(allow_private_networks)
        self._client = Http1Client(self._resolver.resolve, max_connections_per_host,
                                   self._resolver.check)
        self._contexts = _CertificateContexts(tls_context, CERTIFICATE_CONTEXT_LIMIT)
        self.clock = clock or SystemClock()
        self.tokens = tokens or ActiveDirectoryTokens(aad_token_endpoint, self.clock,
                                                      tls_context)

    async def close(self) -> None:
        """Close every connection."""
        self._client.close()
        await self.tokens.close()

    def prepare(self, request: HttpRequest) -> PreparedCall | HttpOutcome:
        """Check the target and encode the request ahead of its time, so that sending it
        costs little; a request that cannot be made is its failed outcome already."""
        parts = urlsplit(request.uri)
        host = parts.hostname or ""
        if self._private_literal(host):
            return HttpOutcome(False, _host_message(host, (
                f"{host} is a private, loopback or link-local address; calls there are "
                "refused unless outbound.allow_private_networks is set")))
        context = None
        if parts.scheme.lower() == "https":
            try:
                context = self._context_for(request.client_certificate)
            except CertificateError as exc:
                return HttpOutcome(False, _host_message(host, str(exc)))
        try:
            port = parts.port or (443 if context is not None else 80)
        except ValueError as exc:
            return HttpOutcome(False, _host_message(host, _reason(exc)))
        call = PreparedCall(request, parts.scheme.lower(), host, port,
                            (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                            context)
        if request.active_directory is not None:  # encoded once the token is in
            return call
        outbound = self._outbound(call, request.headers)
        if isinstance(outbound, HttpOutcome):
            return outbound
        call.outbound = outbound
        return call

    async def call(self, request: HttpRequest, timeout: float = DEFAULT_TIMEOUT) -> HttpOutcome:
        """Make the call; success is a 2xx answer within the timeout. Redirects are answers."""
        call = self.prepare(request)
        if isinstance(call, HttpOutcome):
            return call
        return await self.send(call, timeout)

    async def send(self, call: PreparedCall, timeout: float = DEFAULT_TIMEOUT) -> HttpOutcome:
        """Make a prepared call, with an Azure AD token first if it needs one."""
        outbound = call.outbound
        if outbound is None:
            authorized = await self._with_token(call, timeout)
            if isinstance(authorized, HttpOutcome):
                return authorized
            outbound = authorized
        elif call.request.signer is not None:
            outbound = self._signed(outbound, call.request.signer)
        answered = self._client.submit(outbound, timeout)
        with contextlib.suppress(Exception):  # the outcome tells what went wrong
            await answered
        return self.outcome(call, answered, timeout)

    def submit(self, call: PreparedCall, timeout: float = DEFAULT_TIMEOUT) -> Answer:
        """Make a prepared call that needs no token, without a task to wait for it; `outcome`
        reads the future once it is done."""
        outbound = call.outbound
        assert outbound is not None
        if call.request.signer is not None:
            outbound = self._signed(outbound, call.request.signer)
        return self._client.submit(outbound, timeout)

    def _signed(self, outbound: OutboundRequest, signer: Signer) -> OutboundRequest:
        """The request with its signature headers, stamped with the time it is sent."""
        sent = int(self.clock.now().timestamp())  # whole seconds, as the standard says
        return with_headers(outbound, signer.headers(sent, body_of(outbound)))

    def outcome(self, call: PreparedCall, answered: Answer, timeout: float) -> HttpOutcome:
        """What a finished call comes to: the answer, or why none came."""
        host = call.host
        if answered.cancelled():
            return HttpOutcome(False, _host_message(host, "the call was cancelled"))
        exc = answered.exception()
        if isinstance(exc, TimeoutError):
            return HttpOutcome(False, _host_message(host, f"no answer within {timeout:g} s"))
        if exc is not None:
            return HttpOutcome(False, _host_message(host, _reason(exc)))
        response = answered.result()
        body = response.body.decode("utf-8", errors="replace")
        return HttpOutcome(
            success=200 <= response.status < 300,
            message=format_response_message(host, response.status, response.reason,
                                             response.headers, body),
            status_code=response.status, reason=response.reason, headers=response.headers,
            body=body,
        )

    async def _with_token(self, call: PreparedCall, timeout: float
                          ) -> OutboundRequest | HttpOutcome:
        """The request with a Bearer token for the target, checked before a token is sent."""
        request, host = call.request, call.host
        assert request.active_directory is not None
        refusal = await self._refused(host, request.uri)
        if refusal is not None:
            return refusal
        try:
            token = await self.tokens.token(request.active_directory, timeout)
        except TokenError as exc:
            return HttpOutcome(False, _host_message(host, str(exc)))
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        headers["Authorization"] = f"Bearer {token}"
        return self._outbound(call, headers)

    def _outbound(self, call: PreparedCall, headers: dict[str, str]
                  ) -> OutboundRequest | HttpOutcome:
        """The request's bytes, or the failure of a request that would break the framing."""
        request = call.request
        try:
            return self._client.prepare(
                request.method, call.scheme, call.host, call.port, call.target, headers,
                request.body.encode() if request.body is not None else None, call.context,
                BODY_LIMIT)
        except ValueError as exc:
            return HttpOutcome(False, _host_message(call.host, _reason(exc)))

    def _context_for(self, certificate: ClientCertificate | None) -> ssl.SSLContext:
        """The TLS context of a call: the job's certificate's, or the shared one."""
        if certificate is not None:
            return self._contexts.get(certificate)
        if self._default_context is None:
            self._default_context = self._tls_context()
        return self._default_context

    def _private_literal(self, host: str) -> bool:
        """Whether the host is an address (not a name) that jobs may not call."""
        return not self.allow_private_networks and is_private_literal(host)

    async def _refused(self, host: str, uri: str) -> HttpOutcome | None:
        """Check the target before a token is sent for it: no token goes to a refused host."""
        parts = urlsplit(uri)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            await self._resolver.resolve(host, port)
        except OSError as exc:
            return HttpOutcome(False, _host_message(host, str(exc)))
        return None


def basic_authorization(username: str, password: str) -> str:
    """The `Authorization` header of HTTP Basic authentication."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"


class HttpExecutor:
    """Runs `http` and `https` actions: the job's request, with Azure's identification
    headers, made by an `HttpCaller`."""

    TYPES = ("http", "https")

    def __init__(self, caller: HttpCaller) -> None:
        self.caller = caller

    def prepare(self, action: Action, context: ExecutionContext) -> PreparedCall | Outcome:
        """The request checked and encoded; one that cannot be made is its failed outcome."""
        if not isinstance(action, HttpAction):
            return Outcome(False, f"Http Action - a {action.kind} action is not an HTTP request")
        call = self.caller.prepare(http_request(action, context))
        return call if isinstance(call, PreparedCall) else _outcome(call)

    def submit(self, call: PreparedCall, timeout: float) -> asyncio.Future[Any]:
        """Send the call; one that needs an Azure AD token first gets a task of its own."""
        if call.outbound is not None:
            return self.caller.submit(call, timeout)
        return asyncio.ensure_future(self.caller.send(call, timeout))

    def outcome(self, call: PreparedCall, done: asyncio.Future[Any], timeout: float
                ) -> Outcome:
        """The answer, or why none came."""
        if call.outbound is None and not done.cancelled() and done.exception() is None:
            return _outcome(done.result())  # sent by a task, which read the answer
        return _outcome(self.caller.outcome(call, done, timeout))

    def describe(self, call: PreparedCall) -> Mapping[str, Any]:
        """The request as sent, without the `Authorization` the service computed (nor the
        signature headers, which are added as it is sent)."""
        request = call.request
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() != "authorization"}
        described: dict[str, Any] = {"method": request.method, "uri": request.uri,
                                     "headers": headers}
        if request.body is not None:
            described["body"] = request.body
        return described

    async def close(self) -> None:
        """Close every connection."""
        await self.caller.close()


def _outcome(outcome: HttpOutcome) -> Outcome:
    """An HTTP outcome as every action's: success, message, output parameters."""
    return Outcome(outcome.success, outcome.message, {
        "statusCode": outcome.status_code, "reasonPhrase": outcome.reason,
        "headers": outcome.headers, "body": outcome.body},
        accepted=outcome.status_code == ACCEPTED)


def http_request(action: HttpAction, context: ExecutionContext) -> HttpRequest:
    """The outbound request of an HTTP action, with Azure's identification headers."""
    headers = {name: fill_header(value, context) for name, value in action.headers.items()}
    headers.update(identification(context))
    auth = action.authentication
    certificate, active_directory, signer = None, None, None
    if isinstance(auth, SignatureAuthentication):
        signer = _signer(auth, context)
        for name in [n for n in headers if n.lower() in SIGNATURE_HEADERS]:
            del headers[name]  # the service writes them: a job's own would be sent twice
    elif isinstance(auth, BasicAuthentication):
        _set_authorization(headers, basic_authorization(auth.username, auth.password.value))
    elif isinstance(auth, CertificateAuthentication):
        password = auth.password.value if auth.password is not None else None
        certificate = ClientCertificate(auth.pfx.value, password)
    elif isinstance(auth, ActiveDirectoryAuthentication):
        active_directory = ActiveDirectoryCredentials(
            auth.tenant, auth.audience, auth.client_id, auth.secret.value)
    body = action.body
    if body is not None and "{{" in body:
        body = fill_body(body, content_type_of(action.headers), context)
    return HttpRequest(
        method=action.method, uri=fill_uri(action.uri, context), headers=headers, body=body,
        client_certificate=certificate, active_directory=active_directory, signer=signer,
    )


def _signer(auth: SignatureAuthentication, context: ExecutionContext) -> Signer:
    """What signs an attempt's call: its execution tag as the message id (the same on each
    retry, so receivers can de-duplicate), and the keys of the secrets, the current one first."""
    secrets = (auth.secret,) if auth.previous_secret is None else (
        auth.secret, auth.previous_secret)
    return Signer(context.execution_id, tuple(secret_key(secret.value) for secret in secrets))


def _set_authorization(headers: dict[str, str], value: str) -> None:
    """Replace the job's own `Authorization` header, whatever its case."""
    for name in [n for n in headers if n.lower() == "authorization"]:
        del headers[name]
    headers["Authorization"] = value
